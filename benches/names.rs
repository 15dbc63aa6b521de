//! The cost of N3's project-name parsing and keying, which every `check` pays, and of
//! N7's skeleton, which creation and import pay: ASCII (the fast path) and not.
//!
//! `cargo bench --bench names`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use turnstile::QualifiedProjectName;
use turnstile::domain::names::{fold, skeleton};

const NAMES: [(&str, &str); 3] = [
    ("ascii", "ml-team/Image-Segmentation-v2"),
    ("latin", "ml-team/Straße-Klassifikation"),
    ("cjk", "ml-team/画像セグメンテーション"),
];

fn names(c: &mut Criterion) {
    let mut group = c.benchmark_group("names");
    for (label, name) in NAMES {
        group.bench_function(format!("parse, {label}"), |b| {
            b.iter(|| {
                black_box(name)
                    .parse::<QualifiedProjectName>()
                    .expect("valid")
            })
        });
        group.bench_function(format!("to_lowercase (old key), {label}"), |b| {
            b.iter(|| black_box(name).to_lowercase())
        });
        group.bench_function(format!("fold, {label}"), |b| {
            b.iter(|| fold(black_box(name)).into_owned())
        });
        let key = fold(name).into_owned();
        group.bench_function(format!("skeleton, {label}"), |b| {
            b.iter(|| skeleton(black_box(&key)))
        });
    }
    group.finish();
}

criterion_group!(benches, names);
criterion_main!(benches);

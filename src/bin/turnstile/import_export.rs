//! `import` and `export`: the whole model to and from a JSON or CSV file (the formats
//! are in [`crate::transfer`]).

use std::io::Read;
use std::path::PathBuf;

use clap::Args;
use serde_json::json;
use turnstile::Engine;

use crate::context::Context;
use crate::files::{PendingDatabase, import_with_bar, non_empty, summary_counts};
use crate::output::{Failure, Output};
use crate::transfer::{self, Format};

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// the file, or `-` for stdin
    file: PathBuf,
    /// the file's format
    #[arg(long, value_enum)]
    format: Option<Format>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// write to this file instead of stdout
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// the format
    #[arg(long, value_enum)]
    format: Option<Format>,
}

pub fn import(ctx: &Context, args: ImportArgs) -> Result<Output, Failure> {
    let stdin = args.file.as_os_str() == "-";
    let mut content = String::new();
    let read = if stdin {
        std::io::stdin().read_to_string(&mut content).map(|_| ())
    } else {
        std::fs::read_to_string(&args.file).map(|c| content = c)
    };
    read.map_err(|e| {
        let what = format!("cannot read `{}`: {e}", args.file.display());
        if e.kind() == std::io::ErrorKind::NotFound {
            Failure::not_found("FileNotFound", what)
        } else {
            Failure::usage(what)
        }
    })?;
    let format = Format::detect(args.format, &args.file, &content);
    let snapshot = transfer::parse(format, &content)?;

    // An import may create its database: loading a snapshot into a new file is how a
    // copy is made. A new database is built beside its path and moved there only once
    // the import succeeded, so that a failed import leaves nothing behind.
    let target = ctx.db_path();
    let pending = if non_empty(&target) || crate::files::is_server_url(&target) {
        None
    } else {
        Some(PendingDatabase::beside(&target)?)
    };
    let engine = Engine::open(pending.as_ref().map_or(target.as_path(), |p| p.path()))?;
    let summary = import_with_bar(&engine, &snapshot, "importing")?;
    drop(engine);
    if let Some(pending) = pending {
        pending.install()?;
    }
    let text = format!("imported {}\n", summary_counts(&summary));
    Ok(Output::new(
        json!({
            "file": args.file.display().to_string(),
            "format": format.as_str(),
            "imported": summary,
        }),
        text,
    ))
}

pub fn export(ctx: &Context, args: ExportArgs) -> Result<Output, Failure> {
    let engine = ctx.open_for_reading()?;
    let snapshot = engine.export()?;
    let format = args
        .format
        .or_else(|| args.output.as_deref().and_then(Format::of_path))
        .unwrap_or(Format::Json);
    let doc = transfer::write(format, &snapshot)?;
    let Some(path) = args.output else {
        return Ok(Output::raw(doc));
    };
    std::fs::write(&path, doc)
        .map_err(|e| Failure::storage(format!("cannot write `{}`: {e}", path.display())))?;
    let projects: usize = snapshot.workspaces.iter().map(|w| w.projects.len()).sum();
    Ok(Output::new(
        json!({
            "file": path.display().to_string(),
            "format": format.as_str(),
            "users": snapshot.users.len(),
            "workspaces": snapshot.workspaces.len(),
            "projects": projects,
        }),
        format!(
            "exported {} users, {} workspaces and {projects} projects to `{}`\n",
            snapshot.users.len(),
            snapshot.workspaces.len(),
            path.display()
        ),
    ))
}

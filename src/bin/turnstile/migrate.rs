//! `turnstile migrate`: a whole model from one database to another, on either backend
//! (SPEC B4).

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use turnstile::{Engine, Options};

use crate::files::{PendingDatabase, is_server_url, non_empty, server_database_in_use};
use crate::output::{Failure, Output};

/// `turnstile migrate --from DB --to DB`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// the database to copy from: a SQLite file (or `sqlite:` URL) or a `postgres://` URL
    #[arg(long, value_name = "DB")]
    pub from: PathBuf,
    /// the database to copy to, which must be empty: a new SQLite file or an empty
    /// PostgreSQL database
    #[arg(long, value_name = "DB")]
    pub to: PathBuf,
}

fn open_source(from: &PathBuf) -> Result<Engine, Failure> {
    if !is_server_url(from) && !from.exists() {
        return Err(Failure::missing_database(format!(
            "database `{}` not found",
            from.display()
        )));
    }
    let options = Options {
        read_only: true,
        ..Options::default()
    };
    match Engine::open_with(from, options) {
        Ok(engine) => Ok(engine),
        Err(turnstile::Error::SchemaNeedsUpgrade { .. }) => Ok(Engine::open(from)?),
        Err(e) => Err(e.into()),
    }
}

pub fn migrate(args: MigrateArgs) -> Result<Output, Failure> {
    let source = open_source(&args.from)?;
    // One read transaction: a consistent model, whatever writes go on meanwhile.
    let snapshot = source.export()?;
    drop(source);

    let server = is_server_url(&args.to);
    if !server && non_empty(&args.to) {
        return Err(Failure::conflict(
            "DatabaseExists",
            format!(
                "database `{}` already exists: migrate copies into a new file or an empty PostgreSQL database",
                args.to.display()
            ),
        ));
    }
    // A new file is built beside its path and moved there only once the copy is
    // committed; on a server the copy is one transaction, all or nothing.
    let pending = if server {
        None
    } else {
        Some(PendingDatabase::beside(&args.to)?)
    };
    let target = Engine::open(pending.as_ref().map_or(args.to.as_path(), |p| p.path()))?;
    if server && server_database_in_use(&target)? {
        return Err(Failure::conflict(
            "DatabaseExists",
            "the target database already holds a model: migrate copies into an empty one",
        ));
    }
    let projects: usize = snapshot.workspaces.iter().map(|w| w.projects.len()).sum();
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(projects as u64).with_style(
            ProgressStyle::with_template("migrating projects [{bar:40}] {pos}/{len}")
                .expect("a valid template")
                .progress_chars("=> "),
        )
    } else {
        ProgressBar::hidden()
    };
    let result = target.import_with_progress(&snapshot, |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    });
    bar.finish_and_clear();
    let summary = result?;
    drop(target);
    if let Some(pending) = pending {
        pending.install()?;
    }
    let text = format!(
        "migrated {} users, {} workspaces, {} memberships, {} service accounts, {} projects, {} grants \
         (tokens and the audit log stay behind: issue new tokens on the new database)\n",
        summary.users,
        summary.workspaces,
        summary.members,
        summary.service_accounts,
        summary.projects,
        summary.grants
    );
    Ok(Output::new(
        json!({
            "from": args.from.display().to_string(),
            "to": args.to.display().to_string(),
            "migrated": summary,
        }),
        text,
    ))
}

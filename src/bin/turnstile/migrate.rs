//! `turnstile migrate`: a whole model from one database to another, on either backend
//! (SPEC B4).

use std::path::PathBuf;

use clap::Args;
use serde_json::json;
use turnstile::Engine;

use crate::context::Context;

use crate::files::{
    PendingDatabase, import_with_bar, is_server_url, non_empty, server_database_in_use,
    summary_counts,
};
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

/// The database a command names, as the CLI's other commands read it (a `sqlite:`
/// URL as its file).
fn context_of(db: &std::path::Path) -> Context {
    Context {
        db: Some(db.to_owned()),
        json: false,
        db_from_env: false,
        token: None,
    }
}

pub fn migrate(args: MigrateArgs) -> Result<Output, Failure> {
    // Read-only, as every command that only reads: a missing file is refused, an older
    // one upgraded once.
    let source = context_of(&args.from).open_for_reading()?;
    let to = context_of(&args.to).db_path();
    // One read transaction: a consistent model, whatever writes go on meanwhile.
    let snapshot = source.export()?;
    drop(source);

    let server = is_server_url(&to);
    if !server && non_empty(&to) {
        return Err(Failure::conflict(
            "DatabaseExists",
            format!(
                "database `{}` already exists: migrate copies into a new file or an empty PostgreSQL database",
                to.display()
            ),
        ));
    }
    // A new file is built beside its path and moved there only once the copy is
    // committed; on a server the copy is one transaction, all or nothing.
    let pending = if server {
        None
    } else {
        Some(PendingDatabase::beside(&to)?)
    };
    let target = Engine::open(pending.as_ref().map_or(to.as_path(), |p| p.path()))?;
    if server && server_database_in_use(&target)? {
        return Err(Failure::conflict(
            "DatabaseExists",
            "the target database already holds a model: migrate copies into an empty one",
        ));
    }
    let summary = import_with_bar(&target, &snapshot, "migrating")?;
    drop(target);
    if let Some(pending) = pending {
        pending.install()?;
    }
    let text = format!(
        "migrated {} (tokens and the audit log stay behind: issue new tokens on the new database)\n",
        summary_counts(&summary)
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

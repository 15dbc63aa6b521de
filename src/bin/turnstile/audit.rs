//! `audit`: a workspace's audit log.

use chrono::{DateTime, Utc};
use clap::Args;
use serde_json::json;
use turnstile::AuditQuery;

use crate::context::Context;
use crate::output::{Failure, Output, table, time};
use crate::time::parse_time_or_ago;

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// the workspace
    workspace: String,
    /// only events by this actor
    #[arg(long)]
    actor: Option<String>,
    /// only events about this target
    #[arg(long)]
    target: Option<String>,
    /// only events at or after this time
    #[arg(long, value_name = "TIME", value_parser = parse_time_or_ago)]
    since: Option<DateTime<Utc>>,
    /// only events before this time
    #[arg(long, value_name = "TIME", value_parser = parse_time_or_ago)]
    until: Option<DateTime<Utc>>,
    /// at most this many events
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
}

pub fn audit(ctx: &Context, args: AuditArgs) -> Result<Output, Failure> {
    let engine = ctx.open_for_reading()?;
    let s = ctx.session(&engine)?;
    let query = AuditQuery {
        workspace: None,
        actor: args.actor,
        target: args.target,
        since: args.since,
        until: args.until,
        limit: args.limit,
    };
    let events = s.audit_log(&args.workspace, &query)?;
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            let details = match &e.details {
                serde_json::Value::Object(m) if m.is_empty() => String::new(),
                d => d.to_string(),
            };
            vec![
                e.id.to_string(),
                time(&e.at),
                e.actor.clone(),
                e.action.clone(),
                e.target.clone(),
                e.outcome.as_str().to_owned(),
                details,
            ]
        })
        .collect();
    let text = table(
        &[
            "id", "time", "actor", "action", "target", "outcome", "details",
        ],
        &rows,
        "no events",
    );
    Ok(Output::new(
        json!({ "workspace": args.workspace, "events": events }),
        text,
    ))
}

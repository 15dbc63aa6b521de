//! `check` and `explain`: decisions, and the rule behind them.

use clap::Args;
use serde_json::json;
use turnstile::Action;

use crate::context::Context;
use crate::output::{EXIT_DENIED, EXIT_OK, Failure, Output, allowed, pairs};

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// `workspace/project`
    project: String,
    /// `view`, `edit`, `manage` or `delete`
    action: Action,
    /// the principal asked about: a username or `name@workspace`
    #[arg(long = "as", value_name = "PRINCIPAL", conflicts_with = "anonymous")]
    as_principal: Option<String>,
    /// ask about an anonymous caller
    #[arg(long)]
    anonymous: bool,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// `workspace/project`
    project: String,
    /// the principal asked about: a username or `name@workspace`
    #[arg(long = "as", value_name = "PRINCIPAL")]
    as_principal: Option<String>,
}

pub fn check(ctx: &Context, args: CheckArgs) -> Result<Output, Failure> {
    let engine = ctx.open()?;
    let (principal, allowed) = if args.anonymous {
        (None, engine.check_anonymous(&args.project, args.action)?)
    } else {
        let p = ctx.principal(&engine, args.as_principal.as_deref())?;
        let allowed = engine.check(&p, &args.project, args.action)?;
        (Some(p.to_string()), allowed)
    };
    let word = if allowed { "allowed" } else { "denied" };
    let doc = json!({
        "principal": principal,
        "project": args.project,
        "action": args.action,
        "allowed": allowed,
    });
    let code = if allowed { EXIT_OK } else { EXIT_DENIED };
    Ok(Output::new(doc, format!("{word}\n")).with_code(code))
}

pub fn explain(ctx: &Context, args: ExplainArgs) -> Result<Output, Failure> {
    let engine = ctx.open()?;
    let principal = ctx.principal(&engine, args.as_principal.as_deref())?;
    let access = engine.explain(&principal, &args.project)?;
    let mut actions = serde_json::Map::new();
    let mut rows = vec![
        ("principal", principal.to_string()),
        ("project", args.project.clone()),
        (
            "role",
            access.map_or_else(|| "none".to_owned(), |a| a.role.to_string()),
        ),
        (
            "because",
            access.map_or_else(
                || "no rule gives it a role".to_owned(),
                |a| a.source.as_str().to_owned(),
            ),
        ),
    ];
    for action in Action::ALL {
        let yes = engine.check(&principal, &args.project, action)?;
        actions.insert(action.to_string(), yes.into());
        rows.push((action.as_str(), allowed(yes).to_owned()));
    }
    let doc = json!({
        "principal": principal.to_string(),
        "project": args.project,
        "role": access.map(|a| a.role),
        "source": access.map(|a| a.source),
        "actions": actions,
    });
    Ok(Output::new(doc, pairs(&rows)))
}

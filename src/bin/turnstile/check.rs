//! `check` and `explain`: decisions, and the rule behind them.

use std::io::{BufRead, BufReader, Write as _};
use std::path::PathBuf;

use clap::Args;
use serde::Deserialize;
use serde_json::json;
use turnstile::{Action, Engine, Principal};

use crate::context::Context;
use crate::output::{EXIT_DENIED, EXIT_OK, Failure, Output, allowed, pairs};

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// `workspace/project`
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    project: Option<String>,
    /// `view`, `edit`, `manage` or `delete`
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    action: Option<Action>,
    /// answer one request per line of FILE (`-` for stdin), one decision per line
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
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
    let engine = ctx.open_for_reading()?;
    let (Some(project), Some(action)) = (&args.project, args.action) else {
        return batch(ctx, &engine, &args);
    };
    let (principal, allowed) = if args.anonymous {
        (None, engine.check_anonymous(project, action)?)
    } else {
        let p = ctx.principal(&engine, args.as_principal.as_deref())?;
        let allowed = engine.check(&p, project, action)?;
        (Some(p.to_string()), allowed)
    };
    let word = if allowed { "allowed" } else { "denied" };
    let doc = json!({
        "principal": principal,
        "project": project,
        "action": action,
        "allowed": allowed,
    });
    let code = if allowed { EXIT_OK } else { EXIT_DENIED };
    Ok(Output::new(doc, format!("{word}\n")).with_code(code))
}

/// One request of a batch `check` as a JSON line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRequest {
    /// The principal; absent: the command's (--as, --anonymous or the token's).
    principal: Option<String>,
    /// Ask about an anonymous caller.
    #[serde(default)]
    anonymous: bool,
    project: String,
    action: String,
}

/// Whom a request asks about.
#[derive(Clone)]
enum Who {
    Anonymous,
    Principal(Principal),
}

/// One request: whom (`None`: the command's principal), the project, the action.
struct Request {
    who: Option<Who>,
    project: String,
    action: Action,
}

/// A text line: `[PRINCIPAL] PROJECT ACTION`. The action is the last word; a first
/// word without `/` is the principal (a project name always has one, and may hold
/// spaces).
fn parse_text(line: &str) -> Result<Request, Failure> {
    let line = line.trim();
    let (rest, action) = line
        .rsplit_once(char::is_whitespace)
        .ok_or_else(|| Failure::usage("expected `[PRINCIPAL] PROJECT ACTION`"))?;
    let rest = rest.trim_end();
    let (who, project) = match rest.split_once(char::is_whitespace) {
        Some((first, project)) if !first.contains('/') => {
            (Some(Who::Principal(first.parse()?)), project.trim_start())
        }
        _ => (None, rest),
    };
    Ok(Request {
        who,
        project: project.to_owned(),
        action: action.parse()?,
    })
}

fn parse_json(line: &str) -> Result<Request, Failure> {
    let r: JsonRequest = serde_json::from_str(line)
        .map_err(|e| Failure::usage(format!("invalid json request: {e}")))?;
    let who = match (r.anonymous, r.principal) {
        (true, Some(_)) => {
            return Err(Failure::usage(
                "a request names a `principal` or is `anonymous`, not both",
            ));
        }
        (true, None) => Some(Who::Anonymous),
        (false, Some(p)) => Some(Who::Principal(p.parse()?)),
        (false, None) => None,
    };
    Ok(Request {
        who,
        project: r.project,
        action: r.action.parse()?,
    })
}

/// `check --file`: one decision per request line, printed as it is answered. Blank
/// lines and lines starting with `#` are skipped. Exits 0 when every request was
/// allowed, 1 when one was denied or failed as a denial would (not found, invalid
/// token), 2 when a line was malformed; a storage failure stops the batch (3).
fn batch(ctx: &Context, engine: &Engine, args: &CheckArgs) -> Result<Output, Failure> {
    let file = args
        .file
        .as_ref()
        .expect("clap requires --file without a request");
    let input: Box<dyn BufRead> = if file.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let f = std::fs::File::open(file).map_err(|e| {
            Failure::not_found(
                "FileNotFound",
                format!("cannot read `{}`: {e}", file.display()),
            )
        })?;
        Box::new(BufReader::new(f))
    };
    // The command's principal, resolved once and only if a line needs it.
    let mut default: Option<Who> = None;
    let resolve_default = || -> Result<Who, Failure> {
        if args.anonymous {
            return Ok(Who::Anonymous);
        }
        Ok(Who::Principal(
            ctx.principal(engine, args.as_principal.as_deref())?,
        ))
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut code = EXIT_OK;
    for (n, line) in input.lines().enumerate() {
        let n = n + 1;
        let line = line.map_err(|e| Failure::usage(format!("cannot read line {n}: {e}")))?;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let answer = if ctx.json {
            parse_json(trimmed)
        } else {
            parse_text(trimmed)
        }
        .and_then(|req| {
            let who = match req.who {
                Some(who) => who,
                None => match &default {
                    Some(who) => who.clone(),
                    None => {
                        let who = resolve_default()?;
                        default = Some(who.clone());
                        who
                    }
                },
            };
            let (principal, allowed) = match &who {
                Who::Anonymous => (None, engine.check_anonymous(&req.project, req.action)?),
                Who::Principal(p) => (
                    Some(p.to_string()),
                    engine.check(p, &req.project, req.action)?,
                ),
            };
            Ok((principal, req.project, req.action, allowed))
        });
        let written = match answer {
            Ok((principal, project, action, allowed)) => {
                code = code.max(if allowed { EXIT_OK } else { EXIT_DENIED });
                if ctx.json {
                    let doc = json!({
                        "line": n,
                        "principal": principal,
                        "project": project,
                        "action": action,
                        "allowed": allowed,
                    });
                    writeln!(out, "{doc}")
                } else {
                    let word = if allowed { "allowed" } else { "denied" };
                    let who = principal.as_deref().unwrap_or("(anonymous)");
                    writeln!(out, "{word} {who} {project} {action}")
                }
            }
            Err(failure)
                if failure.kind == turnstile::ErrorKind::Storage
                    || failure.kind == turnstile::ErrorKind::Busy =>
            {
                let _ = out.flush();
                return Err(failure.context(format_args!("line {n}")));
            }
            Err(failure) => {
                code = code.max(failure.code());
                let failure = failure.context(format_args!("line {n}"));
                if ctx.json {
                    let mut doc = failure.to_json();
                    doc["line"] = n.into();
                    writeln!(out, "{doc}")
                } else {
                    writeln!(out, "error {}", failure.message)
                }
            }
        };
        // A closed stdout (`| head`) ends the batch quietly.
        if written.is_err() {
            break;
        }
    }
    let _ = out.flush();
    Ok(Output::raw(String::new()).with_code(code))
}

pub fn explain(ctx: &Context, args: ExplainArgs) -> Result<Output, Failure> {
    let engine = ctx.open_for_reading()?;
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

//! Personal tokens (`user token`): issue, list, revoke. Service-account tokens are
//! under `service-account token`.

use chrono::{DateTime, Utc};
use clap::Subcommand;
use serde_json::json;
use turnstile::Engine;

use crate::context::Context;
use crate::output::{Failure, Output, TokenJson, maybe_time, table, time};
use crate::time::{parse_from_now, parse_time};

#[derive(Debug, Subcommand)]
pub enum UserTokenCommand {
    /// issue a personal token for a user (no token needed); prints it once
    #[command(after_help = "\
durations: `90m`, `12h`, `30d`, `2w`.

examples:
  turnstile user token issue bob --label laptop
  turnstile user token issue bob --expires-in 30d
  BOB=$(turnstile user token issue bob)")]
    Issue {
        /// the user
        user: String,
        /// a label to recognise the token by
        #[arg(long, default_value = "cli")]
        label: String,
        /// expire after this long
        #[arg(long, value_name = "DURATION", value_parser = parse_from_now, conflicts_with = "expires_at")]
        expires_in: Option<DateTime<Utc>>,
        /// expire at this time (RFC 3339 or a date)
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        expires_at: Option<DateTime<Utc>>,
    },
    /// list the acting principal's own tokens (never their secrets)
    #[command(after_help = "examples:\n  turnstile user token list")]
    List,
    /// revoke one of the acting principal's own tokens, by id
    #[command(after_help = "examples:\n  turnstile user token revoke 3")]
    Revoke {
        /// the token's id, as `user token list` shows it
        id: i64,
    },
}

pub fn user_token(
    ctx: &Context,
    engine: &Engine,
    command: UserTokenCommand,
) -> Result<Output, Failure> {
    match command {
        UserTokenCommand::Issue {
            user,
            label,
            expires_in,
            expires_at,
        } => {
            let expires_at = expires_at.or(expires_in);
            let token = engine.issue_user_token(&user, &label, expires_at)?;
            let until = expires_at
                .map(|t| format!(", expires {}", time(&t)))
                .unwrap_or_default();
            let note = format!(
                "issued token {} `{}` for `{}`{until}:",
                token.id.0, token.label, token.principal
            );
            let doc = json!({ "token": TokenJson::new(&token, expires_at) });
            Ok(Output::token(doc, note, &token))
        }
        UserTokenCommand::List => {
            let session = ctx.session(engine)?;
            let tokens = session.tokens()?;
            let rows: Vec<Vec<String>> = tokens
                .iter()
                .map(|t| {
                    vec![
                        t.id.to_string(),
                        t.label.clone(),
                        time(&t.created_at),
                        maybe_time(&t.last_used_at),
                        maybe_time(&t.expires_at),
                        maybe_time(&t.revoked_at),
                    ]
                })
                .collect();
            let text = table(
                &["id", "label", "created", "last used", "expires", "revoked"],
                &rows,
                "no tokens",
            );
            Ok(Output::new(
                json!({ "principal": session.actor().to_string(), "tokens": tokens }),
                text,
            ))
        }
        UserTokenCommand::Revoke { id } => {
            ctx.session(engine)?.revoke_token(turnstile::TokenId(id))?;
            Ok(Output::new(
                json!({ "revoked": id }),
                format!("revoked token {id}\n"),
            ))
        }
    }
}

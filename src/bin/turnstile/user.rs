//! `user`: users, and their personal tokens (in [`crate::token`]).

use clap::Subcommand;
use serde_json::json;

use crate::context::Context;
use crate::output::{Failure, Output, table};
use crate::token::{self, UserTokenCommand};

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// create a user (no token needed)
    #[command(after_help = "examples:\n  turnstile user create bob")]
    Create {
        /// the username
        user: String,
    },
    /// list every user and the workspaces each belongs to (no token needed)
    #[command(after_help = "examples:\n  turnstile user list\n  turnstile --json user list")]
    List,
    /// personal tokens
    #[command(after_help = "\
examples:
  turnstile user token issue bob --label laptop
  turnstile --token \"$BOB\" user token list
  turnstile --token \"$BOB\" user token revoke 3")]
    Token {
        #[command(subcommand)]
        command: UserTokenCommand,
    },
}

pub fn user(ctx: &Context, command: UserCommand) -> Result<Output, Failure> {
    let engine = ctx.open_for(matches!(command, UserCommand::List))?;
    match command {
        UserCommand::Create { user } => {
            let name = engine.create_user(&user)?;
            Ok(Output::new(
                json!({ "user": name.to_string() }),
                format!("created user `{name}`\n"),
            ))
        }
        UserCommand::List => {
            let users = engine.list_users()?;
            let rows: Vec<Vec<String>> = users
                .iter()
                .map(|u| {
                    let workspaces: Vec<String> = u
                        .workspaces
                        .iter()
                        .map(|m| format!("{} ({})", m.workspace, m.role))
                        .collect();
                    vec![u.user.clone(), workspaces.join(", ")]
                })
                .collect();
            Ok(Output::new(
                json!({ "users": users }),
                table(&["user", "workspaces"], &rows, "no users"),
            ))
        }
        UserCommand::Token { command } => token::user_token(ctx, &engine, command),
    }
}

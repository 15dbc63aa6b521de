//! `serve`: the HTTP server over the database (SPEC §12), and `token neptune`: the
//! Neptune-format API token that the `neptune` client takes for a turnstile token.

use std::io::Read;

use clap::Subcommand;
use serde_json::json;

use crate::context::Context;
use crate::output::{Failure, Output};

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// a Neptune-format API token (NEPTUNE_API_TOKEN) for a turnstile token and server URL
    Neptune {
        /// the server's URL, as the neptune client will reach it
        #[arg(long, value_name = "URL")]
        api_url: String,
    },
}

/// Runs the server until SIGTERM or SIGINT.
pub fn serve(ctx: &Context, args: turnstile::server::ServeArgs) -> Result<Output, Failure> {
    turnstile::server::serve(&ctx.db_path(), args)
        .map(|()| Output::new(json!({}), String::new()))
        .map_err(Failure::storage)
}

/// Prints the Neptune-format token of the turnstile token in `TURNSTILE_TOKEN` (or
/// `--token`), else on standard input: never from a positional argument, which other
/// users could read from the process list.
pub fn token(ctx: &Context, command: TokenCommand) -> Result<Output, Failure> {
    let TokenCommand::Neptune { api_url } = command;
    let token = match ctx.token.clone() {
        Some(t) => t,
        None => {
            let mut t = String::new();
            std::io::stdin()
                .read_to_string(&mut t)
                .map_err(|e| Failure::usage(format!("cannot read the token from stdin: {e}")))?;
            t
        }
    };
    let token = token.trim();
    if !turnstile::token::well_formed(token) {
        return Err(Failure::usage(
            "not a turnstile token: set TURNSTILE_TOKEN or pipe the token on stdin",
        ));
    }
    let neptune = turnstile::server::auth::neptune_token(&api_url, token);
    Ok(Output::new(
        json!({ "token": neptune }),
        format!("{neptune}\n"),
    ))
}

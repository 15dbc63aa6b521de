//! `service-account`: a workspace's service accounts and their tokens.

use clap::Subcommand;
use serde_json::json;

use crate::context::Context;
use crate::output::{Failure, Output, TokenJson, table};

#[derive(Debug, Subcommand)]
pub enum ServiceAccountCommand {
    /// create a service account (workspace admins); prints its token once
    #[command(after_help = "\
examples:
  turnstile service-account create ml-team cicd
  CI_TOKEN=$(turnstile service-account create ml-team nightly --contributor-on-all-projects)")]
    Create {
        /// the workspace
        workspace: String,
        /// the account's name within the workspace
        name: String,
        /// also make it contributor on every project that exists now
        #[arg(long)]
        contributor_on_all_projects: bool,
    },
    /// list the workspace's service accounts
    #[command(after_help = "examples:\n  turnstile service-account list ml-team --all")]
    List {
        /// the workspace
        workspace: String,
        /// include deactivated accounts
        #[arg(long)]
        all: bool,
    },
    /// deactivate a service account: its token stops working, its grants go inert
    #[command(after_help = "examples:\n  turnstile service-account deactivate cicd@ml-team")]
    Deactivate {
        /// `name@workspace`
        service_account: String,
    },
    /// reactivate a service account; prints its new token once
    #[command(after_help = "examples:\n  turnstile service-account reactivate cicd@ml-team")]
    Reactivate {
        /// `name@workspace`
        service_account: String,
    },
    /// issue or revoke a service account's token
    #[command(after_help = "\
examples:
  turnstile service-account token issue cicd@ml-team
  turnstile service-account token revoke cicd@ml-team")]
    Token {
        #[command(subcommand)]
        command: ServiceAccountTokenCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ServiceAccountTokenCommand {
    /// issue a new token (the previous one stops working); prints it once
    #[command(
        after_help = "examples:\n  CI_TOKEN=$(turnstile service-account token issue cicd@ml-team)"
    )]
    Issue {
        /// `name@workspace`
        service_account: String,
    },
    /// revoke the account's token, leaving it with none
    #[command(after_help = "examples:\n  turnstile service-account token revoke cicd@ml-team")]
    Revoke {
        /// `name@workspace`
        service_account: String,
    },
}

pub fn service_account(ctx: &Context, command: ServiceAccountCommand) -> Result<Output, Failure> {
    let engine = ctx.open()?;
    let s = ctx.session(&engine)?;
    Ok(match command {
        ServiceAccountCommand::Create {
            workspace,
            name,
            contributor_on_all_projects,
        } => {
            let token = s.create_service_account(&workspace, &name, contributor_on_all_projects)?;
            let full = token.principal.to_string();
            let note = format!("created service account `{full}`; its token:");
            let doc = json!({
                "service_account": full,
                "contributor_on_all_projects": contributor_on_all_projects,
                "token": TokenJson::new(&token, None),
            });
            Output::token(doc, note, &token)
        }
        ServiceAccountCommand::List { workspace, all } => {
            let accounts = s.service_accounts(&workspace, all)?;
            let rows: Vec<Vec<String>> = accounts
                .iter()
                .map(|sa| {
                    let state = if sa.active { "active" } else { "deactivated" };
                    vec![sa.full_name.clone(), state.to_owned()]
                })
                .collect();
            let list: Vec<_> = accounts
                .iter()
                .map(|sa| json!({ "service_account": sa.full_name, "active": sa.active }))
                .collect();
            Output::new(
                json!({ "workspace": workspace, "service_accounts": list }),
                table(&["service account", "state"], &rows, "no service accounts"),
            )
        }
        ServiceAccountCommand::Deactivate { service_account } => {
            s.deactivate_service_account(&service_account)?;
            Output::new(
                json!({ "service_account": service_account }),
                format!("deactivated `{service_account}`; its token no longer works\n"),
            )
        }
        ServiceAccountCommand::Reactivate { service_account } => {
            let token = s.reactivate_service_account(&service_account)?;
            let note = format!(
                "reactivated `{}`; its new token (no earlier one works):",
                token.principal
            );
            let doc = json!({
                "service_account": token.principal.to_string(),
                "token": TokenJson::new(&token, None),
            });
            Output::token(doc, note, &token)
        }
        ServiceAccountCommand::Token { command } => match command {
            ServiceAccountTokenCommand::Issue { service_account } => {
                let token = s.issue_service_account_token(&service_account)?;
                let note = format!(
                    "issued a new token for `{}`; the previous one no longer works:",
                    token.principal
                );
                let doc = json!({
                    "service_account": token.principal.to_string(),
                    "token": TokenJson::new(&token, None),
                });
                Output::token(doc, note, &token)
            }
            ServiceAccountTokenCommand::Revoke { service_account } => {
                let n = s.revoke_service_account_token(&service_account)?;
                Output::new(
                    json!({ "service_account": service_account, "tokens_revoked": n }),
                    format!("revoked {n} token(s) of `{service_account}`\n"),
                )
            }
        },
    })
}

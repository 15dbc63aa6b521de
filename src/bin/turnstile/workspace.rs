//! `workspace`: workspaces, their members, roles and settings.

use clap::Subcommand;
use serde_json::json;
use turnstile::{WorkspaceRole, WorkspaceSettings, WorkspaceStatus};

use crate::context::Context;
use crate::output::{Failure, Output, allowed, pairs, role_map, table};

#[derive(Debug, Subcommand)]
pub enum WorkspaceCommand {
    /// create a workspace with an existing user as its admin (no token needed)
    #[command(after_help = "examples:\n  turnstile workspace create ml-team --admin alice")]
    Create {
        /// the workspace name
        workspace: String,
        /// its first admin
        #[arg(long, value_name = "USER")]
        admin: String,
    },
    /// list every workspace with its counts and settings (no token needed)
    #[command(
        after_help = "examples:\n  turnstile workspace list\n  turnstile --json workspace list"
    )]
    List,
    /// list the workspace's users and their roles
    #[command(after_help = "examples:\n  turnstile workspace members ml-team")]
    Members {
        /// the workspace
        workspace: String,
    },
    /// add an existing user to the workspace
    #[command(after_help = "\
examples:
  turnstile workspace invite ml-team bob
  turnstile workspace invite ml-team carol --role admin
  turnstile workspace invite ml-team dave --add-to-all-projects")]
    Invite {
        /// the workspace
        workspace: String,
        /// the user
        user: String,
        /// `admin` or `member`
        #[arg(long, default_value = "member")]
        role: WorkspaceRole,
        /// also make the user contributor on every project that exists now
        #[arg(long)]
        add_to_all_projects: bool,
    },
    /// remove a user from the workspace, with their grants on its projects
    #[command(after_help = "examples:\n  turnstile workspace remove-member ml-team bob")]
    RemoveMember {
        /// the workspace
        workspace: String,
        /// the user
        user: String,
    },
    /// change a member's workspace role
    #[command(after_help = "examples:\n  turnstile workspace set-role ml-team bob admin")]
    SetRole {
        /// the workspace
        workspace: String,
        /// the member
        user: String,
        /// `admin` or `member`
        role: WorkspaceRole,
    },
    /// show or change the workspace's settings
    #[command(after_help = "\
without an option, shows the settings.

examples:
  turnstile workspace settings ml-team
  turnstile workspace settings ml-team --allow-public-projects true
  turnstile workspace settings ml-team --service-account-limit 10")]
    Settings {
        /// the workspace
        workspace: String,
        /// whether projects may be public
        #[arg(long, value_name = "BOOL")]
        allow_public_projects: Option<bool>,
        /// the most active service accounts at once
        #[arg(long, value_name = "N")]
        service_account_limit: Option<u32>,
    },
    /// counts of members, projects and service accounts, and the limits
    #[command(after_help = "examples:\n  turnstile workspace status ml-team")]
    Status {
        /// the workspace
        workspace: String,
    },
}

pub fn status_text(s: &WorkspaceStatus) -> String {
    pairs(&[
        ("workspace", s.workspace.clone()),
        ("admins", s.admins.to_string()),
        ("members", s.members.to_string()),
        ("projects", s.projects.to_string()),
        (
            "service accounts",
            format!(
                "{} active of at most {}, {} deactivated",
                s.active_service_accounts, s.service_account_limit, s.deactivated_service_accounts
            ),
        ),
        (
            "public projects",
            allowed(s.allow_public_projects).to_owned(),
        ),
    ])
}

pub fn workspace(ctx: &Context, command: WorkspaceCommand) -> Result<Output, Failure> {
    let reads_only = matches!(
        command,
        WorkspaceCommand::List | WorkspaceCommand::Members { .. } | WorkspaceCommand::Status { .. }
    );
    let engine = ctx.open_for(reads_only)?;
    if let WorkspaceCommand::Create { workspace, admin } = &command {
        let name = engine.create_workspace(workspace, admin)?;
        let admin: turnstile::Username = admin.parse()?;
        return Ok(Output::new(
            json!({ "workspace": name.to_string(), "admin": admin.to_string() }),
            format!("created workspace `{name}` with admin `{admin}`\n"),
        ));
    }
    if let WorkspaceCommand::List = &command {
        let all = engine.list_workspaces()?;
        let rows: Vec<Vec<String>> = all
            .iter()
            .map(|w| {
                vec![
                    w.workspace.clone(),
                    w.admins.to_string(),
                    w.members.to_string(),
                    w.projects.to_string(),
                    format!(
                        "{} of {}",
                        w.active_service_accounts, w.service_account_limit
                    ),
                    allowed(w.allow_public_projects).to_owned(),
                ]
            })
            .collect();
        let text = table(
            &[
                "workspace",
                "admins",
                "members",
                "projects",
                "service accounts",
                "public projects",
            ],
            &rows,
            "no workspaces",
        );
        return Ok(Output::new(json!({ "workspaces": all }), text));
    }
    let s = ctx.session(&engine)?;
    Ok(match command {
        WorkspaceCommand::Create { .. } | WorkspaceCommand::List => {
            unreachable!("handled above")
        }
        WorkspaceCommand::Members { workspace } => {
            let members = s.workspace_members(&workspace)?;
            let (rows, list) = role_map(&members, "user");
            Output::new(
                json!({ "workspace": workspace, "members": list }),
                table(&["user", "role"], &rows, "no members"),
            )
        }
        WorkspaceCommand::Invite {
            workspace,
            user,
            role,
            add_to_all_projects,
        } => {
            s.invite_to_workspace(&workspace, &user, role, add_to_all_projects)?;
            let all = if add_to_all_projects {
                ", contributor on every project"
            } else {
                ""
            };
            Output::new(
                json!({ "workspace": workspace, "user": user, "role": role, "add_to_all_projects": add_to_all_projects }),
                format!("invited `{user}` to `{workspace}` as {role}{all}\n"),
            )
        }
        WorkspaceCommand::RemoveMember { workspace, user } => {
            s.remove_workspace_member(&workspace, &user)?;
            Output::new(
                json!({ "workspace": workspace, "user": user }),
                format!("removed `{user}` from `{workspace}`, with their project grants\n"),
            )
        }
        WorkspaceCommand::SetRole {
            workspace,
            user,
            role,
        } => {
            s.set_workspace_role(&workspace, &user, role)?;
            Output::new(
                json!({ "workspace": workspace, "user": user, "role": role }),
                format!("`{user}` is now {role} of `{workspace}`\n"),
            )
        }
        WorkspaceCommand::Settings {
            workspace,
            allow_public_projects,
            service_account_limit,
        } => {
            let status = if allow_public_projects.is_none() && service_account_limit.is_none() {
                s.workspace_status(&workspace)?
            } else {
                s.set_workspace_settings(
                    &workspace,
                    WorkspaceSettings {
                        allow_public_projects,
                        service_account_limit,
                    },
                )?
            };
            let text = pairs(&[
                ("workspace", status.workspace.clone()),
                (
                    "allow_public_projects",
                    status.allow_public_projects.to_string(),
                ),
                (
                    "service_account_limit",
                    status.service_account_limit.to_string(),
                ),
            ]);
            Output::new(&status, text)
        }
        WorkspaceCommand::Status { workspace } => {
            let status = s.workspace_status(&workspace)?;
            let text = status_text(&status);
            Output::new(&status, text)
        }
    })
}

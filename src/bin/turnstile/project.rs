//! `project`: projects, their members, service accounts and visibility.

use clap::Subcommand;
use serde_json::json;
use turnstile::{ProjectOptions, ProjectRole, Visibility};

use crate::context::Context;
use crate::output::{Failure, Output, one_line, pairs, role_map, shell_quote, table};

#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// create a project; its creator becomes owner
    #[command(after_help = "\
the name is `workspace/project`, or a bare name with --workspace (a service account
defaults to its own workspace). visibility: private (default), workspace, public.

examples:
  turnstile project create ml-team/classification
  turnstile project create Segmentation --workspace ml-team --key SEG --visibility workspace")]
    Create {
        /// `workspace/project`, or a project name with --workspace
        project: String,
        /// the workspace, for a bare project name
        #[arg(long)]
        workspace: Option<String>,
        /// the key (generated from the name when absent)
        #[arg(long)]
        key: Option<String>,
        /// `private`, `workspace` or `public`
        #[arg(long)]
        visibility: Option<Visibility>,
        /// a description
        #[arg(long)]
        description: Option<String>,
    },
    /// list the projects the acting principal can view, with their key, visibility,
    /// description and the principal's role
    #[command(after_help = "\
in workspace and name order. with --limit, one page at a time: the last line (or
the JSON field `next`) gives the --after of the next page.

examples:
  turnstile project list
  turnstile project list --limit 100
  turnstile project list --limit 100 --after ml-team/classification")]
    List {
        /// at most this many projects (1 to 10000)
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=10_000))]
        limit: Option<u16>,
        /// only projects after this one (`workspace/project`, a previous page's `next`)
        #[arg(long, value_name = "PROJECT")]
        after: Option<String>,
    },
    /// a project's key, visibility, description and the acting principal's role on it
    #[command(after_help = "\
a project the acting principal cannot view is `not found`, as if it did not exist.

examples:
  turnstile project show ml-team/classification
  turnstile --json project show ml-team/classification")]
    Show {
        /// `workspace/project`
        project: String,
    },
    /// delete a project (workspace admins)
    #[command(after_help = "examples:\n  turnstile project delete ml-team/old-experiments")]
    Delete {
        /// `workspace/project`
        project: String,
    },
    /// list the project's users and their effective roles
    #[command(after_help = "examples:\n  turnstile project members ml-team/classification")]
    Members {
        /// `workspace/project`
        project: String,
    },
    /// grant a workspace member a role on the project
    #[command(
        after_help = "examples:\n  turnstile project add-member ml-team/classification bob contributor"
    )]
    AddMember {
        /// `workspace/project`
        project: String,
        /// the user
        user: String,
        /// `viewer`, `contributor` or `owner`
        role: ProjectRole,
    },
    /// remove a user's grant on the project
    #[command(
        after_help = "examples:\n  turnstile project remove-member ml-team/classification bob"
    )]
    RemoveMember {
        /// `workspace/project`
        project: String,
        /// the user
        user: String,
    },
    /// change the role of a user who has a grant on the project
    #[command(
        after_help = "examples:\n  turnstile project set-member-role ml-team/classification bob owner"
    )]
    SetMemberRole {
        /// `workspace/project`
        project: String,
        /// the user
        user: String,
        /// `viewer`, `contributor` or `owner`
        role: ProjectRole,
    },
    /// change the project's visibility
    #[command(after_help = "\
`public` only while the workspace allows public projects.

examples:
  turnstile project visibility ml-team/classification workspace")]
    Visibility {
        /// `workspace/project`
        project: String,
        /// `private` (`priv`), `workspace` or `public` (`pub`)
        visibility: Visibility,
    },
    /// change the project's description
    #[command(
        after_help = "examples:\n  turnstile project description ml-team/classification \"image classifiers\""
    )]
    Description {
        /// `workspace/project`
        project: String,
        /// the new description
        description: String,
    },
    /// list the project's service accounts and their roles
    #[command(
        after_help = "examples:\n  turnstile project service-accounts ml-team/classification"
    )]
    ServiceAccounts {
        /// `workspace/project`
        project: String,
    },
    /// grant a service account of the workspace a role on the project
    #[command(
        after_help = "examples:\n  turnstile project add-service-account ml-team/classification cicd@ml-team contributor"
    )]
    AddServiceAccount {
        /// `workspace/project`
        project: String,
        /// `name@workspace`
        service_account: String,
        /// `viewer`, `contributor` or `owner`
        role: ProjectRole,
    },
    /// remove a service account's grant on the project
    #[command(
        after_help = "examples:\n  turnstile project remove-service-account ml-team/classification cicd@ml-team"
    )]
    RemoveServiceAccount {
        /// `workspace/project`
        project: String,
        /// `name@workspace`
        service_account: String,
    },
    /// change the role of a service account that has a grant on the project
    #[command(
        after_help = "examples:\n  turnstile project set-service-account-role ml-team/classification cicd@ml-team viewer"
    )]
    SetServiceAccountRole {
        /// `workspace/project`
        project: String,
        /// `name@workspace`
        service_account: String,
        /// `viewer`, `contributor` or `owner`
        role: ProjectRole,
    },
}

pub fn project(ctx: &Context, command: ProjectCommand) -> Result<Output, Failure> {
    let reads_only = matches!(
        command,
        ProjectCommand::List { .. }
            | ProjectCommand::Show { .. }
            | ProjectCommand::Members { .. }
            | ProjectCommand::ServiceAccounts { .. }
    );
    let engine = ctx.open_for(reads_only)?;
    let s = ctx.session(&engine)?;
    Ok(match command {
        ProjectCommand::Create {
            project,
            workspace,
            key,
            visibility,
            description,
        } => {
            let name = s.create_project(
                &project,
                ProjectOptions {
                    workspace,
                    key,
                    visibility,
                    description,
                },
            )?;
            Output::new(
                json!({ "project": name }),
                format!("created project `{name}`; `{}` owns it\n", s.actor()),
            )
        }
        ProjectCommand::List { limit, after } => {
            let (projects, next) = if limit.is_none() && after.is_none() {
                (s.list_projects()?, None)
            } else {
                let page =
                    s.list_projects_page(after.as_deref(), limit.map_or(1000, usize::from))?;
                (page.projects, page.next)
            };
            let projects = s.project_infos(&projects)?;
            let rows: Vec<Vec<String>> = projects
                .iter()
                .map(|p| {
                    vec![
                        p.project.clone(),
                        p.key.clone(),
                        p.visibility.to_string(),
                        p.role.to_string(),
                        one_line(&p.description),
                    ]
                })
                .collect();
            let mut text = table(
                &["project", "key", "visibility", "role", "description"],
                &rows,
                "no projects",
            );
            if let Some(next) = &next {
                text.push_str(&format!("more follow: --after {}\n", shell_quote(next)));
            }
            Output::new(json!({ "projects": projects, "next": next }), text)
        }
        ProjectCommand::Show { project } => {
            let info = s.project_info(&project)?;
            let text = pairs(&[
                ("project", info.project.clone()),
                ("key", info.key.clone()),
                ("visibility", info.visibility.to_string()),
                (
                    "your role",
                    format!("{} ({})", info.role, info.source.as_str()),
                ),
                ("description", one_line(&info.description)),
            ]);
            Output::new(&info, text)
        }
        ProjectCommand::Delete { project } => {
            s.delete_project(&project)?;
            Output::new(
                json!({ "project": project }),
                format!("deleted project `{project}`\n"),
            )
        }
        ProjectCommand::Members { project } => {
            let members = s.project_members(&project)?;
            let (rows, list) = role_map(&members, "user");
            Output::new(
                json!({ "project": project, "members": list }),
                table(&["user", "role"], &rows, "no members"),
            )
        }
        ProjectCommand::AddMember {
            project,
            user,
            role,
        } => {
            s.add_project_member(&project, &user, role)?;
            Output::new(
                json!({ "project": project, "user": user, "role": role }),
                format!("added `{user}` to `{project}` as {role}\n"),
            )
        }
        ProjectCommand::RemoveMember { project, user } => {
            s.remove_project_member(&project, &user)?;
            Output::new(
                json!({ "project": project, "user": user }),
                format!("removed `{user}` from `{project}`\n"),
            )
        }
        ProjectCommand::SetMemberRole {
            project,
            user,
            role,
        } => {
            s.set_project_member_role(&project, &user, role)?;
            Output::new(
                json!({ "project": project, "user": user, "role": role }),
                format!("`{user}` is now {role} on `{project}`\n"),
            )
        }
        ProjectCommand::Visibility {
            project,
            visibility,
        } => {
            s.set_project_visibility(&project, visibility)?;
            Output::new(
                json!({ "project": project, "visibility": visibility }),
                format!("`{project}` is now {visibility}\n"),
            )
        }
        ProjectCommand::Description {
            project,
            description,
        } => {
            s.set_project_description(&project, &description)?;
            Output::new(
                json!({ "project": project, "description": description }),
                format!("changed the description of `{project}`\n"),
            )
        }
        ProjectCommand::ServiceAccounts { project } => {
            let accounts = s.project_service_accounts(&project)?;
            let (rows, list) = role_map(&accounts, "service_account");
            Output::new(
                json!({ "project": project, "service_accounts": list }),
                table(&["service account", "role"], &rows, "no service accounts"),
            )
        }
        ProjectCommand::AddServiceAccount {
            project,
            service_account,
            role,
        } => {
            s.add_project_service_account(&project, &service_account, role)?;
            Output::new(
                json!({ "project": project, "service_account": service_account, "role": role }),
                format!("added `{service_account}` to `{project}` as {role}\n"),
            )
        }
        ProjectCommand::RemoveServiceAccount {
            project,
            service_account,
        } => {
            s.remove_project_service_account(&project, &service_account)?;
            Output::new(
                json!({ "project": project, "service_account": service_account }),
                format!("removed `{service_account}` from `{project}`\n"),
            )
        }
        ProjectCommand::SetServiceAccountRole {
            project,
            service_account,
            role,
        } => {
            s.set_project_service_account_role(&project, &service_account, role)?;
            Output::new(
                json!({ "project": project, "service_account": service_account, "role": role }),
                format!("`{service_account}` is now {role} on `{project}`\n"),
            )
        }
    })
}

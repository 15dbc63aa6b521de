//! `turnstile`: the command-line tool over the turnstile library. A thin layer: it
//! parses the command line, calls the library, and prints. No access rule is decided
//! here; see `docs/cli.md` for every command, the JSON fields and the exit codes.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use turnstile::{
    Action, AuditQuery, Engine, Principal, ProjectOptions, ProjectRole, Session, Visibility,
    WorkspaceName, WorkspaceRole, WorkspaceSettings, WorkspaceStatus,
};

// The modules live in `src/bin/turnstile/`, out of the way of Cargo's binary discovery.
#[path = "turnstile/matrix.rs"]
mod matrix;
#[path = "turnstile/output.rs"]
mod output;
#[path = "turnstile/transfer.rs"]
mod transfer;

use output::{
    EXIT_DENIED, EXIT_OK, Failure, Output, TokenJson, maybe_time, pairs, role_map, table, time,
};
use transfer::Format;

/// The database used when neither `--db` nor `TURNSTILE_DB` names one.
const DEFAULT_DB: &str = "turnstile.db";

const MAIN_HELP: &str = "\
acting principal:
  management commands act as the principal whose token is given with --token or
  TURNSTILE_TOKEN (prefer the variable: a command line is visible to other users).
  the application's own commands need no token, only the database file: `init`,
  `demo`, `user create`, `user token issue`, `workspace create`, `check --as`,
  `explain --as`, `matrix`, `import` and `export`.

exit codes:
  0  success; `check`: allowed
  1  denied, not found, invalid token or conflict; `check`: denied
  2  usage: a malformed command line, name, role, value or input file
  3  storage: the database is missing, unreadable, corrupt or newer than this turnstile

examples:
  turnstile demo
  export TURNSTILE_DB=acl.db
  export TURNSTILE_TOKEN=$(turnstile init --workspace ml-team --admin alice)
  turnstile user create bob
  turnstile workspace invite ml-team bob
  turnstile project create ml-team/classification --visibility workspace
  turnstile check --as bob ml-team/classification edit
  turnstile --json audit ml-team --limit 5";

/// turnstile: access control for workspaces, users, service accounts and projects,
/// over one SQLite file.
#[derive(Debug, Parser)]
#[command(name = "turnstile", version, after_help = MAIN_HELP)]
struct Cli {
    /// the database file [default: turnstile.db]
    #[arg(long, global = true, env = "TURNSTILE_DB", value_name = "PATH")]
    db: Option<PathBuf>,

    /// the acting principal's token, for management commands
    #[arg(
        long,
        global = true,
        env = "TURNSTILE_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    token: Option<String>,

    /// print one JSON document instead of tables (field names in docs/cli.md)
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// create a new database with its first workspace and admin; prints the admin's token
    #[command(after_help = "\
the database must not exist yet (or be empty). stdout holds only the token, so that
it can be captured; the rest goes to stderr.

examples:
  turnstile --db acl.db init --workspace ml-team --admin alice
  export TURNSTILE_TOKEN=$(turnstile init --workspace ml-team --admin alice)")]
    Init(InitArgs),

    /// build Neptune's service-account scenario in a fresh database and print its access matrix
    #[command(after_help = "\
workspace `ml-team` with admin `alice` and member `bob`; projects `classification`
(private), `sandbox` (workspace) and `showcase` (public); service account
`cicd@ml-team`, contributor on `classification` only. the matrix shows that the
service account does not see the `workspace`-visibility project while every member
does. without --db the demo database is a new temporary file.

examples:
  turnstile demo
  turnstile --db demo.db demo --force
  turnstile --json demo")]
    Demo(DemoArgs),

    /// print the principal the token authenticates
    #[command(after_help = "examples:\n  turnstile --token \"$TOKEN\" whoami")]
    Whoami,

    /// users and their personal tokens
    #[command(after_help = "\
examples:
  turnstile user create bob
  turnstile user token issue bob --label laptop --expires-in 30d
  turnstile user token list
  turnstile user token revoke 3")]
    User {
        #[command(subcommand)]
        command: UserCommand,
    },

    /// workspaces, their members, roles and settings
    #[command(after_help = "\
examples:
  turnstile workspace create ml-team --admin alice
  turnstile workspace invite ml-team bob --role member --add-to-all-projects
  turnstile workspace members ml-team
  turnstile workspace set-role ml-team bob admin
  turnstile workspace settings ml-team --allow-public-projects true
  turnstile workspace status ml-team")]
    Workspace {
        #[command(subcommand)]
        command: WorkspaceCommand,
    },

    /// projects, their members, service accounts and visibility
    #[command(after_help = "\
examples:
  turnstile project create ml-team/classification --key CLS --visibility private
  turnstile project list
  turnstile project add-member ml-team/classification bob contributor
  turnstile project add-service-account ml-team/classification cicd@ml-team viewer
  turnstile project visibility ml-team/classification workspace
  turnstile project members ml-team/classification")]
    Project {
        #[command(subcommand)]
        command: ProjectCommand,
    },

    /// service accounts of a workspace and their tokens
    #[command(
        visible_alias = "sa",
        after_help = "\
examples:
  turnstile service-account create ml-team cicd
  turnstile service-account list ml-team --all
  turnstile service-account token issue cicd@ml-team
  turnstile service-account deactivate cicd@ml-team
  turnstile service-account reactivate cicd@ml-team"
    )]
    ServiceAccount {
        #[command(subcommand)]
        command: ServiceAccountCommand,
    },

    /// may a principal perform an action on a project? prints allowed or denied; exits 0 or 1
    #[command(after_help = "\
the principal is --as (a username or `name@workspace`), --anonymous, or else the
token's principal. actions: view, edit, manage, delete.

examples:
  turnstile check --as bob ml-team/classification edit
  turnstile check --as cicd@ml-team ml-team/sandbox view || echo denied
  turnstile check --anonymous ml-team/showcase view
  TURNSTILE_TOKEN=$CI_TOKEN turnstile check ml-team/classification edit")]
    Check(CheckArgs),

    /// the effective role of a principal on a project, the rule that gave it, and what it allows
    #[command(after_help = "\
the principal is --as (a username or `name@workspace`), or else the token's principal.

examples:
  turnstile explain --as cicd@ml-team ml-team/sandbox
  turnstile --json explain --as bob ml-team/classification")]
    Explain(ExplainArgs),

    /// the access matrix: every principal × every project → effective role
    #[command(after_help = "\
rows are the users (with --workspace, the workspace's members), the service
accounts and the anonymous caller; `-` means no access.

examples:
  turnstile matrix --workspace ml-team
  turnstile --json matrix")]
    Matrix(MatrixArgs),

    /// a workspace's audit log, newest first (workspace admins)
    #[command(after_help = "\
times are RFC 3339 (`2025-01-31T12:00:00Z`), a date (`2025-01-31`) or a duration
ago (`90m`, `12h`, `7d`).

examples:
  turnstile audit ml-team
  turnstile audit ml-team --actor bob --since 7d --limit 20
  turnstile --json audit ml-team --target ml-team/classification")]
    Audit(AuditArgs),

    /// load users, workspaces, projects and grants from a JSON or CSV file, in one transaction
    #[command(after_help = "\
the format is --format, else the file's extension, else its content. `-` reads
stdin. all or nothing: on the first error nothing is imported. a progress bar
shows on a terminal.

examples:
  turnstile --db new.db import team.json
  turnstile import grants.csv
  turnstile export | turnstile --db copy.db import -")]
    Import(ImportArgs),

    /// write the whole model as JSON or CSV (never token secrets)
    #[command(after_help = "\
the format is --format, else the output file's extension, else JSON. importing the
export into an empty database reproduces the access matrix.

examples:
  turnstile export > team.json
  turnstile export --output team.csv
  turnstile export --format csv")]
    Export(ExportArgs),

    /// serve Neptune's management API and the native HTTP API (docs/http.md)
    #[command(after_help = "\
plain HTTP is served only on loopback addresses unless --insecure-http; give
--tls-cert and --tls-key for HTTPS. stops on SIGTERM or SIGINT after finishing the
requests in flight (at most 10 s).

examples:
  turnstile --db acl.db serve --listen 127.0.0.1:8686
  turnstile --db acl.db serve --listen 0.0.0.0:8443 --tls-cert cert.pem --tls-key key.pem")]
    Serve(turnstile::server::ServeArgs),

    /// print an API token in another format
    #[command(after_help = "\
the turnstile token is read from TURNSTILE_TOKEN (or --token), else from stdin.

examples:
  export NEPTUNE_API_TOKEN=$(TURNSTILE_TOKEN=$T turnstile token neptune --api-url http://127.0.0.1:8686)")]
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// a Neptune-format API token (NEPTUNE_API_TOKEN) for a turnstile token and server URL
    Neptune {
        /// the server's URL, as the neptune client will reach it
        #[arg(long, value_name = "URL")]
        api_url: String,
    },
}

#[derive(Debug, Args)]
struct InitArgs {
    /// the first workspace
    #[arg(long, value_name = "WORKSPACE")]
    workspace: String,
    /// the first admin, a new user
    #[arg(long, value_name = "USER")]
    admin: String,
    /// the admin token's label
    #[arg(long, default_value = "cli")]
    label: String,
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// replace the database file if it exists
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// create a user (no token needed)
    #[command(after_help = "examples:\n  turnstile user create bob")]
    Create {
        /// the username
        user: String,
    },
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

#[derive(Debug, Subcommand)]
enum UserTokenCommand {
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
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, conflicts_with = "expires_at")]
        expires_in: Option<TimeDelta>,
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

#[derive(Debug, Subcommand)]
enum WorkspaceCommand {
    /// create a workspace with an existing user as its admin (no token needed)
    #[command(after_help = "examples:\n  turnstile workspace create ml-team --admin alice")]
    Create {
        /// the workspace name
        workspace: String,
        /// its first admin
        #[arg(long, value_name = "USER")]
        admin: String,
    },
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

#[derive(Debug, Subcommand)]
enum ProjectCommand {
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
    /// list the projects the acting principal can view
    #[command(after_help = "\
in workspace and name order. with --limit, one page at a time: the last line (or
the JSON field `next`) gives the --after of the next page.

examples:
  turnstile project list
  turnstile project list --limit 100
  turnstile project list --limit 100 --after ml-team/classification")]
    List {
        /// at most this many projects (1 to 10000)
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// only projects after this one (`workspace/project`, a previous page's `next`)
        #[arg(long, value_name = "PROJECT")]
        after: Option<String>,
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

#[derive(Debug, Subcommand)]
enum ServiceAccountCommand {
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
enum ServiceAccountTokenCommand {
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

#[derive(Debug, Args)]
struct CheckArgs {
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
struct ExplainArgs {
    /// `workspace/project`
    project: String,
    /// the principal asked about: a username or `name@workspace`
    #[arg(long = "as", value_name = "PRINCIPAL")]
    as_principal: Option<String>,
}

#[derive(Debug, Args)]
struct MatrixArgs {
    /// only this workspace's projects, members and service accounts
    #[arg(long)]
    workspace: Option<String>,
}

#[derive(Debug, Args)]
struct AuditArgs {
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

#[derive(Debug, Args)]
struct ImportArgs {
    /// the file, or `-` for stdin
    file: PathBuf,
    /// the file's format
    #[arg(long, value_enum)]
    format: Option<Format>,
}

#[derive(Debug, Args)]
struct ExportArgs {
    /// write to this file instead of stdout
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// the format
    #[arg(long, value_enum)]
    format: Option<Format>,
}

/// `90m`, `12h`, `30d`, `2w`, `45s`.
fn parse_duration(s: &str) -> Result<TimeDelta, String> {
    let bad = || {
        format!("invalid duration `{s}`: expected a number and a unit, e.g. `90m`, `12h`, `30d`")
    };
    let unit_at = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = s.split_at(unit_at);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let delta = match unit {
        "s" => TimeDelta::try_seconds(n),
        "m" => TimeDelta::try_minutes(n),
        "h" => TimeDelta::try_hours(n),
        "d" => TimeDelta::try_days(n),
        "w" => TimeDelta::try_weeks(n),
        _ => None,
    };
    delta.ok_or_else(bad)
}

/// RFC 3339, or a date (midnight UTC).
fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| format!("invalid time `{s}`: expected RFC 3339 (`2025-01-31T12:00:00Z`) or a date (`2025-01-31`)"))
}

/// [`parse_time`], or a duration before now.
fn parse_time_or_ago(s: &str) -> Result<DateTime<Utc>, String> {
    match parse_duration(s) {
        Ok(ago) => Ok(Utc::now() - ago),
        Err(_) => parse_time(s).map_err(|_| {
            format!("invalid time `{s}`: expected RFC 3339, a date (`2025-01-31`) or a duration ago (`12h`, `7d`)")
        }),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    match run(cli) {
        Ok(out) => {
            out.print(json);
            ExitCode::from(out.code)
        }
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// What every command shares: where the database is, who acts.
struct Context {
    db: Option<PathBuf>,
    token: Option<String>,
}

impl Context {
    fn db_path(&self) -> PathBuf {
        self.db.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_DB))
    }

    /// Opens the existing database; a missing file is an error rather than a new,
    /// empty database made by a typo.
    fn open(&self) -> Result<Engine, Failure> {
        let path = self.db_path();
        if !path.exists() {
            return Err(Failure::storage(format!(
                "database `{}` not found: create it with `turnstile init` or name another with --db",
                path.display()
            )));
        }
        Ok(Engine::open(&path)?)
    }

    /// The acting principal's session, from `--token` or `TURNSTILE_TOKEN`.
    fn session<'e>(&self, engine: &'e Engine) -> Result<Session<'e>, Failure> {
        let token = self.token.as_deref().map(str::trim).ok_or_else(|| {
            Failure::usage("this command acts as a principal: pass --token or set TURNSTILE_TOKEN")
        })?;
        Ok(engine.authenticate(token)?)
    }

    /// The principal a `check` or `explain` is about: `--as`, else the token's.
    fn principal(&self, engine: &Engine, as_principal: Option<&str>) -> Result<Principal, Failure> {
        match as_principal {
            Some(p) => Ok(p.parse()?),
            None if self.token.is_some() => Ok(self.session(engine)?.actor().clone()),
            None => Err(Failure::usage(
                "name the principal with --as PRINCIPAL, or pass --token or set TURNSTILE_TOKEN",
            )),
        }
    }
}

fn run(cli: Cli) -> Result<Output, Failure> {
    let ctx = Context {
        db: cli.db,
        token: cli.token,
    };
    match cli.command {
        Command::Init(args) => init(&ctx, args),
        Command::Serve(args) => turnstile::server::serve(&ctx.db_path(), args)
            .map(|()| Output::new(json!({}), String::new()))
            .map_err(Failure::storage),
        Command::Token {
            command: TokenCommand::Neptune { api_url },
        } => {
            let token = match ctx.token.clone() {
                Some(t) => t,
                None => {
                    let mut t = String::new();
                    std::io::stdin().read_to_string(&mut t).map_err(|e| {
                        Failure::usage(format!("cannot read the token from stdin: {e}"))
                    })?;
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
        Command::Demo(args) => demo(&ctx, args),
        Command::Whoami => {
            let engine = ctx.open()?;
            let session = ctx.session(&engine)?;
            let actor = session.actor();
            let kind = if actor.is_service_account() {
                "service_account"
            } else {
                "user"
            };
            Ok(Output::new(
                json!({ "principal": actor.to_string(), "kind": kind }),
                format!("{actor}\n"),
            ))
        }
        Command::User { command } => user(&ctx, command),
        Command::Workspace { command } => workspace(&ctx, command),
        Command::Project { command } => project(&ctx, command),
        Command::ServiceAccount { command } => service_account(&ctx, command),
        Command::Check(args) => check(&ctx, args),
        Command::Explain(args) => explain(&ctx, args),
        Command::Matrix(args) => {
            let engine = ctx.open()?;
            let m = matrix::build(&engine, args.workspace.as_deref())?;
            let text = m.render();
            Ok(Output::new(&m, text))
        }
        Command::Audit(args) => audit(&ctx, args),
        Command::Import(args) => import(&ctx, args),
        Command::Export(args) => export(&ctx, args),
    }
}

/// `s` as one shell word, for lines people paste.
fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-@:+=,".contains(c));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Whether a file holds anything: a database is only ever created where there was none.
fn non_empty(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| !m.is_file() || m.len() > 0)
}

/// Removes a database file and its WAL companions.
fn remove_database(path: &Path) -> std::io::Result<()> {
    for suffix in ["-wal", "-shm"] {
        let mut companion = path.as_os_str().to_owned();
        companion.push(suffix);
        match std::fs::remove_file(PathBuf::from(companion)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Creates a database at `path`, fills it with `fill`, and removes it again if
/// filling fails, so that a failed `init` or `demo` leaves no half-made file.
fn create_database<T>(
    path: &Path,
    fill: impl FnOnce(&Engine) -> Result<T, Failure>,
) -> Result<T, Failure> {
    let result = Engine::open(path)
        .map_err(Failure::from)
        .and_then(|engine| fill(&engine));
    if result.is_err() {
        let _ = remove_database(path);
    }
    result
}

fn init(ctx: &Context, args: InitArgs) -> Result<Output, Failure> {
    let path = ctx.db_path();
    if non_empty(&path) {
        return Err(Failure::denied(format!(
            "database `{}` already exists: `init` creates a new one; use `workspace create` to add a workspace",
            path.display()
        )));
    }
    // Parse both names before creating anything.
    let workspace: WorkspaceName = args.workspace.parse()?;
    let admin: turnstile::Username = args.admin.parse()?;
    let token = create_database(&path, |engine| {
        engine.create_user(admin.as_str())?;
        engine.create_workspace(workspace.as_str(), admin.as_str())?;
        Ok(engine.issue_user_token(admin.as_str(), &args.label, None)?)
    })?;
    let note = format!(
        "created database `{}` with workspace `{workspace}` and admin `{admin}`; the admin's token:",
        path.display()
    );
    let doc = json!({
        "database": path.display().to_string(),
        "workspace": workspace.to_string(),
        "admin": admin.to_string(),
        "token": TokenJson::new(&token, None),
    });
    Ok(Output::token(doc, note, &token))
}

fn demo(ctx: &Context, args: DemoArgs) -> Result<Output, Failure> {
    let path = match &ctx.db {
        Some(path) => path.clone(),
        None => {
            let stamp = Utc::now().format("%Y%m%d-%H%M%S");
            std::env::temp_dir().join(format!("turnstile-demo-{stamp}-{}.db", std::process::id()))
        }
    };
    if non_empty(&path) {
        if !args.force {
            return Err(Failure::denied(format!(
                "database `{}` already exists: the demo needs a fresh one (pass --force to replace it)",
                path.display()
            )));
        }
        if path.is_dir() {
            return Err(Failure::storage(format!(
                "`{}` is a directory",
                path.display()
            )));
        }
        remove_database(&path)
            .map_err(|e| Failure::storage(format!("cannot remove `{}`: {e}", path.display())))?;
    }
    let m = create_database(&path, |engine| {
        matrix::build_demo(engine)?;
        matrix::build(engine, Some(matrix::DEMO_WORKSPACE))
    })?;
    let db = path.display().to_string();
    let db_arg = shell_quote(&db);
    let mut text = format!(
        "demo database: {db}\n\n\
         workspace `{ws}`: admin `{admin}`, member `{member}`, service account `{sa}`\n\
         `{sa}` is contributor on `{private}` only; `{member}` is viewer there\n\n",
        ws = matrix::DEMO_WORKSPACE,
        admin = matrix::DEMO_ADMIN,
        member = matrix::DEMO_MEMBER,
        sa = matrix::DEMO_SERVICE_ACCOUNT,
        private = matrix::DEMO_PRIVATE,
    );
    let visibilities: Vec<String> = m
        .projects
        .iter()
        .map(|p| format!("{} ({})", p.project, p.visibility))
        .collect();
    text.push_str(&format!("projects: {}\n\n", visibilities.join(", ")));
    text.push_str(&m.render());
    let sa_sees = m.role(matrix::DEMO_SERVICE_ACCOUNT, matrix::DEMO_WORKSPACE_PROJECT);
    let member_sees = m.role(matrix::DEMO_MEMBER, matrix::DEMO_WORKSPACE_PROJECT);
    if sa_sees.is_none() && member_sees.is_some() {
        text.push_str(&format!(
            "\n`{sa}` does not see `{p}`: `workspace` visibility makes every member\n\
             user an owner, but never reaches a service account (R5), which sees only the\n\
             projects it is assigned to, and public ones.\n",
            sa = matrix::DEMO_SERVICE_ACCOUNT,
            p = matrix::DEMO_WORKSPACE_PROJECT,
        ));
    }
    text.push_str(&format!(
        "\nexplore it:\n  turnstile --db {db_arg} explain --as {sa} {p}\n  turnstile --db {db_arg} check --as {member} {p} manage\n",
        sa = matrix::DEMO_SERVICE_ACCOUNT,
        member = matrix::DEMO_MEMBER,
        p = matrix::DEMO_WORKSPACE_PROJECT,
    ));
    Ok(Output::new(json!({ "database": db, "matrix": m }), text))
}

fn user(ctx: &Context, command: UserCommand) -> Result<Output, Failure> {
    let engine = ctx.open()?;
    match command {
        UserCommand::Create { user } => {
            let name = engine.create_user(&user)?;
            Ok(Output::new(
                json!({ "user": name.to_string() }),
                format!("created user `{name}`\n"),
            ))
        }
        UserCommand::Token { command } => match command {
            UserTokenCommand::Issue {
                user,
                label,
                expires_in,
                expires_at,
            } => {
                let expires_at = expires_at.or_else(|| expires_in.map(|d| Utc::now() + d));
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
                let session = ctx.session(&engine)?;
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
                ctx.session(&engine)?.revoke_token(id)?;
                Ok(Output::new(
                    json!({ "revoked": id }),
                    format!("revoked token {id}\n"),
                ))
            }
        },
    }
}

fn status_text(s: &WorkspaceStatus) -> String {
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

fn allowed(yes: bool) -> &'static str {
    if yes { "allowed" } else { "not allowed" }
}

fn workspace(ctx: &Context, command: WorkspaceCommand) -> Result<Output, Failure> {
    let engine = ctx.open()?;
    if let WorkspaceCommand::Create { workspace, admin } = &command {
        let name = engine.create_workspace(workspace, admin)?;
        let admin: turnstile::Username = admin.parse()?;
        return Ok(Output::new(
            json!({ "workspace": name.to_string(), "admin": admin.to_string() }),
            format!("created workspace `{name}` with admin `{admin}`\n"),
        ));
    }
    let s = ctx.session(&engine)?;
    Ok(match command {
        WorkspaceCommand::Create { .. } => unreachable!("handled above"),
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

fn project(ctx: &Context, command: ProjectCommand) -> Result<Output, Failure> {
    let engine = ctx.open()?;
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
                let page = s.list_projects_page(after.as_deref(), limit.unwrap_or(1000))?;
                (page.projects, page.next)
            };
            let rows: Vec<Vec<String>> = projects.iter().map(|p| vec![p.clone()]).collect();
            let mut text = table(&["project"], &rows, "no projects");
            if let Some(next) = &next {
                text.push_str(&format!("more follow: --after {}\n", shell_quote(next)));
            }
            Output::new(json!({ "projects": projects, "next": next }), text)
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

fn service_account(ctx: &Context, command: ServiceAccountCommand) -> Result<Output, Failure> {
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

fn check(ctx: &Context, args: CheckArgs) -> Result<Output, Failure> {
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

fn explain(ctx: &Context, args: ExplainArgs) -> Result<Output, Failure> {
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

fn audit(ctx: &Context, args: AuditArgs) -> Result<Output, Failure> {
    let engine = ctx.open()?;
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

fn import(ctx: &Context, args: ImportArgs) -> Result<Output, Failure> {
    let stdin = args.file.as_os_str() == "-";
    let mut content = String::new();
    let read = if stdin {
        std::io::stdin().read_to_string(&mut content).map(|_| ())
    } else {
        std::fs::read_to_string(&args.file).map(|c| content = c)
    };
    read.map_err(|e| {
        let what = format!("cannot read `{}`: {e}", args.file.display());
        if e.kind() == std::io::ErrorKind::NotFound {
            Failure::denied(what)
        } else {
            Failure::usage(what)
        }
    })?;
    let format = Format::detect(args.format, &args.file, &content);
    let snapshot = transfer::parse(format, &content)?;

    // An import may create its database: loading a snapshot into a new file is how a
    // copy is made.
    let engine = Engine::open(ctx.db_path())?;
    let projects: usize = snapshot.workspaces.iter().map(|w| w.projects.len()).sum();
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(projects as u64).with_style(
            ProgressStyle::with_template("importing projects [{bar:40}] {pos}/{len}")
                .expect("a valid template")
                .progress_chars("=> "),
        )
    } else {
        ProgressBar::hidden()
    };
    let result = engine.import_with_progress(&snapshot, |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    });
    bar.finish_and_clear();
    let summary = result?;
    let text = format!(
        "imported {} users, {} workspaces, {} memberships, {} service accounts, {} projects, {} grants\n",
        summary.users,
        summary.workspaces,
        summary.members,
        summary.service_accounts,
        summary.projects,
        summary.grants
    );
    Ok(Output::new(
        json!({
            "file": args.file.display().to_string(),
            "format": format.as_str(),
            "imported": summary,
        }),
        text,
    ))
}

fn export(ctx: &Context, args: ExportArgs) -> Result<Output, Failure> {
    let engine = ctx.open()?;
    let snapshot = engine.export()?;
    let format = args
        .format
        .or_else(|| args.output.as_deref().and_then(Format::of_path))
        .unwrap_or(Format::Json);
    let doc = transfer::write(format, &snapshot)?;
    let Some(path) = args.output else {
        return Ok(Output::raw(doc));
    };
    std::fs::write(&path, doc)
        .map_err(|e| Failure::storage(format!("cannot write `{}`: {e}", path.display())))?;
    let projects: usize = snapshot.workspaces.iter().map(|w| w.projects.len()).sum();
    Ok(Output::new(
        json!({
            "file": path.display().to_string(),
            "format": format.as_str(),
            "users": snapshot.users.len(),
            "workspaces": snapshot.workspaces.len(),
            "projects": projects,
        }),
        format!(
            "exported {} users, {} workspaces and {projects} projects to `{}`\n",
            snapshot.users.len(),
            snapshot.workspaces.len(),
            path.display()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quote_leaves_plain_words_and_quotes_the_rest() {
        assert_eq!(shell_quote("ml-team/cls"), "ml-team/cls");
        assert_eq!(shell_quote("/tmp/a b.db"), "'/tmp/a b.db'");
        assert_eq!(shell_quote("ml-team/bob's"), "'ml-team/bob'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn durations_and_times_parse() {
        assert_eq!(parse_duration("90m"), Ok(TimeDelta::minutes(90)));
        assert_eq!(parse_duration("2w"), Ok(TimeDelta::days(14)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
        let t = parse_time("2025-01-31").unwrap();
        assert_eq!(t.to_rfc3339(), "2025-01-31T00:00:00+00:00");
        let t = parse_time("2025-01-31T12:00:00+02:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2025-01-31T10:00:00+00:00");
        assert!(parse_time_or_ago("1h").unwrap() < Utc::now());
        assert!(parse_time_or_ago("yesterday").is_err());
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}

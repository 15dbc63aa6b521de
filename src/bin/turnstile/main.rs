//! `turnstile`: the command-line tool over the turnstile library. A thin layer: it
//! parses the command line, calls the library, and prints. No access rule is decided
//! here; see `docs/cli.md` for every command, the JSON fields and the exit codes
//! (the help itself never points an installed user at that file: it carries its own
//! text).
//!
//! `main` dispatches; each command group has its own module holding its clap
//! arguments and its handler.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use serde_json::json;

mod audit;
mod check;
mod completions;
mod context;
mod files;
mod import_export;
mod matrix;
mod migrate;
mod output;
mod project;
#[cfg(feature = "server")]
mod serve;
mod service_account;
mod setup;
mod time;
mod token;
mod transfer;
mod user;
mod workspace;

use context::Context;
use output::{Failure, Output};

const MAIN_HELP: &str = "\
acting principal:
  management commands act as the principal whose token is given with --token or
  TURNSTILE_TOKEN (prefer the variable: a command line is visible to other users).
  the application's own commands need no token, only the database file: `init`,
  `demo`, `user create`, `user list`, `user token issue`, `workspace create`,
  `workspace list`, `check --as`, `explain --as`, `matrix`, `import`, `export` and
  `completions`.

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

    /// print one JSON document instead of tables; a failure is one JSON line on stderr:
    /// {"error": {"kind", "name", "message"}}
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
    Init(setup::InitArgs),

    /// build Neptune's service-account scenario in a fresh database and print its access matrix
    #[command(after_help = "\
workspace `ml-team` with admin `alice` and member `bob`; projects `classification`
(private), `sandbox` (workspace) and `showcase` (public); service account
`cicd@ml-team`, contributor on `classification` only. the matrix shows that the
service account does not see the `workspace`-visibility project while every member
does. without --db the demo database is a new temporary file (TURNSTILE_DB is not
used: it names your own database). the demo never replaces a file it did not make:
--force replaces only an earlier demo database that no one has changed.

examples:
  turnstile demo
  turnstile --db demo.db demo --force
  turnstile --json demo")]
    Demo(setup::DemoArgs),

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
        command: user::UserCommand,
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
        command: workspace::WorkspaceCommand,
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
        command: project::ProjectCommand,
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
        command: service_account::ServiceAccountCommand,
    },

    /// may a principal perform an action on a project? prints allowed or denied; exits 0 or 1
    #[command(after_help = "\
the principal is --as (a username or `name@workspace`), --anonymous, or else the
token's principal. actions: view, edit, manage, delete.

with --file (`-` for stdin), one request per line: `[PRINCIPAL] PROJECT ACTION`
(without a principal, the command's), or with --json a JSON object
{\"principal\", \"anonymous\", \"project\", \"action\"}; one answer per line, in order:
`allowed|denied PRINCIPAL PROJECT ACTION` or `error line N: ...` (JSON lines with
--json). exits 0 if every request was allowed, 1 if any was denied, 2 if a line
was malformed.

examples:
  turnstile check --as bob ml-team/classification edit
  turnstile check --as cicd@ml-team ml-team/sandbox view || echo denied
  turnstile check --anonymous ml-team/showcase view
  TURNSTILE_TOKEN=$CI_TOKEN turnstile check ml-team/classification edit
  printf 'bob ml-team/classification edit\ncicd@ml-team ml-team/sandbox view\n' | turnstile check --file -")]
    Check(check::CheckArgs),

    /// the effective role of a principal on a project, the rule that gave it, and what it allows
    #[command(after_help = "\
the principal is --as (a username or `name@workspace`), or else the token's principal.

examples:
  turnstile explain --as cicd@ml-team ml-team/sandbox
  turnstile --json explain --as bob ml-team/classification")]
    Explain(check::ExplainArgs),

    /// the access matrix: every principal × every project → effective role
    #[command(after_help = "\
rows are the users (with --workspace, the workspace's members), the service
accounts and the anonymous caller; `-` means no access.

examples:
  turnstile matrix --workspace ml-team
  turnstile --json matrix")]
    Matrix(matrix::MatrixArgs),

    /// a workspace's audit log, newest first (workspace admins)
    #[command(after_help = "\
times are RFC 3339 (`2025-01-31T12:00:00Z`), a date (`2025-01-31`) or a duration
ago (`90m`, `12h`, `7d`).

examples:
  turnstile audit ml-team
  turnstile audit ml-team --actor bob --since 7d --limit 20
  turnstile --json audit ml-team --target ml-team/classification")]
    Audit(audit::AuditArgs),

    /// load users, workspaces, projects and grants from a JSON or CSV file, in one transaction
    #[command(after_help = "\
the format is --format, else the file's extension, else its content. `-` reads
stdin. all or nothing: on the first error nothing is imported, and a new database
file is not created. a progress bar shows on a terminal.

json: the document `turnstile --json export` writes. csv: a header row naming the
columns kind,workspace,name,principal,value,key,description (key and description
may be left out), then one row per fact:
  user,,USERNAME
  workspace,WORKSPACE
  setting,WORKSPACE,allow_public_projects|service_account_limit,,VALUE
  member,WORKSPACE,,USERNAME,admin|member
  service_account,WORKSPACE,NAME,,active|deactivated
  project,WORKSPACE,PROJECT,,VISIBILITY,KEY,DESCRIPTION
  grant,WORKSPACE,PROJECT,USERNAME|NAME@WORKSPACE,ROLE

examples:
  turnstile --db new.db import team.json
  turnstile import grants.csv
  turnstile export | turnstile --db copy.db import -")]
    Import(import_export::ImportArgs),

    /// write the whole model as JSON or CSV (never token secrets)
    #[command(after_help = "\
the format is --format, else the output file's extension, else JSON. importing the
export into an empty database reproduces the access matrix.

examples:
  turnstile export > team.json
  turnstile export --output team.csv
  turnstile export --format csv")]
    Export(import_export::ExportArgs),

    /// copy a whole model between two databases, SQLite or PostgreSQL, in one transaction
    #[command(after_help = "\
the target must be empty: a new file or an empty PostgreSQL database. users,
workspaces, memberships, service accounts, projects and grants are copied in one
transaction on the target; tokens and the audit log are not (only token digests are
stored, so issue new tokens). a progress bar shows on a terminal.

examples:
  turnstile migrate --from acl.db --to postgres://turnstile@db.internal/acl
  turnstile migrate --from postgres://turnstile@db.internal/acl --to backup.db")]
    Migrate(migrate::MigrateArgs),

    /// print a shell completion script
    #[command(after_help = "\
examples:
  turnstile completions bash > ~/.local/share/bash-completion/completions/turnstile
  turnstile completions zsh > \"${fpath[1]}/_turnstile\"
  turnstile completions fish > ~/.config/fish/completions/turnstile.fish")]
    Completions(completions::CompletionsArgs),

    /// serve Neptune's management API and the native HTTP API
    #[cfg(feature = "server")]
    #[command(after_help = "\
plain HTTP is served only on loopback addresses unless --insecure-http; give
--tls-cert and --tls-key for HTTPS. stops on SIGTERM or SIGINT after finishing the
requests in flight (at most 10 s).

examples:
  turnstile --db acl.db serve --listen 127.0.0.1:8686
  turnstile --db acl.db serve --listen 0.0.0.0:8443 --tls-cert cert.pem --tls-key key.pem")]
    Serve(turnstile::server::ServeArgs),

    /// print an API token in another format
    #[cfg(feature = "server")]
    #[command(after_help = "\
the turnstile token is read from TURNSTILE_TOKEN (or --token), else from stdin.

examples:
  export NEPTUNE_API_TOKEN=$(TURNSTILE_TOKEN=$T turnstile token neptune --api-url http://127.0.0.1:8686)")]
    Token {
        #[command(subcommand)]
        command: serve::TokenCommand,
    },
}

fn main() -> ExitCode {
    // Asked before parsing, so that a malformed command line is reported as JSON too.
    let json_asked = std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json");
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|matches| Ok((Cli::from_arg_matches(&matches)?, matches)));
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(e) if !json_asked || !e.use_stderr() => e.exit(),
        Err(e) => {
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or_default();
            let message = first.trim_start_matches("error: ").to_owned();
            Failure::usage(message).print(true);
            return ExitCode::from(output::EXIT_USAGE);
        }
    };
    let db_from_env = matches.value_source("db") == Some(ValueSource::EnvVariable);
    let json = cli.json;
    match run(cli, db_from_env) {
        Ok(out) => {
            out.print(json);
            ExitCode::from(out.code)
        }
        Err(failure) => {
            failure.print(json);
            ExitCode::from(failure.code())
        }
    }
}

fn run(cli: Cli, db_from_env: bool) -> Result<Output, Failure> {
    let ctx = Context {
        db: cli.db,
        db_from_env,
        json: cli.json,
        token: cli
            .token
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty()),
    };
    match cli.command {
        Command::Init(args) => setup::init(&ctx, args),
        Command::Demo(args) => setup::demo(&ctx, args),
        Command::Whoami => {
            let engine = ctx.open_for_reading()?;
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
        Command::User { command } => user::user(&ctx, command),
        Command::Workspace { command } => workspace::workspace(&ctx, command),
        Command::Project { command } => project::project(&ctx, command),
        Command::ServiceAccount { command } => service_account::service_account(&ctx, command),
        Command::Check(args) => check::check(&ctx, args),
        Command::Explain(args) => check::explain(&ctx, args),
        Command::Matrix(args) => matrix::matrix(&ctx, args),
        Command::Audit(args) => audit::audit(&ctx, args),
        Command::Import(args) => import_export::import(&ctx, args),
        Command::Export(args) => import_export::export(&ctx, args),
        Command::Migrate(args) => migrate::migrate(args),
        Command::Completions(args) => completions::completions(args, Cli::command()),
        #[cfg(feature = "server")]
        Command::Serve(args) => serve::serve(&ctx, args),
        #[cfg(feature = "server")]
        Command::Token { command } => serve::token(&ctx, command),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}

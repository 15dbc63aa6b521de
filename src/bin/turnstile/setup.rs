//! `init` and `demo`: the commands that create a database.

use std::path::Path;

use chrono::Utc;
use clap::Args;
use serde_json::json;
use turnstile::{Engine, WorkspaceName};

use crate::context::Context;
use crate::files::{non_empty, remove_database};
use crate::matrix;
use crate::output::{Failure, Output, TokenJson, shell_quote};

#[derive(Debug, Args)]
pub struct InitArgs {
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
pub struct DemoArgs {
    /// replace the file named by --db if it is an earlier, unchanged demo database
    /// (anything else is never replaced)
    #[arg(long)]
    force: bool,
}

/// The label of the token that marks a database as one the demo made. Its secret is
/// dropped at once: the token is a marker, never a credential anyone holds.
const DEMO_MARKER: &str = "made by turnstile demo";

/// Whether `path` holds a database that `demo` made and that no one has changed since:
/// a regular file with SQLite's header and a schema version (read before anything
/// opens it, so that no other file is ever opened as a database), the demo's marker
/// token, and exactly the demo's model. Only such a file may be replaced.
fn is_demo_database(path: &Path) -> bool {
    use std::io::Read as _;
    let regular = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file());
    let mut header = [0u8; 100];
    let read = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut header));
    if !regular || read.is_err() || &header[..16] != b"SQLite format 3\0" {
        return false;
    }
    // A file made by another program (schema version 0) is never opened.
    if header[60..64] == [0; 4] {
        return false;
    }
    let Ok(engine) = Engine::open(path) else {
        return false;
    };
    let marked = matrix::DEMO_ADMIN
        .parse()
        .map_err(Failure::from)
        .and_then(|admin| Ok(engine.session_for(&admin)?.tokens()?))
        .is_ok_and(|tokens| {
            tokens
                .iter()
                .any(|t| t.label == DEMO_MARKER && t.revoked_at.is_none())
        });
    let pristine = || -> Result<bool, Failure> {
        let fresh = Engine::open_in_memory()?;
        matrix::build_demo(&fresh)?;
        let model = |e: &Engine| -> Result<serde_json::Value, Failure> {
            serde_json::to_value(e.export()?).map_err(|e| Failure::storage(e.to_string()))
        };
        Ok(model(&engine)? == model(&fresh)?)
    };
    marked && pristine().unwrap_or(false)
}

/// Creates a database at `path`, fills it with `fill`, and removes it again if
/// filling fails, so that a failed `init` or `demo` leaves no half-made file.
fn create_database<T>(
    path: &Path,
    fill: impl FnOnce(&Engine) -> Result<T, Failure>,
) -> Result<T, Failure> {
    if crate::files::is_server_url(path) {
        // On a server the database exists already; `fill`'s calls are each one
        // transaction, and a database in use is refused before any of them.
        let engine = Engine::open(path)?;
        if crate::files::server_database_in_use(&engine)? {
            return Err(Failure::conflict(
                "DatabaseExists",
                "the database already holds a model: `init` and `demo` need an empty one",
            ));
        }
        return fill(&engine);
    }
    let result = Engine::open(path)
        .map_err(Failure::from)
        .and_then(|engine| fill(&engine));
    if result.is_err() {
        let _ = remove_database(path);
    }
    result
}

pub fn init(ctx: &Context, args: InitArgs) -> Result<Output, Failure> {
    let path = ctx.db_path();
    if non_empty(&path) {
        return Err(Failure::conflict(
            "DatabaseExists",
            format!(
                "database `{}` already exists: `init` creates a new one; use `workspace create` to add a workspace",
                path.display()
            ),
        ));
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

pub fn demo(ctx: &Context, args: DemoArgs) -> Result<Output, Failure> {
    // TURNSTILE_DB names the user's own database: the demo never uses it unasked.
    let path = match &ctx.db {
        Some(path) if !ctx.db_from_env => path.clone(),
        _ => {
            let stamp = Utc::now().format("%Y%m%d-%H%M%S");
            std::env::temp_dir().join(format!("turnstile-demo-{stamp}-{}.db", std::process::id()))
        }
    };
    if non_empty(&path) {
        if !is_demo_database(&path) {
            return Err(Failure::conflict(
                "NotADemoDatabase",
                format!(
                    "`{}` is not a database made by `turnstile demo`, so the demo never replaces it: \
                 name a new file with --db, or leave --db out for a temporary one",
                    path.display()
                ),
            ));
        }
        if !args.force {
            return Err(Failure::conflict(
                "DatabaseExists",
                format!(
                    "`{}` holds an earlier demo: pass --force to replace it",
                    path.display()
                ),
            ));
        }
        remove_database(&path)
            .map_err(|e| Failure::storage(format!("cannot remove `{}`: {e}", path.display())))?;
    }
    let m = create_database(&path, |engine| {
        matrix::build_demo(engine)?;
        drop(engine.issue_user_token(matrix::DEMO_ADMIN, DEMO_MARKER, None)?);
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

//! The import/export file formats: JSON is a [`Snapshot`] as serde writes it; CSV is
//! one row per fact, converted to and from the same `Snapshot`. The library does the
//! importing (one transaction, every rule checked); this module only translates.
//!
//! CSV columns: `kind,workspace,name,principal,value,key,description`, by header name
//! (any order; `key` and `description` may be left out). One row per fact:
//!
//! | kind | workspace | name | principal | value | key, description |
//! |---|---|---|---|---|---|
//! | `user` | | username | | | |
//! | `workspace` | workspace | | | | |
//! | `setting` | workspace | `allow_public_projects` or `service_account_limit` | | `true`/`false` or a number | |
//! | `member` | workspace | | username | `admin` or `member` | |
//! | `service_account` | workspace | short name | | `active` (default) or `deactivated` | |
//! | `project` | workspace | project name | | visibility (default `private`) | optional |
//! | `grant` | workspace | project name | username or `sa@workspace` | project role | |

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};
use serde_json::json;
use turnstile::{
    Principal, ProjectName, ProjectRole, ProjectSnapshot, ServiceAccountSnapshot, Snapshot,
    Visibility, WorkspaceName, WorkspaceRole, WorkspaceSnapshot,
};

use crate::output::Failure;

/// A file format of `import` and `export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// the snapshot document (`turnstile::Snapshot`)
    Json,
    /// one row per fact (the columns are in `turnstile import --help`)
    Csv,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Csv => "csv",
        }
    }

    /// The format a file name's extension names, if any.
    pub fn of_path(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "json" => Some(Self::Json),
            "csv" => Some(Self::Csv),
            _ => None,
        }
    }

    /// The format of an import: as asked, else by extension, else by content (a JSON
    /// document starts with `{`).
    pub fn detect(asked: Option<Self>, path: &Path, content: &str) -> Self {
        asked
            .or_else(|| Self::of_path(path))
            .unwrap_or(if content.trim_start().starts_with('{') {
                Self::Json
            } else {
                Self::Csv
            })
    }
}

/// Parses an import file.
pub fn parse(format: Format, content: &str) -> Result<Snapshot, Failure> {
    match format {
        Format::Json => serde_json::from_str(content)
            .map_err(|e| Failure::usage(format!("invalid json snapshot: {e}"))),
        Format::Csv => from_csv(content),
    }
}

/// Writes a snapshot in `format`.
pub fn write(format: Format, snapshot: &Snapshot) -> Result<String, Failure> {
    match format {
        Format::Json => serde_json::to_string_pretty(snapshot)
            .map(|s| s + "\n")
            .map_err(|e| Failure::storage(format!("cannot write json: {e}"))),
        Format::Csv => to_csv(snapshot),
    }
}

/// One CSV row. Columns a kind does not use are empty.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Row {
    kind: String,
    #[serde(default)]
    workspace: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    principal: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    description: String,
}

impl Row {
    fn new(kind: &str, workspace: &str, name: &str, principal: &str, value: &str) -> Self {
        Self {
            kind: kind.to_owned(),
            workspace: workspace.to_owned(),
            name: name.to_owned(),
            principal: principal.to_owned(),
            value: value.to_owned(),
            ..Self::default()
        }
    }
}

/// A library parse error, as a failure of the CSV line it is on.
fn at_line<T, E: Into<Failure>>(line: u64, r: Result<T, E>) -> Result<T, Failure> {
    r.map_err(|e| e.into().context(format_args!("line {line}")))
}

fn parse_at<T: FromStr<Err = turnstile::Error>>(line: u64, s: &str) -> Result<T, Failure> {
    at_line(line, s.parse::<T>())
}

/// A workspace snapshot with the library's defaults for everything but its name.
fn new_workspace(name: &str) -> Result<WorkspaceSnapshot, Failure> {
    serde_json::from_value(json!({ "name": name }))
        .map_err(|e| Failure::usage(format!("invalid workspace `{name}`: {e}")))
}

fn new_project(name: &str) -> Result<ProjectSnapshot, Failure> {
    serde_json::from_value(json!({ "name": name }))
        .map_err(|e| Failure::usage(format!("invalid project `{name}`: {e}")))
}

fn from_csv(content: &str) -> Result<Snapshot, Failure> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(content.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| Failure::usage(format!("invalid csv: {e}")))?
        .clone();
    if !headers.iter().any(|h| h == "kind") {
        return Err(Failure::usage(
            "invalid csv: the first line must be a header naming the columns `kind,workspace,name,principal,value,key,description`",
        ));
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| Failure::usage(format!("invalid csv: {e}")))?;
        let line = record.position().map_or(0, |p| p.line());
        if record.iter().all(str::is_empty) {
            continue;
        }
        let row: Row = record
            .deserialize(Some(&headers))
            .map_err(|e| Failure::usage(format!("line {line}: invalid row: {e}")))?;
        rows.push((line, row));
    }

    let mut snapshot = Snapshot::default();
    // Workspaces and projects by their folded names; rows may come in any order, so
    // declarations are read first.
    let mut workspaces: HashMap<String, usize> = HashMap::new();
    let mut projects: HashMap<(usize, String), usize> = HashMap::new();
    let find_ws = |workspaces: &HashMap<String, usize>, line: u64, name: &str| {
        let ws: WorkspaceName = parse_at(line, name)?;
        workspaces.get(ws.as_str()).copied().ok_or_else(|| {
            Failure::usage(format!(
                "line {line}: workspace `{name}` is not declared by a `workspace` row"
            ))
        })
    };

    for (line, row) in &rows {
        match row.kind.as_str() {
            "user" => snapshot.users.push(row.name.clone()),
            "workspace" => {
                let ws: WorkspaceName = parse_at(*line, &row.workspace)?;
                if workspaces.contains_key(ws.as_str()) {
                    return Err(Failure::usage(format!(
                        "line {line}: workspace `{}` is declared twice",
                        row.workspace
                    )));
                }
                workspaces.insert(ws.as_str().to_owned(), snapshot.workspaces.len());
                snapshot.workspaces.push(new_workspace(&row.workspace)?);
            }
            "setting" | "member" | "service_account" | "project" | "grant" => {}
            other => {
                return Err(Failure::usage(format!(
                    "line {line}: unknown kind `{other}`: expected `user`, `workspace`, `setting`, `member`, `service_account`, `project` or `grant`"
                )));
            }
        }
    }
    for (line, row) in &rows {
        let line = *line;
        match row.kind.as_str() {
            "setting" => {
                let ws = &mut snapshot.workspaces[find_ws(&workspaces, line, &row.workspace)?];
                match row.name.as_str() {
                    "allow_public_projects" => {
                        ws.allow_public_projects = row.value.parse().map_err(|_| {
                            Failure::usage(format!(
                                "line {line}: invalid setting value `{}`: expected `true` or `false`",
                                row.value
                            ))
                        })?;
                    }
                    "service_account_limit" => {
                        ws.service_account_limit = row.value.parse().map_err(|_| {
                            Failure::usage(format!(
                                "line {line}: invalid setting value `{}`: expected a number",
                                row.value
                            ))
                        })?;
                    }
                    other => {
                        return Err(Failure::usage(format!(
                            "line {line}: unknown setting `{other}`: expected `allow_public_projects` or `service_account_limit`"
                        )));
                    }
                }
            }
            "member" => {
                let i = find_ws(&workspaces, line, &row.workspace)?;
                let role: WorkspaceRole = parse_at(line, &row.value)?;
                snapshot.workspaces[i]
                    .members
                    .insert(row.principal.clone(), role);
            }
            "service_account" => {
                let i = find_ws(&workspaces, line, &row.workspace)?;
                let active = match row.value.as_str() {
                    "" | "active" => true,
                    "deactivated" => false,
                    other => {
                        return Err(Failure::usage(format!(
                            "line {line}: invalid service account state `{other}`: expected `active` or `deactivated`"
                        )));
                    }
                };
                snapshot.workspaces[i]
                    .service_accounts
                    .push(ServiceAccountSnapshot {
                        name: row.name.clone(),
                        active,
                    });
            }
            "project" => {
                let i = find_ws(&workspaces, line, &row.workspace)?;
                let name: ProjectName = parse_at(line, &row.name)?;
                let mut project = new_project(&row.name)?;
                if !row.value.is_empty() {
                    project.visibility = parse_at::<Visibility>(line, &row.value)?;
                }
                project.key = (!row.key.is_empty()).then(|| row.key.clone());
                project.description = row.description.clone();
                let ws = &mut snapshot.workspaces[i];
                projects.insert((i, name.key().to_owned()), ws.projects.len());
                ws.projects.push(project);
            }
            _ => {}
        }
    }
    for (line, row) in &rows {
        let line = *line;
        if row.kind != "grant" {
            continue;
        }
        let i = find_ws(&workspaces, line, &row.workspace)?;
        let name: ProjectName = parse_at(line, &row.name)?;
        let Some(&p) = projects.get(&(i, name.key().to_owned())) else {
            return Err(Failure::usage(format!(
                "line {line}: project `{}/{}` is not declared by a `project` row",
                row.workspace, row.name
            )));
        };
        let role: ProjectRole = parse_at(line, &row.value)?;
        let ws_name: WorkspaceName = parse_at(line, &row.workspace)?;
        let project = &mut snapshot.workspaces[i].projects[p];
        match parse_at::<Principal>(line, &row.principal)? {
            Principal::User(user) => {
                project.members.insert(user.to_string(), role);
            }
            Principal::ServiceAccount(sa) if sa.workspace == ws_name => {
                project.service_accounts.insert(sa.name.to_string(), role);
            }
            Principal::ServiceAccount(sa) => {
                return Err(Failure::usage(format!(
                    "line {line}: service account `{sa}` belongs to another workspace than `{ws_name}`"
                )));
            }
        }
    }
    Ok(snapshot)
}

fn to_csv(snapshot: &Snapshot) -> Result<String, Failure> {
    let mut rows = Vec::new();
    for user in &snapshot.users {
        rows.push(Row::new("user", "", user, "", ""));
    }
    for ws in &snapshot.workspaces {
        let w = ws.name.as_str();
        rows.push(Row::new("workspace", w, "", "", ""));
        rows.push(Row::new(
            "setting",
            w,
            "allow_public_projects",
            "",
            &ws.allow_public_projects.to_string(),
        ));
        rows.push(Row::new(
            "setting",
            w,
            "service_account_limit",
            "",
            &ws.service_account_limit.to_string(),
        ));
        for (user, role) in &ws.members {
            rows.push(Row::new("member", w, "", user, role.as_str()));
        }
        for sa in &ws.service_accounts {
            let state = if sa.active { "active" } else { "deactivated" };
            rows.push(Row::new("service_account", w, &sa.name, "", state));
        }
        for p in &ws.projects {
            rows.push(Row {
                key: p.key.clone().unwrap_or_default(),
                description: p.description.clone(),
                ..Row::new("project", w, &p.name, "", p.visibility.as_str())
            });
        }
        for p in &ws.projects {
            for (user, role) in &p.members {
                rows.push(Row::new("grant", w, &p.name, user, role.as_str()));
            }
            for (sa, role) in &p.service_accounts {
                rows.push(Row::new(
                    "grant",
                    w,
                    &p.name,
                    &format!("{sa}@{w}"),
                    role.as_str(),
                ));
            }
        }
    }
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in &rows {
        writer
            .serialize(row)
            .map_err(|e| Failure::storage(format!("cannot write csv: {e}")))?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| Failure::storage(format!("cannot write csv: {e}")))?;
    String::from_utf8(bytes).map_err(|e| Failure::storage(format!("cannot write csv: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "\
kind,workspace,name,principal,value,key,description
user,,alice,,,,
user,,bob,,,,
grant,ml-team,Classification,cicd@ml-team,viewer,,
grant,ml-team,classification,bob,contributor,,
workspace,ML-Team,,,,,
setting,ml-team,allow_public_projects,,true,,
member,ml-team,,alice,admin,,
member,ml-team,,bob,member,,
service_account,ml-team,cicd,,,,
service_account,ml-team,old,,deactivated,,
project,ml-team,Classification,,priv,CLS,\"images, mostly\"
project,ml-team,showcase,,public,,
";

    #[test]
    fn csv_rows_in_any_order_become_one_snapshot() -> Result<(), Failure> {
        let s = from_csv(CSV)?;
        assert_eq!(s.users, ["alice", "bob"]);
        let ws = &s.workspaces[0];
        assert!(ws.allow_public_projects);
        assert_eq!(ws.service_account_limit, 50);
        assert_eq!(ws.members["alice"], WorkspaceRole::Admin);
        assert!(!ws.service_accounts[1].active);
        let p = &ws.projects[0];
        assert_eq!(p.key.as_deref(), Some("CLS"));
        assert_eq!(p.description, "images, mostly");
        assert_eq!(p.visibility, Visibility::Private);
        assert_eq!(p.members["bob"], ProjectRole::Contributor);
        assert_eq!(p.service_accounts["cicd"], ProjectRole::Viewer);
        Ok(())
    }

    #[test]
    fn csv_round_trips_through_a_snapshot() -> Result<(), Failure> {
        let s = from_csv(CSV)?;
        let written = to_csv(&s)?;
        let again = from_csv(&written)?;
        assert_eq!(s, again);
        assert_eq!(to_csv(&again)?, written);
        Ok(())
    }

    #[test]
    fn csv_errors_name_their_line() {
        let bad = "kind,workspace,name,principal,value\nworkspace,ml-team,,,\nmember,ml-team,,alice,boss\n";
        let e = from_csv(bad).unwrap_err();
        assert_eq!(e.code(), crate::output::EXIT_USAGE);
        assert!(
            e.message
                .starts_with("line 3: invalid workspace role `boss`"),
            "{}",
            e.message
        );
        let e = from_csv("kind,workspace,name\ngrant,nowhere,cls\n").unwrap_err();
        assert!(
            e.message
                .contains("line 2: workspace `nowhere` is not declared"),
            "{}",
            e.message
        );
        let e = from_csv("name\nalice\n").unwrap_err();
        assert!(e.message.contains("header"), "{}", e.message);
    }
}

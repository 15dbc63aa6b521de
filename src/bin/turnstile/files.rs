//! Database files as files: whether one holds anything, removing one with its WAL
//! companions, and building a new one beside its final path so that a failure leaves
//! nothing where the user asked for a database.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::output::Failure;

/// Whether a file holds anything: a database is only ever created where there was none.
pub fn non_empty(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| !m.is_file() || m.len() > 0)
}

/// Whether `--db` names a PostgreSQL database (B1) rather than a file: the library
/// reads the location, so the CLI and `Engine::open` never disagree.
pub fn is_server_url(db: &Path) -> bool {
    turnstile::Engine::database_file(db).is_none()
}

/// Loads `snapshot` into `engine` in one transaction, with a progress bar on a
/// terminal that says `verb` (`importing`, `migrating`).
pub fn import_with_bar(
    engine: &turnstile::Engine,
    snapshot: &turnstile::Snapshot,
    verb: &str,
) -> Result<turnstile::ImportSummary, Failure> {
    use indicatif::{ProgressBar, ProgressStyle};
    use std::io::IsTerminal;
    let projects: usize = snapshot.workspaces.iter().map(|w| w.projects.len()).sum();
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(projects as u64).with_style(
            ProgressStyle::with_template(&format!("{verb} projects [{{bar:40}}] {{pos}}/{{len}}"))
                .expect("a valid template")
                .progress_chars("=> "),
        )
    } else {
        ProgressBar::hidden()
    };
    let result = engine.import_with_progress(snapshot, |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    });
    bar.finish_and_clear();
    Ok(result?)
}

/// What an import or a migration wrote, as the CLI says it: `3 users, 1 workspaces, ...`.
pub fn summary_counts(summary: &turnstile::ImportSummary) -> String {
    format!(
        "{} users, {} workspaces, {} memberships, {} service accounts, {} projects, {} grants",
        summary.users,
        summary.workspaces,
        summary.members,
        summary.service_accounts,
        summary.projects,
        summary.grants
    )
}

/// Whether a database on a server holds a model already (any user or workspace).
pub fn server_database_in_use(engine: &turnstile::Engine) -> Result<bool, Failure> {
    let snapshot = engine.export()?;
    Ok(!snapshot.users.is_empty() || !snapshot.workspaces.is_empty())
}

/// `path` with `suffix` appended to its file name (`acl.db-wal`).
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Removes a database file and its WAL companions.
pub fn remove_database(path: &Path) -> std::io::Result<()> {
    remove_if_present(&with_suffix(path, "-wal"))?;
    remove_if_present(&with_suffix(path, "-shm"))?;
    remove_if_present(path)
}

/// A database being built in a hidden temporary file in the directory of its final
/// path (so that the final move is a rename on one file system). Dropped without
/// [`install`](Self::install), it removes the file and its companions.
pub struct PendingDatabase {
    temp: PathBuf,
    target: PathBuf,
    installed: bool,
}

impl PendingDatabase {
    /// A temporary path beside `target`.
    pub fn beside(target: &Path) -> Result<Self, Failure> {
        let name = target
            .file_name()
            .ok_or_else(|| Failure::usage(format!("`{}` names no file", target.display())))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let temp = target.with_file_name(format!(
            ".{}.import-{}-{nanos}",
            name.to_string_lossy(),
            std::process::id()
        ));
        Ok(Self {
            temp,
            target: target.to_owned(),
            installed: false,
        })
    }

    /// Where to build the database.
    pub fn path(&self) -> &Path {
        &self.temp
    }

    /// Moves the finished database to its final path. Every connection to it must be
    /// closed. Never replaces a file that holds anything (one that appeared meanwhile).
    pub fn install(mut self) -> Result<(), Failure> {
        let fail = |e: std::io::Error| {
            Failure::storage(format!("cannot create `{}`: {e}", self.target.display()))
        };
        // SQLite removes the WAL when the last connection closes; should one remain, it
        // holds committed data and moves with the database.
        remove_if_present(&with_suffix(&self.temp, "-shm")).map_err(fail)?;
        let wal = with_suffix(&self.temp, "-wal");
        if wal.exists() {
            std::fs::rename(&wal, with_suffix(&self.target, "-wal")).map_err(fail)?;
        }
        // A hard link never replaces an existing file; an empty one may be replaced.
        match std::fs::hard_link(&self.temp, &self.target) {
            Ok(()) => remove_if_present(&self.temp).map_err(fail)?,
            Err(e) if e.kind() == ErrorKind::AlreadyExists && non_empty(&self.target) => {
                return Err(Failure::conflict(
                    "DatabaseExists",
                    format!(
                        "`{}` appeared while importing: nothing was imported",
                        self.target.display()
                    ),
                ));
            }
            // An empty file in the way, or a file system without hard links.
            Err(_) => std::fs::rename(&self.temp, &self.target).map_err(fail)?,
        }
        self.installed = true;
        Ok(())
    }
}

impl Drop for PendingDatabase {
    fn drop(&mut self) {
        if !self.installed {
            let _ = remove_database(&self.temp);
        }
    }
}

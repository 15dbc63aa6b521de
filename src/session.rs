//! [`Session`]: the management calls of SPEC §7, made by an authenticated actor.
//!
//! Every management call is one function that parses its input, opens one write
//! transaction, checks the actor's right (A6), checks invariants, writes, appends its
//! audit event and commits. Any early return drops the transaction, which rolls back.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use serde_json::json;

use crate::audit::{AuditEvent, AuditQuery, NewAuditEvent, Outcome};
use crate::clock::now_ms;
use crate::domain::access::{
    Action, Standing, WorkspaceAction, WorkspaceStanding, effective_access, listing_plan, permits,
    workspace_permits,
};
use crate::domain::description::ProjectDescription;
use crate::domain::invariants;
use crate::domain::names::{
    KeyAllocator, ProjectKey, ProjectName, QualifiedProjectName, ServiceAccountFullName,
    ServiceAccountName, Username, WorkspaceName,
};
use crate::domain::principal::Principal;
use crate::domain::roles::{ProjectRole, Visibility, WorkspaceRole};
use crate::error::{Error, Result};
use crate::repo::store::Store;
use crate::repo::{
    NewProject, ProjectRecord, Repository, ServiceAccountRecord, TokenId, TokenOwner, UserRecord,
    WorkspaceRecord,
};
use crate::token::{self, IssuedToken, TokenInfo};
use crate::uses::TokenUses;

/// A page of [`Session::list_projects_page`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProjectPage {
    /// Qualified project names, in list order.
    pub projects: Vec<String>,
    /// The cursor of the next page, `None` on the last page.
    pub next: Option<String>,
}

/// Options of [`Session::create_project`].
#[derive(Debug, Clone, Default)]
pub struct ProjectOptions {
    /// The workspace, when the name is not qualified. A service account's own
    /// workspace is the default for it.
    pub workspace: Option<String>,
    /// The key; generated from the name when absent (N4).
    pub key: Option<String>,
    /// The visibility; `private` when absent, as in Neptune.
    pub visibility: Option<Visibility>,
    /// A description.
    pub description: Option<String>,
}

/// Changes to a workspace's settings; absent fields are left as they are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkspaceSettings {
    /// Whether projects may be made public (A5).
    pub allow_public_projects: Option<bool>,
    /// The most active service accounts at once (S2).
    pub service_account_limit: Option<u32>,
}

/// The answer of [`Session::workspace_status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkspaceStatus {
    /// The workspace.
    pub workspace: String,
    /// Users with the `admin` role.
    pub admins: u32,
    /// Users with the `member` role.
    pub members: u32,
    /// Projects.
    pub projects: u32,
    /// Active service accounts.
    pub active_service_accounts: u32,
    /// Deactivated service accounts.
    pub deactivated_service_accounts: u32,
    /// The most active service accounts allowed at once.
    pub service_account_limit: u32,
    /// Whether projects may be public.
    pub allow_public_projects: bool,
}

/// A service account as listed by [`Session::service_accounts`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceAccountInfo {
    /// `name@workspace`.
    pub full_name: String,
    /// `false` once deactivated.
    pub active: bool,
}

/// A management call's name in the audit log and its phrase in `PermissionDenied`.
#[derive(Clone, Copy)]
struct Op {
    name: &'static str,
    phrase: &'static str,
}

macro_rules! ops {
    ($($id:ident = $name:literal, $phrase:literal;)*) => {$(
        const $id: Op = Op { name: $name, phrase: $phrase };
    )*};
}

ops! {
    CREATE_PROJECT = "project.create", "create projects";
    DELETE_PROJECT = "project.delete", "delete projects";
    VIEW_PROJECT = "project.view", "view this project";
    ADD_MEMBER = "project.member.add", "add project members";
    REMOVE_MEMBER = "project.member.remove", "remove project members";
    SET_MEMBER_ROLE = "project.member.set_role", "change project roles";
    SET_VISIBILITY = "project.visibility.set", "change project visibility";
    SET_DESCRIPTION = "project.description.set", "change project descriptions";
    ADD_SA = "project.service_account.add", "add project service accounts";
    REMOVE_SA = "project.service_account.remove", "remove project service accounts";
    SET_SA_ROLE = "project.service_account.set_role", "change service account roles";
    LIST_MEMBERS = "workspace.members.list", "list workspace members";
    INVITE = "workspace.member.invite", "invite workspace members";
    REMOVE_WS_MEMBER = "workspace.member.remove", "remove workspace members";
    SET_WS_ROLE = "workspace.member.set_role", "change workspace roles";
    SET_SETTINGS = "workspace.settings.set", "change workspace settings";
    WS_STATUS = "workspace.status", "read workspace status";
    CREATE_SA = "service_account.create", "create service accounts";
    DEACTIVATE_SA = "service_account.deactivate", "deactivate service accounts";
    REACTIVATE_SA = "service_account.reactivate", "reactivate service accounts";
    ISSUE_SA_TOKEN = "service_account.token.issue", "issue service account tokens";
    REVOKE_SA_TOKEN = "service_account.token.revoke", "revoke service account tokens";
    LIST_SAS = "workspace.service_accounts.list", "list service accounts";
    READ_AUDIT = "audit.read", "read the audit log";
}

/// A project a call may act on, with its workspace and its name for messages and the
/// audit log.
struct ProjectScope {
    ws: WorkspaceRecord,
    project: ProjectRecord,
    /// `workspace/Project`, as spelled at creation.
    target: String,
}

/// A refused call, recorded after its transaction rolled back (L1).
struct Denial {
    workspace: String,
    op: Op,
    target: String,
    reason: &'static str,
}

/// The actor as stored, re-read inside every call's transaction, so that a session
/// never acts on a membership or activation that has since changed.
enum ActorRecord {
    User(UserRecord),
    /// `None`: the account no longer exists.
    ServiceAccount(Option<ServiceAccountRecord>),
}

/// One call's view of the store: the repository inside its transaction, the actor,
/// and the denial to record if the call is refused.
struct Ctx<'a, R: Repository + ?Sized> {
    repo: &'a R,
    actor: &'a Principal,
    record: ActorRecord,
    now: i64,
    denial: Option<Denial>,
}

impl<'a, R: Repository + ?Sized> Ctx<'a, R> {
    /// The call's view of the store, after proving that the session's token, if it
    /// has one, is still live and still the actor's (T6).
    fn new(repo: &'a R, actor: &'a Principal, token: Option<TokenId>) -> Result<Self> {
        let now = now_ms();
        if let Some(id) = token {
            // INVARIANT: T6, a session dies with its token, in every process: the
            // token is re-read inside the call's own transaction.
            let live = repo
                .token_by_id(id)?
                .is_some_and(|t| t.principal == *actor && t.state().is_live(now));
            if !live {
                return Err(Error::InvalidToken);
            }
        }
        let record = match actor {
            Principal::User(name) => {
                ActorRecord::User(repo.user(name)?.ok_or_else(|| Error::UserNotFound {
                    user: name.to_string(),
                })?)
            }
            Principal::ServiceAccount(full) => {
                ActorRecord::ServiceAccount(match repo.workspace(&full.workspace)? {
                    Some(ws) => repo.service_account(ws.id, &full.name)?,
                    None => None,
                })
            }
        };
        Ok(Self {
            repo,
            actor,
            record,
            now,
            denial: None,
        })
    }

    fn actor_name(&self) -> String {
        self.actor.to_string()
    }

    fn workspace_standing(&self, ws: &WorkspaceRecord) -> Result<WorkspaceStanding> {
        Ok(match &self.record {
            ActorRecord::User(u) => {
                WorkspaceStanding::of_user(self.repo.workspace_role(ws.id, u.id)?)
            }
            ActorRecord::ServiceAccount(Some(sa)) if sa.active && sa.workspace_id == ws.id => {
                WorkspaceStanding::ServiceAccount
            }
            ActorRecord::ServiceAccount(_) => WorkspaceStanding::Outsider,
        })
    }

    fn project_standing(
        &self,
        ws: &WorkspaceRecord,
        p: &ProjectRecord,
    ) -> Result<Option<Standing>> {
        Ok(match &self.record {
            ActorRecord::User(u) => Some(Standing::User {
                workspace_role: self.repo.workspace_role(ws.id, u.id)?,
                grant: self.repo.user_grant(p.id, u.id)?,
            }),
            ActorRecord::ServiceAccount(Some(sa)) => Some(Standing::ServiceAccount {
                active: sa.active,
                in_workspace: sa.workspace_id == ws.id,
                grant: self.repo.service_account_grant(p.id, sa.id)?,
            }),
            ActorRecord::ServiceAccount(None) => None,
        })
    }

    fn deny(&mut self, workspace: &WorkspaceName, op: Op, target: &str, reason: &'static str) {
        self.denial = Some(Denial {
            workspace: workspace.to_string(),
            op,
            target: target.to_owned(),
            reason,
        });
    }

    fn permission_denied(&mut self, ws: &WorkspaceName, op: Op, target: &str) -> Error {
        self.deny(ws, op, target, "permission denied");
        Error::PermissionDenied {
            actor: self.actor_name(),
            action: op.phrase.to_owned(),
            target: target.to_owned(),
        }
    }

    /// The workspace and the actor's standing in it, if the actor may perform
    /// `action` there. An outsider gets `not_found()`, as if the workspace did not exist.
    fn require_workspace(
        &mut self,
        name: &WorkspaceName,
        action: WorkspaceAction,
        op: Op,
        not_found: impl Fn() -> Error,
    ) -> Result<(WorkspaceRecord, WorkspaceStanding)> {
        let ws = self.repo.workspace(name)?.ok_or_else(&not_found)?;
        let standing = self.workspace_standing(&ws)?;
        if standing == WorkspaceStanding::Outsider {
            self.deny(name, op, name.as_str(), "not in workspace");
            return Err(not_found());
        }
        if !workspace_permits(standing, action) {
            return Err(self.permission_denied(name, op, name.as_str()));
        }
        Ok((ws, standing))
    }

    /// The project, if the actor may perform `action` on it (A6): a project the actor
    /// cannot view is `ProjectNotFound`, one it can view but not act on is
    /// `PermissionDenied`.
    fn require_project(
        &mut self,
        name: &QualifiedProjectName,
        action: Action,
        op: Op,
    ) -> Result<ProjectScope> {
        let not_found = || Error::ProjectNotFound {
            project: name.to_string(),
        };
        let ws = self
            .repo
            .workspace(&name.workspace)?
            .ok_or_else(not_found)?;
        let project = self
            .repo
            .project(ws.id, &name.project)?
            .ok_or_else(not_found)?;
        let target = format!("{}/{}", ws.name, project.name);
        let standing = self.project_standing(&ws, &project)?;
        let access = standing.and_then(|s| effective_access(project.visibility, s));
        let allowed = |a| standing.is_some_and(|s| permits(s, access, a));
        // INVARIANT: A6, no existence leak: not viewable is indistinguishable from absent.
        if !allowed(Action::View) {
            self.deny(&ws.name, op, &target, "project not visible");
            return Err(not_found());
        }
        if !allowed(action) {
            return Err(self.permission_denied(&ws.name, op, &target));
        }
        Ok(ProjectScope {
            ws,
            project,
            target,
        })
    }

    fn audit(
        &self,
        ws: &WorkspaceName,
        op: Op,
        target: &str,
        details: serde_json::Value,
    ) -> Result<()> {
        self.repo.append_audit(&NewAuditEvent {
            at: self.now,
            workspace: Some(ws.as_str()),
            actor: &self.actor_name(),
            action: op.name,
            target,
            outcome: Outcome::Ok,
            details,
        })
    }

    /// A service account of the project's workspace that can be assigned (S3).
    fn assignable_service_account(
        &self,
        ws: &WorkspaceRecord,
        full: &ServiceAccountFullName,
    ) -> Result<ServiceAccountRecord> {
        // INVARIANT: R7, an account is assigned only in its own workspace.
        if full.workspace != ws.name {
            return Err(Error::ServiceAccountNotFound {
                account: full.to_string(),
            });
        }
        Ok(self.repo.active_service_account(full)?.1)
    }

    fn issue_service_account_token(
        &self,
        sa: &ServiceAccountRecord,
        full: &ServiceAccountFullName,
    ) -> Result<IssuedToken> {
        let new = token::generate()?;
        let label = "service account token";
        let id = self.repo.insert_token(
            TokenOwner::ServiceAccount(sa.id),
            &new.digest,
            label,
            self.now,
            None,
        )?;
        Ok(IssuedToken {
            id,
            principal: Principal::ServiceAccount(full.clone()),
            label: label.to_owned(),
            expires_at: None,
            secret: new.secret,
        })
    }
}

/// What a session asks of the engine that made it: the decision path, with the
/// engine's decision cache (T4). A narrow interface, so that this module does not
/// depend on the engine.
pub(crate) trait Decide: Sync {
    /// [`Engine::check`](crate::Engine::check).
    fn check(&self, principal: &Principal, project: &str, action: Action) -> Result<bool>;
    /// [`Engine::explain`](crate::Engine::explain).
    fn explain(
        &self,
        principal: &Principal,
        project: &str,
    ) -> Result<Option<crate::domain::access::Access>>;
}

/// The management calls of SPEC §7, made by one authenticated actor.
///
/// A session is cheap: it holds the actor's name, and every call re-reads the actor's
/// standing inside its own transaction.
pub struct Session<'e> {
    pub(crate) store: &'e Store,
    uses: &'e TokenUses,
    /// The engine's decision path, with its cache.
    pub(crate) decide: &'e dyn Decide,
    pub(crate) actor: Principal,
    /// The token the session was authenticated with; `None` for
    /// [`Engine::session_for`](crate::Engine::session_for).
    token: Option<TokenId>,
}

impl fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("actor", &self.actor)
            .field("token", &self.token)
            .finish()
    }
}

impl<'e> Session<'e> {
    pub(crate) fn new(
        store: &'e Store,
        uses: &'e TokenUses,
        decide: &'e dyn Decide,
        actor: Principal,
        token: Option<TokenId>,
    ) -> Self {
        Self {
            store,
            uses,
            decide,
            actor,
            token,
        }
    }

    /// The acting principal.
    pub fn actor(&self) -> &Principal {
        &self.actor
    }

    /// The id of the token the session is bound to (T6), or `None` for a session the
    /// application made with [`Engine::session_for`](crate::Engine::session_for).
    pub fn token_id(&self) -> Option<TokenId> {
        self.token
    }

    /// Runs a management call in one write transaction; a refused call leaves a
    /// denial event, written after the call's own transaction rolled back (L1).
    fn mutate<T>(
        &self,
        mut f: impl FnMut(&mut Ctx<'_, dyn Repository + '_>) -> Result<T>,
    ) -> Result<T> {
        let mut denial = None;
        let result = self.store.write(|repo| {
            let mut ctx = Ctx::new(repo, &self.actor, self.token)?;
            let out = f(&mut ctx);
            denial = ctx.denial.take();
            out
        });
        if result.is_err()
            && let Some(d) = denial
        {
            let actor = self.actor.to_string();
            // The call's own error is what the caller needs; failing to record the
            // denial must not replace it.
            let _ = self.store.write(|repo| {
                repo.append_audit(&NewAuditEvent {
                    at: now_ms(),
                    workspace: Some(&d.workspace),
                    actor: &actor,
                    action: d.op.name,
                    target: &d.target,
                    outcome: Outcome::Denied,
                    details: json!({ "reason": d.reason }),
                })
            });
        }
        result
    }

    /// Runs a read-only call on a consistent snapshot. Reads are not audited.
    fn query<T>(
        &self,
        f: impl FnOnce(&mut Ctx<'_, dyn Repository + '_>) -> Result<T>,
    ) -> Result<T> {
        self.store
            .read(|repo| f(&mut Ctx::new(repo, &self.actor, self.token)?))
    }

    /// The qualified names of every project the actor can view, in workspace and
    /// project-name order (Neptune's `get_project_list`).
    pub fn list_projects(&self) -> Result<Vec<String>> {
        Ok(self.query(|ctx| ctx.list(("", ""), None))?.0)
    }

    /// One page of [`list_projects`](Self::list_projects): up to `limit` (1 to 10,000)
    /// names strictly after `after` (a qualified name from a previous page's `next`, or
    /// `None` for the first page), in the same order. Never truncates silently: `next`
    /// is set whenever more projects follow.
    ///
    /// ```
    /// # use turnstile::Engine;
    /// # let engine = Engine::open_in_memory()?;
    /// # engine.create_user("alice")?;
    /// # engine.create_workspace("ml-team", "alice")?;
    /// let alice = engine.session_for(&"alice".parse()?)?;
    /// for name in ["ml-team/a-1", "ml-team/b-2", "ml-team/c-3"] {
    ///     alice.create_project(name, Default::default())?;
    /// }
    /// let first = alice.list_projects_page(None, 2)?;
    /// assert_eq!(first.projects, ["ml-team/a-1", "ml-team/b-2"]);
    /// let rest = alice.list_projects_page(first.next.as_deref(), 2)?;
    /// assert_eq!(rest.projects, ["ml-team/c-3"]);
    /// assert_eq!(rest.next, None);
    /// # Ok::<(), turnstile::Error>(())
    /// ```
    pub fn list_projects_page(&self, after: Option<&str>, limit: usize) -> Result<ProjectPage> {
        let limit = limit.clamp(1, 10_000);
        let cursor = after.map(str::parse::<QualifiedProjectName>).transpose()?;
        let (ws, key) = cursor
            .as_ref()
            .map_or(("", ""), |c| (c.workspace.as_str(), c.project.key()));
        let (projects, more) = self.query(|ctx| ctx.list((ws, key), Some(limit)))?;
        let next = if more { projects.last().cloned() } else { None };
        Ok(ProjectPage { projects, next })
    }

    /// Creates a project and makes the actor its owner (A1). `name` is
    /// `workspace/project`, or a bare project name with `options.workspace` (a service
    /// account defaults to its own workspace). Returns the qualified name.
    ///
    /// ```
    /// # use turnstile::{Engine, ProjectOptions, Visibility};
    /// # let engine = Engine::open_in_memory()?;
    /// # engine.create_user("alice")?;
    /// # engine.create_workspace("ml-team", "alice")?;
    /// let alice = engine.session_for(&"alice".parse()?)?;
    /// let name = alice.create_project("Classification", ProjectOptions {
    ///     workspace: Some("ml-team".into()),
    ///     visibility: Some(Visibility::Workspace),
    ///     ..Default::default()
    /// })?;
    /// assert_eq!(name, "ml-team/Classification");
    /// # Ok::<(), turnstile::Error>(())
    /// ```
    pub fn create_project(&self, name: &str, options: ProjectOptions) -> Result<String> {
        let qualified = self.qualify(name, options.workspace.as_deref())?;
        let key: Option<ProjectKey> = options.key.as_deref().map(str::parse).transpose()?;
        let visibility = options.visibility.unwrap_or(Visibility::Private);
        let description: ProjectDescription =
            options.description.as_deref().unwrap_or_default().parse()?;
        self.mutate(|ctx| {
            let (ws, _) = ctx.require_workspace(
                &qualified.workspace,
                WorkspaceAction::CreateProject,
                CREATE_PROJECT,
                || Error::WorkspaceNotFound {
                    workspace: qualified.workspace.to_string(),
                },
            )?;
            invariants::visibility_allowed(&ws.name, visibility, ws.allow_public_projects)?;
            if ctx.repo.project(ws.id, &qualified.project)?.is_some() {
                return Err(Error::ProjectAlreadyExists {
                    project: qualified.to_string(),
                });
            }
            // N7: one indexed look-up of the new name's skeleton.
            let skeleton = qualified.project.skeleton();
            if let Some(existing) = ctx.repo.confusable_project(ws.id, skeleton)? {
                return Err(Error::ProjectNameConfusable {
                    project: qualified.to_string(),
                    existing: format!("{}/{existing}", ws.name),
                });
            }
            let key = match key.clone() {
                Some(key) if ctx.repo.project_key_taken(ws.id, &key)? => {
                    return Err(Error::ProjectKeyCollision {
                        key: key.to_string(),
                        workspace: ws.name.to_string(),
                    });
                }
                Some(key) => key,
                None => {
                    let preferred = ProjectKey::from_name(&qualified.project);
                    // Every candidate starts with the preferred key's first character.
                    let taken = ctx.repo.project_keys(ws.id, &preferred.as_str()[..1])?;
                    KeyAllocator::new(taken).allocate(&preferred)
                }
            };
            let id = ctx.repo.insert_project(
                &NewProject {
                    workspace_id: ws.id,
                    name: &qualified.project,
                    key: &key,
                    visibility,
                    description: &description,
                },
                ctx.now,
            )?;
            // A1: the creator, user or service account, owns what it creates.
            match &ctx.record {
                ActorRecord::User(u) => ctx.repo.put_user_grant(id, u.id, ProjectRole::Owner)?,
                ActorRecord::ServiceAccount(Some(sa)) => {
                    ctx.repo
                        .put_service_account_grant(id, sa.id, ProjectRole::Owner)?
                }
                // require_workspace admits no missing account; should one vanish, it
                // is not found rather than a panic.
                ActorRecord::ServiceAccount(None) => {
                    return Err(Error::ServiceAccountNotFound {
                        account: ctx.actor_name(),
                    });
                }
            }
            let target = qualified.to_string();
            ctx.audit(
                &ws.name,
                CREATE_PROJECT,
                &target,
                json!({ "key": key.as_str(), "visibility": visibility }),
            )?;
            Ok(target)
        })
    }

    fn qualify(&self, name: &str, workspace: Option<&str>) -> Result<QualifiedProjectName> {
        if name.contains('/') {
            let q: QualifiedProjectName = name.parse()?;
            if let Some(ws) = workspace
                && ws.parse::<WorkspaceName>()? != q.workspace
            {
                return Err(Error::InvalidProjectName {
                    value: crate::domain::names::echo(name),
                });
            }
            return Ok(q);
        }
        let project: ProjectName = name.parse()?;
        let workspace = match (workspace, &self.actor) {
            (Some(ws), _) => ws.parse()?,
            (None, Principal::ServiceAccount(sa)) => sa.workspace.clone(),
            (None, Principal::User(_)) => {
                return Err(Error::InvalidProjectName {
                    value: crate::domain::names::echo(name),
                });
            }
        };
        Ok(QualifiedProjectName { workspace, project })
    }

    /// Deletes a project and its grants. Only a user who is workspace admin may (A3).
    pub fn delete_project(&self, project: &str) -> Result<()> {
        let name: QualifiedProjectName = project.parse()?;
        self.mutate(|ctx| {
            let ProjectScope {
                ws,
                project: p,
                target,
            } = ctx.require_project(&name, Action::Delete, DELETE_PROJECT)?;
            ctx.repo.delete_project(p.id)?;
            ctx.audit(
                &ws.name,
                DELETE_PROJECT,
                &target,
                json!({ "key": p.key.as_str() }),
            )
        })
    }

    /// The project's users and their effective roles: explicit grants, and on a
    /// `workspace`-visibility project every workspace member, as owner (R3).
    pub fn project_members(&self, project: &str) -> Result<BTreeMap<String, ProjectRole>> {
        let name: QualifiedProjectName = project.parse()?;
        self.query(|ctx| {
            let ProjectScope { project: p, .. } =
                ctx.require_project(&name, Action::View, VIEW_PROJECT)?;
            let users = ctx.repo.project_users(p.id, members_own_it(p.visibility))?;
            Ok(users
                .into_iter()
                .filter_map(|u| {
                    let standing = Standing::User {
                        workspace_role: u.workspace_role,
                        grant: u.grant,
                    };
                    effective_access(p.visibility, standing).map(|a| (u.name.to_string(), a.role))
                })
                .collect())
        })
    }

    /// Grants `role` on a project to a workspace member (A7). On a
    /// `workspace`-visibility project every member already is owner (A8).
    pub fn add_project_member(
        &self,
        project: &str,
        username: &str,
        role: ProjectRole,
    ) -> Result<()> {
        let name: QualifiedProjectName = project.parse()?;
        let username: Username = username.parse()?;
        self.mutate(|ctx| {
            let ProjectScope {
                ws,
                project: p,
                target,
            } = ctx.require_project(&name, Action::Manage, ADD_MEMBER)?;
            let user = ctx
                .repo
                .user(&username)?
                .ok_or_else(|| Error::UserNotFound {
                    user: username.to_string(),
                })?;
            let ws_role = ctx.repo.workspace_role(ws.id, user.id)?;
            invariants::may_hold_grant(&user.name, &ws.name, ws_role.is_some())?;
            // A8: a member's owner role through `workspace` visibility is access already.
            let already = match invariants::role_through_visibility(p.visibility, ws_role) {
                Some(role) => Some(role),
                None => ctx.repo.user_grant(p.id, user.id)?,
            };
            if let Some(role) = already {
                return Err(Error::UserAlreadyHasAccess {
                    user: user.name.to_string(),
                    project: target,
                    role,
                });
            }
            ctx.repo.put_user_grant(p.id, user.id, role)?;
            ctx.audit(
                &ws.name,
                ADD_MEMBER,
                &target,
                json!({ "user": user.name.as_str(), "role": role }),
            )
        })
    }

    /// Removes a user's explicit grant on a project.
    pub fn remove_project_member(&self, project: &str, username: &str) -> Result<()> {
        let name: QualifiedProjectName = project.parse()?;
        let username: Username = username.parse()?;
        self.mutate(|ctx| {
            let ProjectScope {
                ws,
                project: p,
                target,
            } = ctx.require_project(&name, Action::Manage, REMOVE_MEMBER)?;
            let without_access = || Error::UserNotExistsOrWithoutAccess {
                user: username.to_string(),
                project: target.clone(),
            };
            let user = ctx.repo.user(&username)?.ok_or_else(without_access)?;
            // A8: on a `workspace`-visibility project a member's access is not a grant
            // that can be removed.
            let ws_role = ctx.repo.workspace_role(ws.id, user.id)?;
            if invariants::role_through_visibility(p.visibility, ws_role).is_some() {
                return Err(without_access());
            }
            if !ctx.repo.delete_user_grant(p.id, user.id)? {
                return Err(without_access());
            }
            ctx.audit(
                &ws.name,
                REMOVE_MEMBER,
                &target,
                json!({ "user": user.name.as_str() }),
            )
        })
    }

    /// Changes the role of a user who has an explicit grant on the project.
    pub fn set_project_member_role(
        &self,
        project: &str,
        username: &str,
        role: ProjectRole,
    ) -> Result<()> {
        let name: QualifiedProjectName = project.parse()?;
        let username: Username = username.parse()?;
        self.mutate(|ctx| {
            let ProjectScope {
                ws,
                project: p,
                target,
            } = ctx.require_project(&name, Action::Manage, SET_MEMBER_ROLE)?;
            let without_access = || Error::UserNotExistsOrWithoutAccess {
                user: username.to_string(),
                project: target.clone(),
            };
            let user = ctx.repo.user(&username)?.ok_or_else(without_access)?;
            let from = ctx
                .repo
                .user_grant(p.id, user.id)?
                .ok_or_else(without_access)?;
            ctx.repo.put_user_grant(p.id, user.id, role)?;
            ctx.audit(
                &ws.name,
                SET_MEMBER_ROLE,
                &target,
                json!({ "user": user.name.as_str(), "from": from, "to": role }),
            )
        })
    }

    /// The workspace's users and their workspace roles.
    pub fn workspace_members(&self, workspace: &str) -> Result<BTreeMap<String, WorkspaceRole>> {
        let name: WorkspaceName = workspace.parse()?;
        self.query(|ctx| {
            let (ws, _) =
                ctx.require_workspace(&name, WorkspaceAction::ListMembers, LIST_MEMBERS, || {
                    Error::WorkspaceNotFound {
                        workspace: name.to_string(),
                    }
                })?;
            Ok(ctx
                .repo
                .workspace_members(ws.id)?
                .into_iter()
                .map(|(u, r)| (u.to_string(), r))
                .collect())
        })
    }

    /// Adds an existing user to a workspace. With `add_to_all_projects`, also grants
    /// `contributor` on every project that exists now, not on later ones (A9).
    pub fn invite_to_workspace(
        &self,
        workspace: &str,
        username: &str,
        role: WorkspaceRole,
        add_to_all_projects: bool,
    ) -> Result<()> {
        let name: WorkspaceName = workspace.parse()?;
        let username: Username = username.parse()?;
        let not_found = || Error::WorkspaceOrUserNotFound {
            workspace: name.to_string(),
            user: username.to_string(),
        };
        self.mutate(|ctx| {
            let (ws, _) =
                ctx.require_workspace(&name, WorkspaceAction::ManageMembers, INVITE, not_found)?;
            let user = ctx.repo.user(&username)?.ok_or_else(not_found)?;
            if ctx.repo.workspace_role(ws.id, user.id)?.is_some() {
                return Err(Error::UserAlreadyInvited {
                    user: user.name.to_string(),
                    workspace: ws.name.to_string(),
                });
            }
            ctx.repo.put_workspace_member(ws.id, user.id, role)?;
            let mut granted = 0;
            if add_to_all_projects {
                for project in ctx.repo.project_ids(ws.id)? {
                    ctx.repo
                        .put_user_grant(project, user.id, ProjectRole::Contributor)?;
                    granted += 1;
                }
            }
            ctx.audit(
                &ws.name,
                INVITE,
                ws.name.as_str(),
                json!({ "user": user.name.as_str(), "role": role, "projects_granted": granted }),
            )
        })
    }

    /// Removes a user from a workspace, with their grants on its projects (A7). The
    /// last admin cannot be removed (A4).
    pub fn remove_workspace_member(&self, workspace: &str, username: &str) -> Result<()> {
        let name: WorkspaceName = workspace.parse()?;
        let username: Username = username.parse()?;
        self.mutate(|ctx| {
            let (ws, _) = ctx.require_workspace(
                &name,
                WorkspaceAction::ManageMembers,
                REMOVE_WS_MEMBER,
                || Error::WorkspaceNotFound {
                    workspace: name.to_string(),
                },
            )?;
            let not_member = || Error::UserNotInWorkspace {
                user: username.to_string(),
                workspace: ws.name.to_string(),
            };
            let user = ctx.repo.user(&username)?.ok_or_else(not_member)?;
            let role = ctx
                .repo
                .workspace_role(ws.id, user.id)?
                .ok_or_else(not_member)?;
            ensure_another_admin(ctx.repo, &ws, role)?;
            let grants = ctx.repo.delete_workspace_member(ws.id, user.id)?;
            ctx.audit(
                &ws.name,
                REMOVE_WS_MEMBER,
                ws.name.as_str(),
                json!({ "user": user.name.as_str(), "grants_removed": grants }),
            )
        })
    }

    /// Changes a member's workspace role. The last admin cannot be demoted (A4); a
    /// service account can never be given one (A3: its name does not parse as a username).
    pub fn set_workspace_role(
        &self,
        workspace: &str,
        username: &str,
        role: WorkspaceRole,
    ) -> Result<()> {
        let name: WorkspaceName = workspace.parse()?;
        let username: Username = username.parse()?;
        self.mutate(|ctx| {
            let (ws, _) =
                ctx.require_workspace(&name, WorkspaceAction::ManageMembers, SET_WS_ROLE, || {
                    Error::WorkspaceNotFound {
                        workspace: name.to_string(),
                    }
                })?;
            let not_member = || Error::UserNotInWorkspace {
                user: username.to_string(),
                workspace: ws.name.to_string(),
            };
            let user = ctx.repo.user(&username)?.ok_or_else(not_member)?;
            let from = ctx
                .repo
                .workspace_role(ws.id, user.id)?
                .ok_or_else(not_member)?;
            if role != WorkspaceRole::Admin {
                ensure_another_admin(ctx.repo, &ws, from)?;
            }
            ctx.repo.put_workspace_member(ws.id, user.id, role)?;
            ctx.audit(
                &ws.name,
                SET_WS_ROLE,
                ws.name.as_str(),
                json!({ "user": user.name.as_str(), "from": from, "to": role }),
            )
        })
    }

    /// Changes a workspace's settings; returns them as they are afterwards.
    pub fn set_workspace_settings(
        &self,
        workspace: &str,
        settings: WorkspaceSettings,
    ) -> Result<WorkspaceStatus> {
        let name: WorkspaceName = workspace.parse()?;
        self.mutate(|ctx| {
            let (ws, _) =
                ctx.require_workspace(&name, WorkspaceAction::ManageMembers, SET_SETTINGS, || {
                    Error::WorkspaceNotFound {
                        workspace: name.to_string(),
                    }
                })?;
            let allow = settings
                .allow_public_projects
                .unwrap_or(ws.allow_public_projects);
            let limit = settings
                .service_account_limit
                .unwrap_or(ws.service_account_limit);
            ctx.repo.update_workspace_settings(ws.id, allow, limit)?;
            ctx.audit(
                &ws.name,
                SET_SETTINGS,
                ws.name.as_str(),
                json!({ "allow_public_projects": allow, "service_account_limit": limit }),
            )?;
            status(ctx.repo, &ws.name)
        })
    }

    /// Counts of members, projects and service accounts, and the workspace's limits.
    pub fn workspace_status(&self, workspace: &str) -> Result<WorkspaceStatus> {
        let name: WorkspaceName = workspace.parse()?;
        self.query(|ctx| {
            let (ws, _) =
                ctx.require_workspace(&name, WorkspaceAction::ListMembers, WS_STATUS, || {
                    Error::WorkspaceNotFound {
                        workspace: name.to_string(),
                    }
                })?;
            status_of(ctx.repo, &ws)
        })
    }

    /// Changes a project's visibility; `public` only while the workspace allows it (A5).
    pub fn set_project_visibility(&self, project: &str, visibility: Visibility) -> Result<()> {
        let name: QualifiedProjectName = project.parse()?;
        self.mutate(|ctx| {
            let ProjectScope {
                ws,
                project: p,
                target,
            } = ctx.require_project(&name, Action::Manage, SET_VISIBILITY)?;
            invariants::visibility_allowed(&ws.name, visibility, ws.allow_public_projects)?;
            ctx.repo.set_project_visibility(p.id, visibility)?;
            ctx.audit(
                &ws.name,
                SET_VISIBILITY,
                &target,
                json!({ "from": p.visibility, "to": visibility }),
            )
        })
    }

    /// Changes a project's description.
    pub fn set_project_description(&self, project: &str, description: &str) -> Result<()> {
        let name: QualifiedProjectName = project.parse()?;
        let description: ProjectDescription = description.parse()?;
        self.mutate(|ctx| {
            let ProjectScope {
                ws,
                project: p,
                target,
            } = ctx.require_project(&name, Action::Manage, SET_DESCRIPTION)?;
            ctx.repo.set_project_description(p.id, &description)?;
            ctx.audit(&ws.name, SET_DESCRIPTION, &target, json!({}))
        })
    }

    /// Creates a service account (S1) and returns its first token. With
    /// `contributor_on_all_projects`, it is granted `contributor` on every project that
    /// exists now, never on later ones.
    pub fn create_service_account(
        &self,
        workspace: &str,
        name: &str,
        contributor_on_all_projects: bool,
    ) -> Result<IssuedToken> {
        let ws_name: WorkspaceName = workspace.parse()?;
        let sa_name: ServiceAccountName = name.parse()?;
        let full = ServiceAccountFullName {
            name: sa_name.clone(),
            workspace: ws_name.clone(),
        };
        self.mutate(|ctx| {
            let (ws, _) = ctx.require_workspace(
                &ws_name,
                WorkspaceAction::ManageServiceAccounts,
                CREATE_SA,
                || Error::WorkspaceNotFound {
                    workspace: ws_name.to_string(),
                },
            )?;
            if ctx.repo.service_account(ws.id, &sa_name)?.is_some() {
                return Err(Error::ServiceAccountAlreadyExists {
                    account: full.to_string(),
                });
            }
            ensure_service_account_slot(ctx.repo, &ws)?;
            let id = ctx
                .repo
                .insert_service_account(ws.id, &sa_name, true, ctx.now)?;
            let mut granted = 0;
            if contributor_on_all_projects {
                for project in ctx.repo.project_ids(ws.id)? {
                    ctx.repo
                        .put_service_account_grant(project, id, ProjectRole::Contributor)?;
                    granted += 1;
                }
            }
            let sa = ServiceAccountRecord {
                id,
                workspace_id: ws.id,
                name: sa_name.clone(),
                active: true,
            };
            let token = ctx.issue_service_account_token(&sa, &full)?;
            ctx.audit(
                &ws.name,
                CREATE_SA,
                &full.to_string(),
                json!({ "projects_granted": granted, "token_id": token.id.0 }),
            )?;
            Ok(token)
        })
    }

    fn admin_service_account_call<T>(
        &self,
        full_name: &str,
        op: Op,
        mut f: impl FnMut(
            &mut Ctx<'_, dyn Repository + '_>,
            &WorkspaceRecord,
            Option<ServiceAccountRecord>,
            &ServiceAccountFullName,
        ) -> Result<T>,
    ) -> Result<T> {
        let full: ServiceAccountFullName = full_name.parse()?;
        self.mutate(|ctx| {
            let (ws, _) = ctx.require_workspace(
                &full.workspace,
                WorkspaceAction::ManageServiceAccounts,
                op,
                || Error::ServiceAccountNotFound {
                    account: full.to_string(),
                },
            )?;
            let sa = ctx.repo.service_account(ws.id, &full.name)?;
            f(ctx, &ws, sa, &full)
        })
    }

    /// Deactivates a service account (S3): it can no longer authenticate, its token is
    /// revoked, and its grants stay inert until reactivation.
    pub fn deactivate_service_account(&self, full_name: &str) -> Result<()> {
        self.admin_service_account_call(full_name, DEACTIVATE_SA, |ctx, ws, sa, full| {
            let sa = sa
                .filter(|sa| sa.active)
                .ok_or_else(|| Error::ServiceAccountNotFound {
                    account: full.to_string(),
                })?;
            ctx.repo.set_service_account_active(sa.id, false)?;
            let revoked = ctx
                .repo
                .revoke_tokens_of(TokenOwner::ServiceAccount(sa.id), ctx.now)?;
            let ids: Vec<i64> = revoked.iter().map(|t| t.id.0).collect();
            ctx.audit(
                &ws.name,
                DEACTIVATE_SA,
                &full.to_string(),
                json!({ "tokens_revoked": ids }),
            )
        })
    }

    /// Reactivates a service account (S4) and returns its new token; no token issued
    /// before the deactivation works again.
    pub fn reactivate_service_account(&self, full_name: &str) -> Result<IssuedToken> {
        self.admin_service_account_call(full_name, REACTIVATE_SA, |ctx, ws, sa, full| {
            let mut sa = sa.ok_or_else(|| Error::ServiceAccountNotFound {
                account: full.to_string(),
            })?;
            if sa.active {
                return Err(Error::ServiceAccountActive {
                    account: full.to_string(),
                });
            }
            ensure_service_account_slot(ctx.repo, ws)?;
            ctx.repo.set_service_account_active(sa.id, true)?;
            sa.active = true;
            // INVARIANT: S4, the reset: whatever token survived is revoked.
            ctx.repo
                .revoke_tokens_of(TokenOwner::ServiceAccount(sa.id), ctx.now)?;
            let token = ctx.issue_service_account_token(&sa, full)?;
            ctx.audit(
                &ws.name,
                REACTIVATE_SA,
                &full.to_string(),
                json!({ "token_id": token.id.0 }),
            )?;
            Ok(token)
        })
    }

    /// Issues a new token for an active service account; its previous token stops
    /// working at once (S5, T5: one current token).
    pub fn issue_service_account_token(&self, full_name: &str) -> Result<IssuedToken> {
        self.admin_service_account_call(full_name, ISSUE_SA_TOKEN, |ctx, ws, sa, full| {
            let sa = sa
                .filter(|sa| sa.active)
                .ok_or_else(|| Error::ServiceAccountNotFound {
                    account: full.to_string(),
                })?;
            let revoked = ctx
                .repo
                .revoke_tokens_of(TokenOwner::ServiceAccount(sa.id), ctx.now)?;
            let token = ctx.issue_service_account_token(&sa, full)?;
            let ids: Vec<i64> = revoked.iter().map(|t| t.id.0).collect();
            ctx.audit(
                &ws.name,
                ISSUE_SA_TOKEN,
                &full.to_string(),
                json!({ "token_id": token.id.0, "label": token.label, "tokens_revoked": ids }),
            )?;
            Ok(token)
        })
    }

    /// Revokes a service account's token, leaving it with none; returns how many
    /// tokens were revoked.
    pub fn revoke_service_account_token(&self, full_name: &str) -> Result<usize> {
        self.admin_service_account_call(full_name, REVOKE_SA_TOKEN, |ctx, ws, sa, full| {
            let sa = sa.ok_or_else(|| Error::ServiceAccountNotFound {
                account: full.to_string(),
            })?;
            let revoked = ctx
                .repo
                .revoke_tokens_of(TokenOwner::ServiceAccount(sa.id), ctx.now)?;
            let ids: Vec<i64> = revoked.iter().map(|t| t.id.0).collect();
            ctx.audit(
                &ws.name,
                REVOKE_SA_TOKEN,
                &full.to_string(),
                json!({ "tokens_revoked": ids }),
            )?;
            Ok(revoked.len())
        })
    }

    /// The workspace's active service accounts, full name → `member` (Neptune's
    /// `get_workspace_service_account_list`).
    pub fn workspace_service_accounts(
        &self,
        workspace: &str,
    ) -> Result<BTreeMap<String, WorkspaceRole>> {
        Ok(self
            .service_accounts(workspace, false)?
            .into_iter()
            .map(|sa| (sa.full_name, WorkspaceRole::Member))
            .collect())
    }

    /// The workspace's service accounts, deactivated ones too when asked (S3).
    pub fn service_accounts(
        &self,
        workspace: &str,
        include_deactivated: bool,
    ) -> Result<Vec<ServiceAccountInfo>> {
        let name: WorkspaceName = workspace.parse()?;
        self.query(|ctx| {
            let (ws, _) =
                ctx.require_workspace(&name, WorkspaceAction::ListMembers, LIST_SAS, || {
                    Error::WorkspaceNotFound {
                        workspace: name.to_string(),
                    }
                })?;
            Ok(ctx
                .repo
                .service_accounts(ws.id)?
                .into_iter()
                .filter(|(_, active)| *active || include_deactivated)
                .map(|(sa, active)| ServiceAccountInfo {
                    full_name: format!("{sa}@{}", ws.name),
                    active,
                })
                .collect())
        })
    }

    /// The project's active service accounts and their roles.
    pub fn project_service_accounts(&self, project: &str) -> Result<BTreeMap<String, ProjectRole>> {
        let name: QualifiedProjectName = project.parse()?;
        self.query(|ctx| {
            let ProjectScope { ws, project: p, .. } =
                ctx.require_project(&name, Action::View, VIEW_PROJECT)?;
            Ok(ctx
                .repo
                .project_service_accounts(p.id)?
                .into_iter()
                .filter(|(_, active, _)| *active)
                .map(|(sa, _, role)| (format!("{sa}@{}", ws.name), role))
                .collect())
        })
    }

    /// Grants `role` on a project to an active service account of its workspace (S6).
    pub fn add_project_service_account(
        &self,
        project: &str,
        service_account: &str,
        role: ProjectRole,
    ) -> Result<()> {
        let name: QualifiedProjectName = project.parse()?;
        let full: ServiceAccountFullName = service_account.parse()?;
        self.mutate(|ctx| {
            let ProjectScope {
                ws,
                project: p,
                target,
            } = ctx.require_project(&name, Action::Manage, ADD_SA)?;
            let sa = ctx.assignable_service_account(&ws, &full)?;
            if let Some(role) = ctx.repo.service_account_grant(p.id, sa.id)? {
                return Err(Error::ServiceAccountAlreadyHasAccess {
                    account: full.to_string(),
                    project: target,
                    role,
                });
            }
            ctx.repo.put_service_account_grant(p.id, sa.id, role)?;
            ctx.audit(
                &ws.name,
                ADD_SA,
                &target,
                json!({ "service_account": full.to_string(), "role": role }),
            )
        })
    }

    /// Removes a service account's grant on a project (S6). A deactivated account's
    /// inert grant can be removed too.
    pub fn remove_project_service_account(
        &self,
        project: &str,
        service_account: &str,
    ) -> Result<()> {
        let name: QualifiedProjectName = project.parse()?;
        let full: ServiceAccountFullName = service_account.parse()?;
        self.mutate(|ctx| {
            let ProjectScope {
                ws,
                project: p,
                target,
            } = ctx.require_project(&name, Action::Manage, REMOVE_SA)?;
            let without_access = || Error::ServiceAccountNotExistsOrWithoutAccess {
                account: full.to_string(),
                project: target.clone(),
            };
            let sa = if full.workspace == ws.name {
                ctx.repo.service_account(ws.id, &full.name)?
            } else {
                None
            };
            let sa = sa.ok_or_else(without_access)?;
            if !ctx.repo.delete_service_account_grant(p.id, sa.id)? {
                return Err(without_access());
            }
            ctx.audit(
                &ws.name,
                REMOVE_SA,
                &target,
                json!({ "service_account": full.to_string() }),
            )
        })
    }

    /// Changes the role of an active service account that has a grant on the project.
    pub fn set_project_service_account_role(
        &self,
        project: &str,
        service_account: &str,
        role: ProjectRole,
    ) -> Result<()> {
        let name: QualifiedProjectName = project.parse()?;
        let full: ServiceAccountFullName = service_account.parse()?;
        self.mutate(|ctx| {
            let ProjectScope {
                ws,
                project: p,
                target,
            } = ctx.require_project(&name, Action::Manage, SET_SA_ROLE)?;
            let sa = ctx.assignable_service_account(&ws, &full)?;
            let from = ctx
                .repo
                .service_account_grant(p.id, sa.id)?
                .ok_or_else(|| Error::ServiceAccountNotExistsOrWithoutAccess {
                    account: full.to_string(),
                    project: target.clone(),
                })?;
            ctx.repo.put_service_account_grant(p.id, sa.id, role)?;
            ctx.audit(
                &ws.name,
                SET_SA_ROLE,
                &target,
                json!({ "service_account": full.to_string(), "from": from, "to": role }),
            )
        })
    }

    /// The actor's own personal tokens, newest first, without secrets (T5). A service
    /// account lists its current and past tokens.
    pub fn tokens(&self) -> Result<Vec<TokenInfo>> {
        self.query(|ctx| {
            let owner = ctx.token_owner()?;
            Ok(ctx
                .repo
                .tokens_of(owner)?
                .into_iter()
                .map(|mut t| {
                    // Uses this process noted but has not written yet (T7).
                    t.last_used_at = t.last_used_at.max(self.uses.pending(t.id));
                    TokenInfo::from(t)
                })
                .collect())
        })
    }

    /// Revokes one of the actor's own tokens (T5). A token id that is not one of the
    /// actor's live tokens (unknown, someone else's, already revoked) fails with
    /// `TokenNotFound`, which does not tell those apart.
    pub fn revoke_token(&self, id: TokenId) -> Result<()> {
        self.mutate(|ctx| {
            let owner = ctx.token_owner()?;
            let token = ctx
                .repo
                .tokens_of(owner)?
                .into_iter()
                .find(|t| t.id == id && t.revoked_at.is_none())
                .ok_or(Error::TokenNotFound { id })?;
            ctx.repo.revoke_token(token.id, ctx.now)?;
            let target = ctx.actor_name();
            ctx.repo.append_audit(&NewAuditEvent {
                at: ctx.now,
                workspace: match ctx.actor {
                    Principal::ServiceAccount(sa) => Some(sa.workspace.as_str()),
                    Principal::User(_) => None,
                },
                actor: &target,
                action: "token.revoke",
                target: &target,
                outcome: Outcome::Ok,
                details: json!({ "token_id": id.0, "label": token.label }),
            })
        })
    }

    /// Audit events of a workspace, newest first, for its admins (L2). The query's
    /// own `workspace` is replaced by `workspace`.
    pub fn audit_log(&self, workspace: &str, query: &AuditQuery) -> Result<Vec<AuditEvent>> {
        let name: WorkspaceName = workspace.parse()?;
        self.query(|ctx| {
            ctx.require_workspace(&name, WorkspaceAction::ReadAudit, READ_AUDIT, || {
                Error::WorkspaceNotFound {
                    workspace: name.to_string(),
                }
            })?;
            let query = AuditQuery {
                workspace: Some(name.to_string()),
                ..query.clone()
            };
            ctx.repo.audit_events(&query)
        })
    }
}

impl<R: Repository + ?Sized> Ctx<'_, R> {
    /// The projects the actor can view strictly after `after` = (workspace, project
    /// name key), in order, at most `limit`; and whether more follow.
    ///
    /// Per workspace, the domain's [`listing_plan`] names the visibilities the actor
    /// sees whatever its grants; each is one range scan of a covering index, and the
    /// actor's grants add the rest, each confirmed by the rules. No project is checked
    /// one by one, and a page reads little more than the page.
    fn list(&self, after: (&str, &str), limit: Option<usize>) -> Result<(Vec<String>, bool)> {
        let mut out: Vec<String> = Vec::new();
        for ws in self.repo.listing_workspaces(self.actor, after.0)? {
            let after_key = if ws.name.as_str() == after.0 {
                after.1
            } else {
                ""
            };
            // One more than the page, to know whether another page follows.
            let want = limit.map(|l| l + 1 - out.len());
            let plan = listing_plan(ws.standing);
            let mut rows = Vec::new();
            for visibility in &plan.visible {
                rows.extend(self.repo.projects_with_visibility(
                    &ws,
                    *visibility,
                    after_key,
                    want,
                )?);
            }
            if plan.grants_add {
                for row in self
                    .repo
                    .granted_projects(self.actor, &ws, after_key, want)?
                {
                    let standing = ws.standing.with_grant(row.grant);
                    if !plan.visible.contains(&row.visibility)
                        && effective_access(row.visibility, standing).is_some()
                    {
                        rows.push(row);
                    }
                }
            }
            // The rows are a few runs already in order (one per scan): a stable sort
            // finds the runs and merges them, where an unstable one sorts afresh.
            rows.sort_by(|a, b| a.name_key.cmp(&b.name_key));
            if let Some(want) = want {
                rows.truncate(want);
            }
            out.extend(rows.into_iter().map(|r| r.qualified));
            if let Some(limit) = limit
                && out.len() > limit
            {
                out.truncate(limit);
                return Ok((out, true));
            }
        }
        Ok((out, false))
    }

    fn token_owner(&self) -> Result<TokenOwner> {
        match &self.record {
            ActorRecord::User(u) => Ok(TokenOwner::User(u.id)),
            ActorRecord::ServiceAccount(Some(sa)) if sa.active => {
                Ok(TokenOwner::ServiceAccount(sa.id))
            }
            ActorRecord::ServiceAccount(_) => Err(Error::InvalidToken),
        }
    }
}

/// A4 for a change that removes `current` from the workspace's admins, if it is one:
/// the count comes from inside the writing transaction.
fn ensure_another_admin<R: Repository + ?Sized>(
    repo: &R,
    ws: &WorkspaceRecord,
    current: WorkspaceRole,
) -> Result<()> {
    if current != WorkspaceRole::Admin {
        return Ok(());
    }
    let admins = repo.count_workspace_role(ws.id, WorkspaceRole::Admin)?;
    invariants::keeps_an_admin(&ws.name, admins.saturating_sub(1))
}

/// S2 for one more active service account. Runs inside the writing transaction
/// (`BEGIN IMMEDIATE`), so two racing processes cannot both take the last slot.
fn ensure_service_account_slot<R: Repository + ?Sized>(
    repo: &R,
    ws: &WorkspaceRecord,
) -> Result<()> {
    let active = repo.count_active_service_accounts(ws.id)?;
    invariants::within_service_account_limit(
        &ws.name,
        active.saturating_add(1),
        ws.service_account_limit,
    )
}

/// Whether every workspace member holds a role on a project of this visibility
/// without a grant (R3), so that its member list names them all.
fn members_own_it(visibility: Visibility) -> bool {
    invariants::role_through_visibility(visibility, Some(WorkspaceRole::Member)).is_some()
}

fn status<R: Repository + ?Sized>(repo: &R, name: &WorkspaceName) -> Result<WorkspaceStatus> {
    let ws = repo
        .workspace(name)?
        .ok_or_else(|| Error::WorkspaceNotFound {
            workspace: name.to_string(),
        })?;
    status_of(repo, &ws)
}

/// The status of a workspace whose record the caller holds.
pub(crate) fn status_of<R: Repository + ?Sized>(
    repo: &R,
    ws: &WorkspaceRecord,
) -> Result<WorkspaceStatus> {
    let counts = repo.workspace_counts(ws.id)?;
    Ok(WorkspaceStatus {
        workspace: ws.name.to_string(),
        admins: counts.admins,
        members: counts.members,
        projects: counts.projects,
        active_service_accounts: counts.active_service_accounts,
        deactivated_service_accounts: counts.deactivated_service_accounts,
        service_account_limit: ws.service_account_limit,
        allow_public_projects: ws.allow_public_projects,
    })
}

impl Session<'_> {
    /// Runs `f` on one read snapshot once that snapshot shows the session's token still
    /// live and its actor present (T6), as every call of this file does through its
    /// context: for the read calls kept in other files (`info.rs`).
    pub(crate) fn read_live<T>(&self, f: impl FnOnce(&dyn Repository) -> Result<T>) -> Result<T> {
        self.store.read(|repo| {
            Ctx::new(repo, &self.actor, self.token)?;
            f(repo)
        })
    }
}

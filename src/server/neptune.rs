//! Neptune's management API, as the `neptune` 1.14 Python client speaks it (SPEC H2;
//! the wire facts are in `NEPTUNE_API.md`): the backend swagger document, the client
//! configuration, the API-token exchange, the OAuth refresh, and the 14 operations of
//! `neptune.management` (trash excepted), with Neptune's value spellings and the
//! statuses and `errorType`s that make the client raise its own exceptions.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Credential;
use super::error::{ApiError, status_of};
use super::{AppState, Cred};
use crate::error::{Error, ErrorKind, NameKind};
use crate::session::ProjectOptions;
use crate::{ProjectRole, Visibility, WorkspaceRole};

/// The backend swagger document the client builds its calls from.
pub const SWAGGER: &str = include_str!("neptune_swagger.json");

/// The OAuth issuer path: the client refreshes at `{issuer}/protocol/openid-connect/token`.
const ISSUER_PATH: &str = "/auth/realms/neptune";

/// The routes of Neptune's API.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/backend/swagger.json", get(swagger))
        .route("/api/backend/v1/clients/config", get(client_config))
        .route("/api/backend/v1/authorization/oauth-token", get(exchange))
        .route(
            "/auth/realms/neptune/protocol/openid-connect/token",
            post(refresh),
        )
        .route(
            "/api/backend/v1/projects",
            get(list_projects)
                .post(create_project)
                .delete(delete_project),
        )
        .route("/api/backend/v1/myOrganizations", get(list_organizations))
        .route(
            "/api/backend/v1/projects/membersOf",
            get(list_project_members),
        )
        .route("/api/backend/v1/projects/members", post(add_project_member))
        .route(
            "/api/backend/v1/projects/members/{user_id}",
            delete(delete_project_member),
        )
        .route(
            "/api/backend/v1/organizations2/{organization}/members",
            get(list_organization_members),
        )
        .route(
            "/api/backend/v1/serviceAccounts",
            get(list_service_accounts),
        )
        .route(
            "/api/backend/v1/projects/service_accounts",
            get(list_project_service_accounts).post(add_project_service_account),
        )
        .route(
            "/api/backend/v1/projects/service_accounts/{service_account_id}",
            delete(delete_project_service_account),
        )
        .route(
            "/api/backend/v1/invitations/organization",
            post(create_invitations),
        )
        .route(
            "/api/backend/v1/payments/{organization}/status",
            get(workspace_status),
        )
}

// ---------------------------------------------------------------- value spellings

/// Neptune's spelling of a project role: owner is `manager`, contributor `member`.
pub fn project_role_to_neptune(role: ProjectRole) -> &'static str {
    match role {
        ProjectRole::Viewer => "viewer",
        ProjectRole::Contributor => "member",
        ProjectRole::Owner => "manager",
    }
}

/// A project role in Neptune's spelling.
pub fn project_role_from_neptune(s: &str) -> Result<ProjectRole, Error> {
    match s {
        "viewer" => Ok(ProjectRole::Viewer),
        "member" => Ok(ProjectRole::Contributor),
        "manager" => Ok(ProjectRole::Owner),
        _ => Err(Error::InvalidValue {
            what: "project role",
            value: crate::domain::names::echo(s),
            expected: "`viewer`, `member` or `manager`",
        }),
    }
}

/// Neptune's spelling of a workspace role: admin is `owner`.
pub fn workspace_role_to_neptune(role: WorkspaceRole) -> &'static str {
    match role {
        WorkspaceRole::Admin => "owner",
        WorkspaceRole::Member => "member",
    }
}

/// A workspace role in Neptune's spelling.
pub fn workspace_role_from_neptune(s: &str) -> Result<WorkspaceRole, Error> {
    match s {
        "owner" => Ok(WorkspaceRole::Admin),
        "member" => Ok(WorkspaceRole::Member),
        _ => Err(Error::InvalidValue {
            what: "workspace role",
            value: crate::domain::names::echo(s),
            expected: "`owner` or `member`",
        }),
    }
}

fn visibility_to_neptune(v: Visibility) -> &'static str {
    match v {
        Visibility::Private => "priv",
        Visibility::Workspace => "workspace",
        Visibility::Public => "pub",
    }
}

// ---------------------------------------------------------------- errors

/// The operation an error came from: the client reads statuses per operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    ListProjects,
    ListOrganizations,
    CreateProject,
    DeleteProject,
    ListProjectMembers,
    AddProjectMember,
    DeleteProjectMember,
    ListOrganizationMembers,
    ListServiceAccounts,
    ListProjectServiceAccounts,
    AddProjectServiceAccount,
    DeleteProjectServiceAccount,
    Invite,
    WorkspaceStatus,
}

/// An error in Neptune's format: `{code, message, errorType?, ...}`, plus turnstile's
/// `kind` and `error`.
#[derive(Debug)]
pub struct NeptuneError {
    status: StatusCode,
    body: Value,
}

impl IntoResponse for NeptuneError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

impl From<ApiError> for NeptuneError {
    fn from(e: ApiError) -> Self {
        Self {
            status: e.status,
            body: json!({
                "code": e.status.as_u16(),
                "message": e.body.message,
                "kind": e.body.kind,
                "error": e.body.error,
            }),
        }
    }
}

/// The status and body the client turns into the exception Neptune raises for `e`
/// in operation `op` (NEPTUNE_API.md §5). Starts from the native mapping of the kind.
fn neptune_error(op: Op, e: Error) -> NeptuneError {
    use Op::*;
    let mut status = status_of(e.kind());
    let mut extra = json!({});
    match &e {
        Error::ProjectAlreadyExists { .. } if op == CreateProject => {
            // The client raises ProjectAlreadyExists for ERR_NOT_UNIQUE in a 400.
            status = StatusCode::BAD_REQUEST;
            extra = json!({ "validationErrors": [
                { "errors": [ { "errorCode": { "name": "ERR_NOT_UNIQUE" }, "context": "name" } ] }
            ]});
        }
        Error::VisibilityRestricted { .. } => {
            extra = json!({
                "errorType": "VISIBILITY_RESTRICTED",
                "requestedValue": "pub",
                "allowedValues": ["priv", "workspace"],
            });
        }
        Error::ProjectKeyCollision { key, .. } => {
            extra = json!({ "errorType": "PROJECT_KEY_COLLISION", "key": key });
        }
        Error::InvalidName {
            kind: NameKind::ProjectKey,
            value,
            reason,
        } => {
            extra = json!({ "errorType": "PROJECT_KEY_INVALID", "key": value, "reason": reason });
        }
        Error::InvalidName {
            kind: NameKind::Project,
            value,
            ..
        } if op == CreateProject => {
            extra = json!({ "errorType": "PROJECT_NAME_INVALID", "name": value });
        }
        Error::UserNotExistsOrWithoutAccess { .. } if op == DeleteProjectMember => {
            status = StatusCode::UNPROCESSABLE_ENTITY;
        }
        Error::ServiceAccountNotExistsOrWithoutAccess { .. }
            if op == DeleteProjectServiceAccount =>
        {
            status = StatusCode::UNPROCESSABLE_ENTITY;
        }
        _ => {
            // The client reads a 404 (and a 409) as one specific error per operation;
            // any other not-found or conflict must not pose as it.
            let means = match e.kind() {
                ErrorKind::NotFound => match op {
                    ListOrganizationMembers | ListServiceAccounts | WorkspaceStatus => {
                        matches!(e, Error::WorkspaceNotFound { .. })
                    }
                    Invite => matches!(
                        e,
                        Error::WorkspaceOrUserNotFound { .. } | Error::WorkspaceNotFound { .. }
                    ),
                    ListProjects | ListOrganizations => false,
                    _ => matches!(e, Error::ProjectNotFound { .. }),
                },
                ErrorKind::Conflict => match op {
                    AddProjectMember => matches!(e, Error::UserAlreadyHasAccess { .. }),
                    AddProjectServiceAccount => {
                        matches!(e, Error::ServiceAccountAlreadyHasAccess { .. })
                    }
                    Invite => matches!(e, Error::UserAlreadyInvited { .. }),
                    _ => true,
                },
                ErrorKind::InvalidInput => {
                    status = StatusCode::BAD_REQUEST;
                    true
                }
                _ => true,
            };
            if !means {
                status = StatusCode::BAD_REQUEST;
            }
        }
    }
    let mut body = json!({
        "code": status.as_u16(),
        "message": e.to_string(),
        "kind": e.kind().as_str(),
        "error": e.name(),
    });
    if let (Some(b), Some(x)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(x.clone());
    }
    NeptuneError { status, body }
}

type NResult<T = Json<Value>> = Result<T, NeptuneError>;

/// Runs `f` with the caller's session and maps its error for `op`.
async fn call<T, F>(state: &AppState, cred: Credential, op: Op, f: F) -> NResult<T>
where
    F: FnOnce(&crate::Session<'_>) -> crate::Result<T> + Send + 'static,
    T: Send + 'static,
{
    state
        .with_session(cred, f)
        .await?
        .map_err(|e| neptune_error(op, e))
}

// ---------------------------------------------------------------- documents and auth

async fn swagger() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        SWAGGER,
    )
        .into_response()
}

async fn client_config(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Json<Value> {
    let base = state.base_url(&headers);
    Json(json!({
        "apiUrl": base,
        "applicationUrl": base,
        "pyLibVersions": {
            "minRecommendedVersion": "1.0.0",
            "minCompatibleVersion": "1.0.0",
            "maxCompatibleVersion": "1.99.0",
        },
    }))
}

/// `exchangeApiToken`: an API token (Neptune's format or turnstile's) for an access
/// token and a refresh token. Only API tokens are accepted here, never a JWT.
async fn exchange(State(state): State<Arc<AppState>>, headers: HeaderMap) -> NResult {
    let raw = headers
        .get("x-neptune-api-token")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(ApiError::missing_credential)?;
    let Credential::Api(secret) = Credential::parse(raw) else {
        return Err(neptune_error(Op::ListProjects, Error::InvalidToken));
    };
    let issuer = format!("{}{ISSUER_PATH}", state.base_url(&headers));
    let (principal, pair) = state
        .blocking(move |engine, key| {
            let (session, tid) = super::auth::authenticate_with_id(engine, &secret)?;
            let principal = session.actor().to_string();
            let pair = key.issue(&principal, tid, &issuer);
            Ok::<_, Error>((principal, pair))
        })
        .await?
        .map_err(|e| neptune_error(Op::ListProjects, e))?;
    super::observe::set_principal(principal.clone());
    Ok(Json(json!({
        "accessToken": pair.access,
        "refreshToken": pair.refresh,
        "username": principal,
    })))
}

#[derive(Debug, Deserialize)]
struct RefreshForm {
    grant_type: String,
    refresh_token: String,
}

/// The OAuth refresh (`grant_type=refresh_token`) at the issuer's Keycloak-style path.
/// The refresh token must verify and its API token must still be valid (T6).
async fn refresh(
    State(state): State<Arc<AppState>>,
    form: Result<Form<RefreshForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let invalid = |description: &str| {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": "invalid_grant", "error_description": description })),
        )
            .into_response()
    };
    let Ok(Form(form)) = form else {
        return invalid("expected a form with grant_type and refresh_token");
    };
    if form.grant_type != "refresh_token" {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": "unsupported_grant_type" })),
        )
            .into_response();
    }
    let out = state
        .blocking(move |engine, key| {
            let claims = key
                .verify(&form.refresh_token, "refresh")
                .ok_or(Error::InvalidToken)?;
            let tid = crate::repo::TokenId(claims.tid);
            let session = engine.session_for_token(tid)?;
            let principal = session.actor().to_string();
            if principal != claims.sub {
                return Err(Error::InvalidToken);
            }
            Ok((principal, key.issue(&claims.sub, tid, &claims.iss)))
        })
        .await;
    match out {
        Ok(Ok((principal, pair))) => {
            super::observe::set_principal(principal);
            Json(json!({
                "access_token": pair.access,
                "refresh_token": pair.refresh,
                "expires_in": super::auth::ACCESS_TOKEN_SECONDS,
                "token_type": "bearer",
            }))
            .into_response()
        }
        Ok(Err(_)) => invalid("the refresh token is invalid, expired or revoked"),
        Err(e) => e.into_response(),
    }
}

// ---------------------------------------------------------------- operations

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProjectQuery {
    project_identifier: String,
}

fn split(qualified: &str) -> (&str, &str) {
    qualified.split_once('/').unwrap_or(("", qualified))
}

fn project_entry(qualified: &str) -> Value {
    let (ws, name) = split(qualified);
    json!({ "id": qualified, "name": name, "organizationName": ws })
}

async fn list_projects(State(state): State<Arc<AppState>>, Cred(cred): Cred) -> NResult {
    let projects = call(&state, cred, Op::ListProjects, |s| s.list_projects()).await?;
    let entries: Vec<Value> = projects.iter().map(|p| project_entry(p)).collect();
    let n = entries.len();
    Ok(Json(json!({
        "entries": entries,
        "matchingItemCount": n,
        "totalItemCount": n,
    })))
}

async fn list_organizations(State(state): State<Arc<AppState>>, Cred(cred): Cred) -> NResult {
    let list = call(&state, cred, Op::ListOrganizations, |s| s.workspaces()).await?;
    Ok(Json(Value::Array(
        list.into_iter()
            .map(|m| {
                json!({
                    "id": m.workspace,
                    "name": m.workspace,
                    "userRole": workspace_role_to_neptune(m.role),
                })
            })
            .collect(),
    )))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewProject {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    project_key: Option<String>,
    #[serde(default)]
    organization_id: Option<String>,
    #[serde(default)]
    organization_identifier: Option<String>,
    #[serde(default)]
    visibility: Option<String>,
}

async fn create_project(
    State(state): State<Arc<AppState>>,
    Cred(cred): Cred,
    super::error::JsonBody(body): super::error::JsonBody<NewProject>,
) -> NResult {
    let visibility = body.visibility.clone();
    let key = body.project_key.clone();
    let qualified = call(&state, cred, Op::CreateProject, move |s| {
        let visibility = body
            .visibility
            .as_deref()
            .map(str::parse::<Visibility>)
            .transpose()?;
        s.create_project(
            &body.name,
            ProjectOptions {
                workspace: body.organization_id.or(body.organization_identifier),
                key: body.project_key,
                visibility,
                description: body.description,
            },
        )
    })
    .await?;
    let mut entry = project_entry(&qualified);
    let visibility = visibility
        .as_deref()
        .and_then(|v| v.parse::<Visibility>().ok())
        .unwrap_or(Visibility::Private);
    entry["visibility"] = json!(visibility_to_neptune(visibility));
    if let Some(key) = key {
        entry["projectKey"] = json!(key);
    }
    Ok(Json(entry))
}

async fn delete_project(
    State(state): State<Arc<AppState>>,
    Cred(cred): Cred,
    super::error::QueryArgs(q): super::error::QueryArgs<ProjectQuery>,
) -> NResult {
    call(&state, cred, Op::DeleteProject, move |s| {
        s.delete_project(&q.project_identifier)
    })
    .await?;
    Ok(Json(json!({})))
}

async fn list_project_members(
    State(state): State<Arc<AppState>>,
    Cred(cred): Cred,
    super::error::QueryArgs(q): super::error::QueryArgs<ProjectQuery>,
) -> NResult {
    let members = call(&state, cred, Op::ListProjectMembers, move |s| {
        s.project_members(&q.project_identifier)
    })
    .await?;
    Ok(Json(Value::Array(
        members
            .into_iter()
            .map(|(user, role)| {
                json!({
                    "role": project_role_to_neptune(role),
                    "editableRole": true,
                    "canLeaveProject": true,
                    "registeredMemberInfo": { "username": user },
                })
            })
            .collect(),
    )))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewMember {
    user_id: String,
    role: String,
}

async fn add_project_member(
    State(state): State<Arc<AppState>>,
    Cred(cred): Cred,
    super::error::QueryArgs(q): super::error::QueryArgs<ProjectQuery>,
    super::error::JsonBody(body): super::error::JsonBody<NewMember>,
) -> NResult {
    call(&state, cred, Op::AddProjectMember, move |s| {
        let role = project_role_from_neptune(&body.role)?;
        s.add_project_member(&q.project_identifier, &body.user_id, role)
    })
    .await?;
    Ok(Json(json!({})))
}

async fn delete_project_member(
    State(state): State<Arc<AppState>>,
    Cred(cred): Cred,
    super::error::PathArgs(user_id): super::error::PathArgs<String>,
    super::error::QueryArgs(q): super::error::QueryArgs<ProjectQuery>,
) -> NResult {
    call(&state, cred, Op::DeleteProjectMember, move |s| {
        s.remove_project_member(&q.project_identifier, &user_id)
    })
    .await?;
    Ok(Json(json!({})))
}

async fn list_organization_members(
    State(state): State<Arc<AppState>>,
    Cred(cred): Cred,
    super::error::PathArgs(workspace): super::error::PathArgs<String>,
) -> NResult {
    let members = call(&state, cred, Op::ListOrganizationMembers, move |s| {
        s.workspace_members(&workspace)
    })
    .await?;
    Ok(Json(Value::Array(
        members
            .into_iter()
            .map(|(user, role)| {
                json!({
                    "role": workspace_role_to_neptune(role),
                    "editableRole": false,
                    "registeredMemberInfo": { "username": user },
                })
            })
            .collect(),
    )))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServiceAccountsQuery {
    organization_identifier: String,
    #[serde(default)]
    deactivated: Option<bool>,
}

async fn list_service_accounts(
    State(state): State<Arc<AppState>>,
    Cred(cred): Cred,
    super::error::QueryArgs(q): super::error::QueryArgs<ServiceAccountsQuery>,
) -> NResult {
    let list = call(&state, cred, Op::ListServiceAccounts, move |s| {
        s.service_accounts(&q.organization_identifier, q.deactivated.unwrap_or(false))
    })
    .await?;
    Ok(Json(Value::Array(
        list.into_iter()
            .map(|sa| {
                let name = sa.full_name.split('@').next().unwrap_or_default().to_owned();
                json!({ "id": sa.full_name, "name": name, "displayName": sa.full_name, "deactivated": !sa.active })
            })
            .collect(),
    )))
}

async fn list_project_service_accounts(
    State(state): State<Arc<AppState>>,
    Cred(cred): Cred,
    super::error::QueryArgs(q): super::error::QueryArgs<ProjectQuery>,
) -> NResult {
    let list = call(&state, cred, Op::ListProjectServiceAccounts, move |s| {
        s.project_service_accounts(&q.project_identifier)
    })
    .await?;
    Ok(Json(Value::Array(
        list.into_iter()
            .map(|(sa, role)| {
                json!({
                    "role": project_role_to_neptune(role),
                    "serviceAccountInfo": { "id": sa, "displayName": sa },
                })
            })
            .collect(),
    )))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewProjectServiceAccount {
    service_account_id: String,
    role: String,
}

async fn add_project_service_account(
    State(state): State<Arc<AppState>>,
    Cred(cred): Cred,
    super::error::QueryArgs(q): super::error::QueryArgs<ProjectQuery>,
    super::error::JsonBody(body): super::error::JsonBody<NewProjectServiceAccount>,
) -> NResult {
    call(&state, cred, Op::AddProjectServiceAccount, move |s| {
        let role = project_role_from_neptune(&body.role)?;
        s.add_project_service_account(&q.project_identifier, &body.service_account_id, role)
    })
    .await?;
    Ok(Json(json!({})))
}

async fn delete_project_service_account(
    State(state): State<Arc<AppState>>,
    Cred(cred): Cred,
    super::error::PathArgs(id): super::error::PathArgs<String>,
    super::error::QueryArgs(q): super::error::QueryArgs<ProjectQuery>,
) -> NResult {
    call(&state, cred, Op::DeleteProjectServiceAccount, move |s| {
        s.remove_project_service_account(&q.project_identifier, &id)
    })
    .await?;
    Ok(Json(json!({})))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Invitations {
    invitations_entries: Vec<InvitationEntry>,
    organization_identifier: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InvitationEntry {
    invitee: String,
    #[serde(default)]
    invitation_type: Option<String>,
    role_grant: String,
    #[serde(default)]
    add_to_all_projects: bool,
}

/// Invitations by username add the user at once (turnstile has no e-mail); an
/// invitation by e-mail is refused.
async fn create_invitations(
    State(state): State<Arc<AppState>>,
    Cred(cred): Cred,
    super::error::JsonBody(body): super::error::JsonBody<Invitations>,
) -> NResult {
    call(&state, cred, Op::Invite, move |s| {
        for entry in &body.invitations_entries {
            if entry
                .invitation_type
                .as_deref()
                .is_some_and(|t| t != "user")
            {
                return Err(Error::InvalidValue {
                    what: "invitation type",
                    value: crate::domain::names::echo(
                        entry.invitation_type.as_deref().unwrap_or(""),
                    ),
                    expected: "`user` (turnstile has no e-mail invitations)",
                });
            }
            let role = workspace_role_from_neptune(&entry.role_grant)?;
            s.invite_to_workspace(
                &body.organization_identifier,
                &entry.invitee,
                role,
                entry.add_to_all_projects,
            )?;
        }
        Ok(())
    })
    .await?;
    Ok(Json(json!({ "invitations": [] })))
}

async fn workspace_status(
    State(state): State<Arc<AppState>>,
    Cred(cred): Cred,
    super::error::PathArgs(workspace): super::error::PathArgs<String>,
) -> NResult {
    let status = call(&state, cred, Op::WorkspaceStatus, move |s| {
        s.workspace_status(&workspace)
    })
    .await?;
    // turnstile stores no experiment data: no storage is used or offered.
    Ok(Json(json!({
        "storageBytesAvailable": 0,
        "storageBytesLimit": 0,
        "activeProjectsUsage": status.projects,
        "membersCount": status.admins + status.members,
        "mode": "normal",
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h2_role_spellings_round_trip() {
        for r in [
            ProjectRole::Viewer,
            ProjectRole::Contributor,
            ProjectRole::Owner,
        ] {
            assert_eq!(
                project_role_from_neptune(project_role_to_neptune(r)).unwrap(),
                r
            );
        }
        for r in [WorkspaceRole::Admin, WorkspaceRole::Member] {
            assert_eq!(
                workspace_role_from_neptune(workspace_role_to_neptune(r)).unwrap(),
                r
            );
        }
        assert_eq!(project_role_to_neptune(ProjectRole::Owner), "manager");
        assert!(project_role_from_neptune("owner").is_err());
    }

    #[test]
    fn h2_statuses_make_the_client_raise_its_exceptions() {
        let e = neptune_error(
            Op::CreateProject,
            Error::ProjectAlreadyExists {
                project: "w/p".into(),
            },
        );
        assert_eq!(e.status, 400);
        assert_eq!(
            e.body["validationErrors"][0]["errors"][0]["errorCode"]["name"],
            "ERR_NOT_UNIQUE"
        );
        let e = neptune_error(
            Op::DeleteProjectMember,
            Error::UserNotExistsOrWithoutAccess {
                user: "u".into(),
                project: "w/p".into(),
            },
        );
        assert_eq!(e.status, 422);
        // A missing user is not reported as a missing project.
        let e = neptune_error(
            Op::AddProjectMember,
            Error::UserNotFound { user: "u".into() },
        );
        assert_eq!(e.status, 400);
        let e = neptune_error(
            Op::AddProjectMember,
            Error::ProjectNotFound {
                project: "w/p".into(),
            },
        );
        assert_eq!(e.status, 404);
        let e = neptune_error(
            Op::CreateProject,
            Error::VisibilityRestricted {
                workspace: "w".into(),
            },
        );
        assert_eq!(e.body["errorType"], "VISIBILITY_RESTRICTED");
    }
}

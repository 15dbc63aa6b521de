//! The native JSON API under `/api/turnstile/v1/` (SPEC H3): who am I, decisions
//! (one, or up to 1,000 in a batch), explain, complete and paged project lists, and
//! every management call of SPEC §7. Described by an OpenAPI 3.1 document served at
//! `/api/turnstile/v1/openapi.json` and kept in `docs/openapi.json`.
//!
//! Errors are `{kind, error, message}` with the status of [`super::error::status_of`].

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use super::error::{ApiError, ErrorBody, JsonBody, PathArgs, QueryArgs};
use super::schema::{self, ErrorResponses};
use super::{AppState, Cred, auth::Credential};
use crate::audit::AuditQuery;
use crate::domain::access::Action;
use crate::domain::principal::Principal;
use crate::error::Result;
use crate::session::{ProjectOptions, Session, WorkspaceSettings};
use crate::{ProjectRole, Visibility, WorkspaceRole};

/// The most decisions in one batch.
pub const MAX_BATCH: usize = 1000;

/// The routes of the native API, relative to `/api/turnstile/v1`.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/whoami", get(whoami))
        .route("/auth/token", post(access_token))
        .route("/decisions", post(decision))
        .route("/decisions/batch", post(decision_batch))
        .route("/explain", post(explain))
        .route("/workspaces", get(my_workspaces))
        .route("/projects", get(list_projects).post(create_project))
        .route(
            "/projects/{workspace}/{project}",
            axum::routing::delete(delete_project),
        )
        .route(
            "/projects/{workspace}/{project}/visibility",
            put(set_visibility),
        )
        .route(
            "/projects/{workspace}/{project}/description",
            put(set_description),
        )
        .route(
            "/projects/{workspace}/{project}/members",
            get(project_members).post(add_project_member),
        )
        .route(
            "/projects/{workspace}/{project}/members/{username}",
            put(set_project_member_role).delete(remove_project_member),
        )
        .route(
            "/projects/{workspace}/{project}/service-accounts",
            get(project_service_accounts).post(add_project_service_account),
        )
        .route(
            "/projects/{workspace}/{project}/service-accounts/{service_account}",
            put(set_project_service_account_role).delete(remove_project_service_account),
        )
        .route(
            "/workspaces/{workspace}/members",
            get(workspace_members).post(invite_to_workspace),
        )
        .route(
            "/workspaces/{workspace}/members/{username}",
            put(set_workspace_role).delete(remove_workspace_member),
        )
        .route(
            "/workspaces/{workspace}/settings",
            axum::routing::patch(set_workspace_settings),
        )
        .route("/workspaces/{workspace}/status", get(workspace_status))
        .route(
            "/workspaces/{workspace}/service-accounts",
            get(service_accounts).post(create_service_account),
        )
        .route("/workspaces/{workspace}/audit", get(audit_log))
        .route(
            "/service-accounts/{service_account}/deactivate",
            post(deactivate_service_account),
        )
        .route(
            "/service-accounts/{service_account}/reactivate",
            post(reactivate_service_account),
        )
        .route(
            "/service-accounts/{service_account}/token",
            post(issue_service_account_token).delete(revoke_service_account_token),
        )
        .route("/tokens", get(my_tokens))
        .route("/tokens/{id}", axum::routing::delete(revoke_token))
}

/// The OpenAPI document of the native API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "turnstile native API",
        version = "1",
        description = "Access decisions and management calls of turnstile (SPEC H3). Every route but `openapi.json` needs `Authorization: Bearer <token>`: a turnstile API token, a Neptune-format API token, or an access token from `POST /auth/token`."
    ),
    servers((url = "/api/turnstile/v1")),
    paths(
        whoami, access_token, decision, decision_batch, explain, my_workspaces,
        list_projects, create_project, delete_project, set_visibility, set_description,
        project_members, add_project_member, set_project_member_role, remove_project_member,
        project_service_accounts, add_project_service_account,
        set_project_service_account_role, remove_project_service_account,
        workspace_members, invite_to_workspace, set_workspace_role, remove_workspace_member,
        set_workspace_settings, workspace_status, service_accounts, create_service_account,
        audit_log, deactivate_service_account, reactivate_service_account,
        issue_service_account_token, revoke_service_account_token, my_tokens, revoke_token
    ),
    modifiers(&Bearer, &ErrorResponses)
)]
pub struct ApiDoc;

struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

/// The document as served, pretty-printed (and as checked into `docs/openapi.json`).
pub fn openapi_json() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serializes")
}

async fn openapi() -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        openapi_json(),
    )
        .into_response()
}

type ApiResult<T> = std::result::Result<Json<T>, ApiError>;

/// Authenticates and runs `f` on the blocking pool; errors become API errors.
async fn run<T, F>(state: &AppState, cred: Credential, f: F) -> std::result::Result<T, ApiError>
where
    F: FnOnce(&Session<'_>) -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    Ok(state.with_session(cred, f).await??)
}

fn qualified(workspace: &str, project: &str) -> String {
    format!("{workspace}/{project}")
}

/// An empty success body.
#[derive(Debug, Serialize, ToSchema)]
pub struct Done {
    /// Always `true`.
    pub ok: bool,
}

const DONE: Done = Done { ok: true };

// ---------------------------------------------------------------- who am I, tokens

/// The authenticated principal.
#[derive(Debug, Serialize, ToSchema)]
pub struct Whoami {
    /// `alice` or `cicd@ml-team`.
    pub principal: String,
    /// `user` or `service_account`.
    pub kind: String,
}

#[utoipa::path(get, path = "/whoami", tag = "auth",
    responses((status = 200, body = Whoami)))]
async fn whoami(State(state): State<Arc<AppState>>, Cred(cred): Cred) -> ApiResult<Whoami> {
    run(&state, cred, |s| {
        let kind = if s.actor().is_service_account() {
            "service_account"
        } else {
            "user"
        };
        Ok(Json(Whoami {
            principal: s.actor().to_string(),
            kind: kind.into(),
        }))
    })
    .await
}

/// A short-lived access token.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccessToken {
    /// A signed token to send as `Authorization: Bearer`; dies with its API token.
    pub access_token: String,
    /// Always `bearer`.
    pub token_type: String,
    /// Seconds until it expires.
    pub expires_in: i64,
}

/// Exchanges the API token of the request for an access token (H4).
#[utoipa::path(post, path = "/auth/token", tag = "auth",
    responses((status = 200, body = AccessToken)))]
async fn access_token(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    Cred(cred): Cred,
) -> ApiResult<AccessToken> {
    let Credential::Api(secret) = cred else {
        return Err(crate::Error::InvalidToken.into());
    };
    let issuer = format!("{}/auth/realms/neptune", state.base_url(&headers));
    let (principal, pair) = state
        .blocking(move |engine, key| {
            let (session, tid) = super::auth::authenticate_with_id(engine, &secret)?;
            let principal = session.actor().to_string();
            let pair = key.issue(&principal, tid, &issuer);
            Ok::<_, crate::Error>((principal, pair))
        })
        .await??;
    super::observe::set_principal(principal);
    Ok(Json(AccessToken {
        access_token: pair.access,
        token_type: "bearer".into(),
        expires_in: super::auth::ACCESS_TOKEN_SECONDS,
    }))
}

/// A token as listed, without its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenDto {
    /// Its id.
    pub id: i64,
    /// Its label.
    pub label: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, to the minute.
    pub last_used_at: Option<String>,
    /// RFC 3339.
    pub expires_at: Option<String>,
    /// RFC 3339.
    pub revoked_at: Option<String>,
}

#[utoipa::path(get, path = "/tokens", tag = "auth",
    responses((status = 200, body = Vec<TokenDto>)))]
async fn my_tokens(
    State(state): State<Arc<AppState>>,
    Cred(cred): Cred,
) -> ApiResult<Vec<TokenDto>> {
    let tokens = run(&state, cred, |s| s.tokens()).await?;
    let t = |d: Option<chrono::DateTime<chrono::Utc>>| d.map(|d| d.to_rfc3339());
    Ok(Json(
        tokens
            .into_iter()
            .map(|x| TokenDto {
                id: x.id.0,
                label: x.label,
                created_at: x.created_at.to_rfc3339(),
                last_used_at: t(x.last_used_at),
                expires_at: t(x.expires_at),
                revoked_at: t(x.revoked_at),
            })
            .collect(),
    ))
}

#[utoipa::path(delete, path = "/tokens/{id}", tag = "auth", params(("id" = i64, Path)),
    responses((status = 200, body = Done)))]
async fn revoke_token(
    State(state): State<Arc<AppState>>,
    Cred(cred): Cred,
    PathArgs(id): PathArgs<i64>,
) -> ApiResult<Done> {
    run(&state, cred, move |s| s.revoke_token(crate::TokenId(id))).await?;
    Ok(Json(DONE))
}

// ---------------------------------------------------------------- decisions

/// One decision to make.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    /// Whom the decision is about (`bob`, `cicd@ml-team`); the caller when absent. Only
    /// a workspace admin may ask about another principal of its workspace (H5).
    #[serde(default)]
    #[schema(value_type = Option<schema::PrincipalName>)]
    pub principal: Option<String>,
    /// `workspace/project`.
    #[schema(value_type = schema::QualifiedProjectName)]
    pub project: String,
    /// `view`, `edit`, `manage` or `delete`.
    #[schema(value_type = schema::Action)]
    pub action: String,
}

/// One decision of a batch. Its values are checked one item at a time: an item that
/// breaks a rule is answered with its own `error` and the others still answer, so
/// the schema leaves them plain strings.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchCheck {
    /// Whom the decision is about (a principal name); the caller when absent.
    #[serde(default)]
    pub principal: Option<String>,
    /// `workspace/project`.
    pub project: String,
    /// `view`, `edit`, `manage` or `delete`.
    pub action: String,
}

/// A decision.
#[derive(Debug, Serialize, ToSchema)]
pub struct DecisionResult {
    /// Whether the action is allowed; absent when the item failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed: Option<bool>,
    /// Why the item failed (a batch answers each item on its own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

fn parse_item(
    principal: Option<&str>,
    project: &str,
    action: &str,
) -> Result<(Option<Principal>, String, Action)> {
    let principal = principal.map(str::parse).transpose()?;
    Ok((principal, project.to_owned(), action.parse()?))
}

#[utoipa::path(post, path = "/decisions", tag = "decisions", request_body = DecisionRequest,
    responses((status = 200, body = DecisionResult)))]
async fn decision(
    State(state): State<Arc<AppState>>,
    Cred(cred): Cred,
    JsonBody(req): JsonBody<DecisionRequest>,
) -> ApiResult<DecisionResult> {
    let out = run(&state, cred, move |s| {
        let (p, project, action) = parse_item(req.principal.as_deref(), &req.project, &req.action)?;
        s.check_for(p.as_ref(), &project, action)
    })
    .await;
    state.metrics.decision(out.as_ref().ok().copied());
    Ok(Json(DecisionResult {
        allowed: Some(out?),
        error: None,
    }))
}

/// Up to 1,000 decisions.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// The decisions, answered in order; at most 1,000.
    #[schema(max_items = 1000)]
    pub checks: Vec<BatchCheck>,
}

/// The answers of a batch, in the order asked.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResult {
    /// One result per check.
    pub results: Vec<DecisionResult>,
}

#[utoipa::path(post, path = "/decisions/batch", tag = "decisions", request_body = BatchRequest,
    responses((status = 200, body = BatchResult)))]
async fn decision_batch(
    State(state): State<Arc<AppState>>,
    Cred(cred): Cred,
    JsonBody(req): JsonBody<BatchRequest>,
) -> ApiResult<BatchResult> {
    if req.checks.len() > MAX_BATCH {
        return Err(ApiError::request(
            StatusCode::UNPROCESSABLE_ENTITY,
            "BatchTooLarge",
            format!(
                "a batch holds at most {MAX_BATCH} checks, not {}",
                req.checks.len()
            ),
        ));
    }
    let outs = run(&state, cred, move |s| {
        let mut parsed = Vec::with_capacity(req.checks.len());
        let mut bad = Vec::new();
        for (i, r) in req.checks.iter().enumerate() {
            match parse_item(r.principal.as_deref(), &r.project, &r.action) {
                Ok(item) => parsed.push(item),
                Err(e) => {
                    bad.push((i, e));
                    // A placeholder keeps positions; its answer is replaced below.
                    parsed.push((None, String::new(), Action::View));
                }
            }
        }
        let mut outs = s.check_batch(&parsed)?;
        for (i, e) in bad {
            outs[i] = Err(e);
        }
        Ok(outs)
    })
    .await?;
    let results = outs
        .into_iter()
        .map(|o| {
            state.metrics.decision(o.as_ref().ok().copied());
            match o {
                Ok(a) => DecisionResult {
                    allowed: Some(a),
                    error: None,
                },
                Err(e) => DecisionResult {
                    allowed: None,
                    error: Some(ApiError::from(e).body),
                },
            }
        })
        .collect();
    Ok(Json(BatchResult { results }))
}

/// What to explain.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExplainRequest {
    /// Whom it is about; the caller when absent (H5).
    #[serde(default)]
    #[schema(value_type = Option<schema::PrincipalName>)]
    pub principal: Option<String>,
    /// `workspace/project`.
    #[schema(value_type = schema::QualifiedProjectName)]
    pub project: String,
}

/// An effective role and the rule that gave it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccessDto {
    /// `viewer`, `contributor` or `owner`.
    pub role: String,
    /// `workspace_admin`, `explicit_grant`, `workspace_visibility` or `public`.
    pub source: String,
}

/// The answer of explain.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExplainResult {
    /// `null` for no access.
    pub access: Option<AccessDto>,
}

#[utoipa::path(post, path = "/explain", tag = "decisions", request_body = ExplainRequest,
    responses((status = 200, body = ExplainResult)))]
async fn explain(
    State(state): State<Arc<AppState>>,
    Cred(cred): Cred,
    JsonBody(req): JsonBody<ExplainRequest>,
) -> ApiResult<ExplainResult> {
    let access = run(&state, cred, move |s| {
        let p: Option<Principal> = req.principal.as_deref().map(str::parse).transpose()?;
        s.explain_for(p.as_ref(), &req.project)
    })
    .await?;
    Ok(Json(ExplainResult {
        access: access.map(|a| AccessDto {
            role: a.role.as_str().into(),
            source: serde_json::to_value(a.source)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
        }),
    }))
}

// ---------------------------------------------------------------- projects

/// Paging of the project list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Page size, 1 to 10,000; without `limit` and `after` the whole list comes in
    /// one answer.
    #[serde(default)]
    #[param(value_type = u16, required = false, minimum = 1, maximum = 10000)]
    pub limit: Option<usize>,
    /// The `next` of the previous page.
    #[serde(default)]
    #[param(value_type = schema::QualifiedProjectName, required = false)]
    pub after: Option<String>,
}

/// Page sizes and audit limits: 1 to 10,000 (H3).
const MAX_LIMIT: usize = 10_000;

fn check_limit(limit: Option<usize>) -> Result<Option<usize>> {
    match limit {
        Some(l) if !(1..=MAX_LIMIT).contains(&l) => Err(crate::Error::invalid_value(
            "limit",
            &l.to_string(),
            "an integer from 1 to 10000",
        )),
        l => Ok(l),
    }
}

/// Project names the caller can view.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectList {
    /// Qualified names, in workspace and name order.
    pub projects: Vec<String>,
    /// The cursor of the next page; `null` on the last page and for a complete list.
    pub next: Option<String>,
}

#[utoipa::path(get, path = "/projects", tag = "projects", params(ListQuery),
    responses((status = 200, body = ProjectList)))]
async fn list_projects(
    State(state): State<Arc<AppState>>,
    Cred(cred): Cred,
    QueryArgs(q): QueryArgs<ListQuery>,
) -> ApiResult<ProjectList> {
    run(&state, cred, move |s| {
        Ok(Json(match check_limit(q.limit)? {
            None if q.after.is_none() => ProjectList {
                projects: s.list_projects()?,
                next: None,
            },
            limit => {
                let page = s.list_projects_page(q.after.as_deref(), limit.unwrap_or(1000))?;
                ProjectList {
                    projects: page.projects,
                    next: page.next,
                }
            }
        }))
    })
    .await
}

/// A project to create.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    /// `workspace/project`, or a project name with `workspace`.
    pub name: String,
    /// The workspace, when `name` is not qualified.
    #[serde(default)]
    pub workspace: Option<String>,
    /// The key; generated when absent.
    #[serde(default)]
    pub key: Option<String>,
    /// `private` (default), `workspace` or `public`.
    #[serde(default)]
    pub visibility: Option<String>,
    /// A description.
    #[serde(default)]
    pub description: Option<String>,
}

/// `name` is either qualified, without `workspace`, or a bare project name with
/// `workspace` (a rule `derive(ToSchema)` cannot state: written by hand).
impl utoipa::PartialSchema for CreateProject {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, OneOfBuilder, Type};
        use utoipa::openapi::{Ref, RefOr};
        let r = |name: &str| RefOr::from(Ref::from_schema_name(name));
        let null = || ObjectBuilder::new().schema_type(Type::Null);
        let nullable = |name: &str| OneOfBuilder::new().item(null()).item(r(name));
        let variant = |name: &str, workspace: RefOr<utoipa::openapi::schema::Schema>| {
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property("name", r(name))
                .required("name")
                .property("workspace", workspace)
                .property("key", nullable("ProjectKey"))
                .property("visibility", nullable("Visibility"))
                .property("description", nullable("Description"))
                .additional_properties(Some(
                    utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
                ))
        };
        AnyOfBuilder::new()
            .description(Some(
                "A project to create: `name` is `workspace/project` (and `workspace` absent or null), or a bare project name with `workspace`.",
            ))
            .item(variant("QualifiedProjectName", null().into()))
            .item(variant("ProjectName", r("WorkspaceName")).required("workspace"))
            .into()
    }
}

impl ToSchema for CreateProject {
    fn schemas(
        out: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        fn add<T: ToSchema>(
            out: &mut Vec<(
                String,
                utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
            )>,
        ) {
            out.push((T::name().into_owned(), T::schema()));
        }
        add::<schema::QualifiedProjectName>(out);
        add::<schema::ProjectName>(out);
        add::<schema::WorkspaceName>(out);
        add::<schema::ProjectKey>(out);
        add::<schema::Visibility>(out);
        add::<schema::Description>(out);
    }
}

/// A created project.
#[derive(Debug, Serialize, ToSchema)]
pub struct Created {
    /// Its qualified name.
    pub project: String,
}

#[utoipa::path(post, path = "/projects", tag = "projects", request_body = CreateProject,
    responses((status = 200, body = Created)))]
async fn create_project(
    State(state): State<Arc<AppState>>,
    Cred(cred): Cred,
    JsonBody(req): JsonBody<CreateProject>,
) -> ApiResult<Created> {
    run(&state, cred, move |s| {
        let visibility = req
            .visibility
            .as_deref()
            .map(str::parse::<Visibility>)
            .transpose()?;
        let project = s.create_project(
            &req.name,
            ProjectOptions {
                workspace: req.workspace,
                key: req.key,
                visibility,
                description: req.description,
            },
        )?;
        Ok(Json(Created { project }))
    })
    .await
}

#[utoipa::path(delete, path = "/projects/{workspace}/{project}", tag = "projects",
    params(("workspace" = schema::WorkspaceName, Path), ("project" = schema::ProjectName, Path)),
    responses((status = 200, body = Done)))]
async fn delete_project(
    State(state): State<Arc<AppState>>,
    Cred(cred): Cred,
    PathArgs((ws, p)): PathArgs<(String, String)>,
) -> ApiResult<Done> {
    run(&state, cred, move |s| s.delete_project(&qualified(&ws, &p))).await?;
    Ok(Json(DONE))
}

/// A visibility.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VisibilityBody {
    /// `private`, `workspace` or `public`.
    #[schema(value_type = schema::Visibility)]
    pub visibility: String,
}

#[utoipa::path(put, path = "/projects/{workspace}/{project}/visibility", tag = "projects",
    params(("workspace" = schema::WorkspaceName, Path), ("project" = schema::ProjectName, Path)), request_body = VisibilityBody,
    responses((status = 200, body = Done)))]
async fn set_visibility(
    State(state): State<Arc<AppState>>,
    Cred(cred): Cred,
    PathArgs((ws, p)): PathArgs<(String, String)>,
    JsonBody(req): JsonBody<VisibilityBody>,
) -> ApiResult<Done> {
    run(&state, cred, move |s| {
        s.set_project_visibility(&qualified(&ws, &p), req.visibility.parse()?)
    })
    .await?;
    Ok(Json(DONE))
}

/// A description.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DescriptionBody {
    /// At most 4,096 characters (N8).
    #[schema(value_type = schema::Description)]
    pub description: String,
}

#[utoipa::path(put, path = "/projects/{workspace}/{project}/description", tag = "projects",
    params(("workspace" = schema::WorkspaceName, Path), ("project" = schema::ProjectName, Path)), request_body = DescriptionBody,
    responses((status = 200, body = Done)))]
async fn set_description(
    State(state): State<Arc<AppState>>,
    Cred(cred): Cred,
    PathArgs((ws, p)): PathArgs<(String, String)>,
    JsonBody(req): JsonBody<DescriptionBody>,
) -> ApiResult<Done> {
    run(&state, cred, move |s| {
        s.set_project_description(&qualified(&ws, &p), &req.description)
    })
    .await?;
    Ok(Json(DONE))
}

/// Names and roles.
#[derive(Debug, Serialize, ToSchema)]
pub struct Roles {
    /// Name → role.
    pub members: BTreeMap<String, String>,
}

fn roles<R: Copy>(m: BTreeMap<String, R>, name: impl Fn(R) -> &'static str) -> Json<Roles> {
    Json(Roles {
        members: m
            .into_iter()
            .map(|(k, v)| (k, name(v).to_owned()))
            .collect(),
    })
}

#[utoipa::path(get, path = "/projects/{workspace}/{project}/members", tag = "projects",
    params(("workspace" = schema::WorkspaceName, Path), ("project" = schema::ProjectName, Path)),
    responses((status = 200, body = Roles)))]
async fn project_members(
    State(state): State<Arc<AppState>>,
    Cred(cred): Cred,
    PathArgs((ws, p)): PathArgs<(String, String)>,
) -> ApiResult<Roles> {
    let m = run(&state, cred, move |s| {
        s.project_members(&qualified(&ws, &p))
    })
    .await?;
    Ok(roles(m, ProjectRole::as_str))
}

/// A user and a project role.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMember {
    /// The username.
    #[schema(value_type = schema::Username)]
    pub username: String,
    /// `viewer`, `contributor` or `owner`.
    #[schema(value_type = schema::ProjectRole)]
    pub role: String,
}

#[utoipa::path(post, path = "/projects/{workspace}/{project}/members", tag = "projects",
    params(("workspace" = schema::WorkspaceName, Path), ("project" = schema::ProjectName, Path)), request_body = NewMember,
    responses((status = 200, body = Done)))]
async fn add_project_member(
    State(state): State<Arc<AppState>>,
    Cred(cred): Cred,
    PathArgs((ws, p)): PathArgs<(String, String)>,
    JsonBody(req): JsonBody<NewMember>,
) -> ApiResult<Done> {
    run(&state, cred, move |s| {
        s.add_project_member(&qualified(&ws, &p), &req.username, req.role.parse()?)
    })
    .await?;
    Ok(Json(DONE))
}

/// A project role.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectRoleBody {
    /// `viewer`, `contributor` or `owner`.
    #[schema(value_type = schema::ProjectRole)]
    pub role: String,
}

/// A workspace role.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceRoleBody {
    /// `admin` or `member`.
    #[schema(value_type = schema::WorkspaceRole)]
    pub role: String,
}

#[utoipa::path(put, path = "/projects/{workspace}/{project}/members/{username}", tag = "projects",
    params(("workspace" = schema::WorkspaceName, Path), ("project" = schema::ProjectName, Path), ("username" = schema::Username, Path)), request_body = ProjectRoleBody,
    responses((status = 200, body = Done)))]
async fn set_project_member_role(
    State(state): State<Arc<AppState>>,
    Cred(cred): Cred,
    PathArgs((ws, p, user)): PathArgs<(String, String, String)>,
    JsonBody(req): JsonBody<ProjectRoleBody>,
) -> ApiResult<Done> {
    run(&state, cred, move |s| {
        s.set_project_member_role(&qualified(&ws, &p), &user, req.role.parse()?)
    })
    .await?;
    Ok(Json(DONE))
}

#[utoipa::path(delete, path = "/projects/{workspace}/{project}/members/{username}", tag = "projects",
    params(("workspace" = schema::WorkspaceName, Path), ("project" = schema::ProjectName, Path), ("username" = schema::Username, Path)),
    responses((status = 200, body = Done)))]
async fn remove_project_member(
    State(state): State<Arc<AppState>>,
    Cred(cred): Cred,
    PathArgs((ws, p, user)): PathArgs<(String, String, String)>,
) -> ApiResult<Done> {
    run(&state, cred, move |s| {
        s.remove_project_member(&qualified(&ws, &p), &user)
    })
    .await?;
    Ok(Json(DONE))
}

#[utoipa::path(get, path = "/projects/{workspace}/{project}/service-accounts", tag = "projects",
    params(("workspace" = schema::WorkspaceName, Path), ("project" = schema::ProjectName, Path)),
    responses((status = 200, body = Roles)))]
async fn project_service_accounts(
    State(state): State<Arc<AppState>>,
    Cred(cred): Cred,
    PathArgs((ws, p)): PathArgs<(String, String)>,
) -> ApiResult<Roles> {
    let m = run(&state, cred, move |s| {
        s.project_service_accounts(&qualified(&ws, &p))
    })
    .await?;
    Ok(roles(m, ProjectRole::as_str))
}

/// A service account and a project role.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProjectServiceAccount {
    /// `name@workspace`.
    #[schema(value_type = schema::ServiceAccountFullName)]
    pub service_account: String,
    /// `viewer`, `contributor` or `owner`.
    #[schema(value_type = schema::ProjectRole)]
    pub role: String,
}

#[utoipa::path(post, path = "/projects/{workspace}/{project}/service-accounts", tag = "projects",
    params(("workspace" = schema::WorkspaceName, Path), ("project" = schema::ProjectName, Path)), request_body = NewProjectServiceAccount,
    responses((status = 200, body = Done)))]
async fn add_project_service_account(
    State(state): State<Arc<AppState>>,
    Cred(cred): Cred,
    PathArgs((ws, p)): PathArgs<(String, String)>,
    JsonBody(req): JsonBody<NewProjectServiceAccount>,
) -> ApiResult<Done> {
    run(&state, cred, move |s| {
        s.add_project_service_account(&qualified(&ws, &p), &req.service_account, req.role.parse()?)
    })
    .await?;
    Ok(Json(DONE))
}

#[utoipa::path(put, path = "/projects/{workspace}/{project}/service-accounts/{service_account}", tag = "projects",
    params(("workspace" = schema::WorkspaceName, Path), ("project" = schema::ProjectName, Path), ("service_account" = schema::ServiceAccountFullName, Path)), request_body = ProjectRoleBody,
    responses((status = 200, body = Done)))]
async fn set_project_service_account_role(
    State(state): State<Arc<AppState>>,
    Cred(cred): Cred,
    PathArgs((ws, p, sa)): PathArgs<(String, String, String)>,
    JsonBody(req): JsonBody<ProjectRoleBody>,
) -> ApiResult<Done> {
    run(&state, cred, move |s| {
        s.set_project_service_account_role(&qualified(&ws, &p), &sa, req.role.parse()?)
    })
    .await?;
    Ok(Json(DONE))
}

#[utoipa::path(delete, path = "/projects/{workspace}/{project}/service-accounts/{service_account}", tag = "projects",
    params(("workspace" = schema::WorkspaceName, Path), ("project" = schema::ProjectName, Path), ("service_account" = schema::ServiceAccountFullName, Path)),
    responses((status = 200, body = Done)))]
async fn remove_project_service_account(
    State(state): State<Arc<AppState>>,
    Cred(cred): Cred,
    PathArgs((ws, p, sa)): PathArgs<(String, String, String)>,
) -> ApiResult<Done> {
    run(&state, cred, move |s| {
        s.remove_project_service_account(&qualified(&ws, &p), &sa)
    })
    .await?;
    Ok(Json(DONE))
}

// ---------------------------------------------------------------- workspaces

/// A workspace the caller belongs to.
#[derive(Debug, Serialize, ToSchema)]
pub struct MembershipDto {
    /// The workspace.
    pub workspace: String,
    /// `admin` or `member`.
    pub role: String,
}

#[utoipa::path(get, path = "/workspaces", tag = "workspaces",
    responses((status = 200, body = Vec<MembershipDto>)))]
async fn my_workspaces(
    State(state): State<Arc<AppState>>,
    Cred(cred): Cred,
) -> ApiResult<Vec<MembershipDto>> {
    let list = run(&state, cred, |s| s.workspaces()).await?;
    Ok(Json(
        list.into_iter()
            .map(|m| MembershipDto {
                workspace: m.workspace,
                role: m.role.as_str().into(),
            })
            .collect(),
    ))
}

#[utoipa::path(get, path = "/workspaces/{workspace}/members", tag = "workspaces",
    params(("workspace" = schema::WorkspaceName, Path)),
    responses((status = 200, body = Roles)))]
async fn workspace_members(
    State(state): State<Arc<AppState>>,
    Cred(cred): Cred,
    PathArgs(ws): PathArgs<String>,
) -> ApiResult<Roles> {
    let m = run(&state, cred, move |s| s.workspace_members(&ws)).await?;
    Ok(roles(m, WorkspaceRole::as_str))
}

/// An invitation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Invitation {
    /// An existing user.
    #[schema(value_type = schema::Username)]
    pub username: String,
    /// `admin` or `member` (default).
    #[serde(default)]
    #[schema(value_type = Option<schema::WorkspaceRole>)]
    pub role: Option<String>,
    /// Grant `contributor` on every project that exists now (A9).
    #[serde(default)]
    pub add_to_all_projects: bool,
}

#[utoipa::path(post, path = "/workspaces/{workspace}/members", tag = "workspaces",
    params(("workspace" = schema::WorkspaceName, Path)), request_body = Invitation,
    responses((status = 200, body = Done)))]
async fn invite_to_workspace(
    State(state): State<Arc<AppState>>,
    Cred(cred): Cred,
    PathArgs(ws): PathArgs<String>,
    JsonBody(req): JsonBody<Invitation>,
) -> ApiResult<Done> {
    run(&state, cred, move |s| {
        let role = req.role.as_deref().unwrap_or("member").parse()?;
        s.invite_to_workspace(&ws, &req.username, role, req.add_to_all_projects)
    })
    .await?;
    Ok(Json(DONE))
}

#[utoipa::path(put, path = "/workspaces/{workspace}/members/{username}", tag = "workspaces",
    params(("workspace" = schema::WorkspaceName, Path), ("username" = schema::Username, Path)), request_body = WorkspaceRoleBody,
    responses((status = 200, body = Done)))]
async fn set_workspace_role(
    State(state): State<Arc<AppState>>,
    Cred(cred): Cred,
    PathArgs((ws, user)): PathArgs<(String, String)>,
    JsonBody(req): JsonBody<WorkspaceRoleBody>,
) -> ApiResult<Done> {
    run(&state, cred, move |s| {
        s.set_workspace_role(&ws, &user, req.role.parse()?)
    })
    .await?;
    Ok(Json(DONE))
}

#[utoipa::path(delete, path = "/workspaces/{workspace}/members/{username}", tag = "workspaces",
    params(("workspace" = schema::WorkspaceName, Path), ("username" = schema::Username, Path)),
    responses((status = 200, body = Done)))]
async fn remove_workspace_member(
    State(state): State<Arc<AppState>>,
    Cred(cred): Cred,
    PathArgs((ws, user)): PathArgs<(String, String)>,
) -> ApiResult<Done> {
    run(&state, cred, move |s| s.remove_workspace_member(&ws, &user)).await?;
    Ok(Json(DONE))
}

/// Settings to change; absent fields stay.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsBody {
    /// Whether projects may be public (A5).
    #[serde(default)]
    pub allow_public_projects: Option<bool>,
    /// The most active service accounts (S2).
    #[serde(default, deserialize_with = "whole_u32")]
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 4294967295_u64)]
    pub service_account_limit: Option<u32>,
}

#[utoipa::path(patch, path = "/workspaces/{workspace}/settings", tag = "workspaces",
    params(("workspace" = schema::WorkspaceName, Path)), request_body = SettingsBody,
    responses((status = 200, body = Done)))]
async fn set_workspace_settings(
    State(state): State<Arc<AppState>>,
    Cred(cred): Cred,
    PathArgs(ws): PathArgs<String>,
    JsonBody(req): JsonBody<SettingsBody>,
) -> ApiResult<Done> {
    run(&state, cred, move |s| {
        s.set_workspace_settings(
            &ws,
            WorkspaceSettings {
                allow_public_projects: req.allow_public_projects,
                service_account_limit: req.service_account_limit,
            },
        )
    })
    .await?;
    Ok(Json(DONE))
}

/// A JSON integer for a `u32`, also when written with a zero fraction (`5.0`): JSON
/// Schema counts both as integers.
fn whole_u32<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<u32>, D::Error> {
    use serde::de::Error as _;
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    n.as_u64()
        .or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(f))
                .map(|f| f as u64)
        })
        .and_then(|v| u32::try_from(v).ok())
        .map(Some)
        .ok_or_else(|| {
            D::Error::custom(format!(
                "invalid value: {n}, expected an integer from 0 to {}",
                u32::MAX
            ))
        })
}

/// Counts and limits of a workspace.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusDto {
    /// The workspace.
    pub workspace: String,
    /// Admins.
    pub admins: u32,
    /// Members (not admins).
    pub members: u32,
    /// Projects.
    pub projects: u32,
    /// Active service accounts.
    pub active_service_accounts: u32,
    /// Deactivated service accounts.
    pub deactivated_service_accounts: u32,
    /// The most active service accounts.
    pub service_account_limit: u32,
    /// Whether projects may be public.
    pub allow_public_projects: bool,
}

#[utoipa::path(get, path = "/workspaces/{workspace}/status", tag = "workspaces",
    params(("workspace" = schema::WorkspaceName, Path)),
    responses((status = 200, body = StatusDto)))]
async fn workspace_status(
    State(state): State<Arc<AppState>>,
    Cred(cred): Cred,
    PathArgs(ws): PathArgs<String>,
) -> ApiResult<StatusDto> {
    let s = run(&state, cred, move |s| s.workspace_status(&ws)).await?;
    Ok(Json(StatusDto {
        workspace: s.workspace,
        admins: s.admins,
        members: s.members,
        projects: s.projects,
        active_service_accounts: s.active_service_accounts,
        deactivated_service_accounts: s.deactivated_service_accounts,
        service_account_limit: s.service_account_limit,
        allow_public_projects: s.allow_public_projects,
    }))
}

/// Whether to list deactivated accounts too.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ServiceAccountsQuery {
    /// Include deactivated accounts.
    #[serde(default)]
    #[param(required = false)]
    pub include_deactivated: bool,
}

/// A service account.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceAccountDto {
    /// `name@workspace`.
    pub service_account: String,
    /// `false` once deactivated.
    pub active: bool,
}

#[utoipa::path(get, path = "/workspaces/{workspace}/service-accounts", tag = "service accounts",
    params(("workspace" = schema::WorkspaceName, Path), ServiceAccountsQuery),
    responses((status = 200, body = Vec<ServiceAccountDto>)))]
async fn service_accounts(
    State(state): State<Arc<AppState>>,
    Cred(cred): Cred,
    PathArgs(ws): PathArgs<String>,
    QueryArgs(q): QueryArgs<ServiceAccountsQuery>,
) -> ApiResult<Vec<ServiceAccountDto>> {
    let list = run(&state, cred, move |s| {
        s.service_accounts(&ws, q.include_deactivated)
    })
    .await?;
    Ok(Json(
        list.into_iter()
            .map(|sa| ServiceAccountDto {
                service_account: sa.full_name,
                active: sa.active,
            })
            .collect(),
    ))
}

/// A service account to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewServiceAccount {
    /// Its name within the workspace.
    #[schema(value_type = schema::ServiceAccountName)]
    pub name: String,
    /// Grant `contributor` on every project that exists now (S1).
    #[serde(default)]
    pub contributor_on_all_projects: bool,
}

/// A newly issued API token: the only time its secret is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedDto {
    /// Whose token it is.
    pub principal: String,
    /// The token's id.
    pub token_id: i64,
    /// The secret.
    pub token: String,
}

fn issued(t: crate::IssuedToken) -> IssuedDto {
    IssuedDto {
        principal: t.principal.to_string(),
        token_id: t.id.0,
        token: t.into_secret(),
    }
}

#[utoipa::path(post, path = "/workspaces/{workspace}/service-accounts", tag = "service accounts",
    params(("workspace" = schema::WorkspaceName, Path)), request_body = NewServiceAccount,
    responses((status = 200, body = IssuedDto)))]
async fn create_service_account(
    State(state): State<Arc<AppState>>,
    Cred(cred): Cred,
    PathArgs(ws): PathArgs<String>,
    JsonBody(req): JsonBody<NewServiceAccount>,
) -> ApiResult<IssuedDto> {
    let t = run(&state, cred, move |s| {
        s.create_service_account(&ws, &req.name, req.contributor_on_all_projects)
    })
    .await?;
    Ok(Json(issued(t)))
}

#[utoipa::path(post, path = "/service-accounts/{service_account}/deactivate", tag = "service accounts",
    params(("service_account" = schema::ServiceAccountFullName, Path)),
    responses((status = 200, body = Done)))]
async fn deactivate_service_account(
    State(state): State<Arc<AppState>>,
    Cred(cred): Cred,
    PathArgs(sa): PathArgs<String>,
) -> ApiResult<Done> {
    run(&state, cred, move |s| s.deactivate_service_account(&sa)).await?;
    Ok(Json(DONE))
}

#[utoipa::path(post, path = "/service-accounts/{service_account}/reactivate", tag = "service accounts",
    params(("service_account" = schema::ServiceAccountFullName, Path)),
    responses((status = 200, body = IssuedDto)))]
async fn reactivate_service_account(
    State(state): State<Arc<AppState>>,
    Cred(cred): Cred,
    PathArgs(sa): PathArgs<String>,
) -> ApiResult<IssuedDto> {
    let t = run(&state, cred, move |s| s.reactivate_service_account(&sa)).await?;
    Ok(Json(issued(t)))
}

#[utoipa::path(post, path = "/service-accounts/{service_account}/token", tag = "service accounts",
    params(("service_account" = schema::ServiceAccountFullName, Path)),
    responses((status = 200, body = IssuedDto)))]
async fn issue_service_account_token(
    State(state): State<Arc<AppState>>,
    Cred(cred): Cred,
    PathArgs(sa): PathArgs<String>,
) -> ApiResult<IssuedDto> {
    let t = run(&state, cred, move |s| s.issue_service_account_token(&sa)).await?;
    Ok(Json(issued(t)))
}

/// How many tokens were revoked.
#[derive(Debug, Serialize, ToSchema)]
pub struct Revoked {
    /// The count.
    pub revoked: usize,
}

#[utoipa::path(delete, path = "/service-accounts/{service_account}/token", tag = "service accounts",
    params(("service_account" = schema::ServiceAccountFullName, Path)),
    responses((status = 200, body = Revoked)))]
async fn revoke_service_account_token(
    State(state): State<Arc<AppState>>,
    Cred(cred): Cred,
    PathArgs(sa): PathArgs<String>,
) -> ApiResult<Revoked> {
    let revoked = run(&state, cred, move |s| s.revoke_service_account_token(&sa)).await?;
    Ok(Json(Revoked { revoked }))
}

/// Audit filters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// Only events by this actor (any spelling; compared case-insensitively).
    #[serde(default)]
    #[param(value_type = String, required = false)]
    pub actor: Option<String>,
    /// Only events about this target (any spelling; compared case-insensitively).
    #[serde(default)]
    #[param(value_type = String, required = false)]
    pub target: Option<String>,
    /// At most this many events, newest first: 1 to 10,000 (default 100).
    #[serde(default)]
    #[param(value_type = u16, required = false, minimum = 1, maximum = 10000)]
    pub limit: Option<usize>,
}

/// An audit event.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditDto {
    /// Position in the log.
    pub id: i64,
    /// RFC 3339.
    pub at: String,
    /// Who did it.
    pub actor: String,
    /// What was done.
    pub action: String,
    /// What it was done to.
    pub target: String,
    /// `ok` or `denied`.
    pub outcome: String,
    /// Further facts.
    pub details: serde_json::Value,
}

#[utoipa::path(get, path = "/workspaces/{workspace}/audit", tag = "workspaces",
    params(("workspace" = schema::WorkspaceName, Path), AuditParams),
    responses((status = 200, body = Vec<AuditDto>)))]
async fn audit_log(
    State(state): State<Arc<AppState>>,
    Cred(cred): Cred,
    PathArgs(ws): PathArgs<String>,
    QueryArgs(q): QueryArgs<AuditParams>,
) -> ApiResult<Vec<AuditDto>> {
    let events = run(&state, cred, move |s| {
        s.audit_log(
            &ws,
            &AuditQuery {
                actor: q.actor,
                target: q.target,
                limit: Some(check_limit(q.limit)?.unwrap_or(100)),
                ..Default::default()
            },
        )
    })
    .await?;
    Ok(Json(
        events
            .into_iter()
            .map(|e| AuditDto {
                id: e.id,
                at: e.at.to_rfc3339(),
                actor: e.actor,
                action: e.action,
                target: e.target,
                outcome: e.outcome.as_str().into(),
                details: e.details,
            })
            .collect(),
    ))
}

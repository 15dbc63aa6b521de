//! The JSON Schemas of the native API's names and words (SPEC N1–N5, N8, §4), and the
//! error responses every operation shares (H3). The handlers take plain strings and
//! leave the parsing, and its `422 invalid_input`, to the library; these schemas only
//! tell clients, and schemathesis, what the library accepts.
//!
//! Every pattern is exact for ASCII input. Project names (N3) also forbid Unicode
//! characters that JSON Schema cannot name (those outside the Basic Multilingual
//! Plane, format, private-use, unassigned and default-ignorable characters) and count
//! their length after NFC: for non-ASCII input the pattern is a superset, and the
//! server answers `422 InvalidName` for the rest (see `docs/http.md`).

use std::borrow::Cow;

use serde_json::json;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::{
    Components, ContentBuilder, HeaderBuilder, OpenApi, Ref, RefOr, ResponseBuilder,
};
use utoipa::{PartialSchema, ToSchema};

/// A workspace name (N1): 2–64 of `a-z 0-9 -`, not starting or ending with `-`;
/// case-insensitive.
pub const WORKSPACE: &str = "[A-Za-z0-9][A-Za-z0-9-]{0,62}[A-Za-z0-9]";
/// A username or a service account's own name (N2): 1–64 of `A-Z a-z 0-9 - _ .`,
/// not starting with `.` or `-`.
pub const ACCOUNT: &str = "[A-Za-z0-9_][A-Za-z0-9._-]{0,63}";
/// A project name (N3): 3–128 characters, no control character, none of
/// `/ \ # ? % :`, and no white space at either end.
pub const PROJECT: &str =
    r"[^\x00-\x20\x7f-\x9f/\\#?%:][^\x00-\x1f\x7f-\x9f/\\#?%:]{1,126}[^\x00-\x20\x7f-\x9f/\\#?%:]";

fn anchored(parts: &[&str]) -> String {
    format!("^{}$", parts.concat())
}

fn string(description: &str, pattern: Option<String>, example: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .pattern(pattern)
        .examples([json!(example)])
        .into()
}

fn words(description: &str, words: &[&str]) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .enum_values(Some(words.iter().copied()))
        .into()
}

macro_rules! schema {
    ($(#[$doc:meta])* $name:ident => $body:expr) => {
        $(#[$doc])*
        pub struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                $body
            }
        }

        impl ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
        }
    };
}

schema!(
    /// A workspace name.
    WorkspaceName => string(
        "A workspace name (N1): 2 to 64 of `a-z 0-9 -`, not starting or ending with `-`; case-insensitive.",
        Some(anchored(&[WORKSPACE])),
        "ml-team",
    )
);

schema!(
    /// A username.
    Username => string(
        "A username (N2): 1 to 64 of `A-Z a-z 0-9 - _ .`, not starting with `.` or `-`; case-insensitive.",
        Some(anchored(&[ACCOUNT])),
        "bob",
    )
);

schema!(
    /// A service account's name within its workspace.
    ServiceAccountName => string(
        "A service account's name within its workspace (N2): the rules of a username.",
        Some(anchored(&[ACCOUNT])),
        "nightly",
    )
);

schema!(
    /// A service account's full name.
    ServiceAccountFullName => string(
        "A service account's full name, `name@workspace`.",
        Some(anchored(&[ACCOUNT, "@", WORKSPACE])),
        "cicd@ml-team",
    )
);

schema!(
    /// A user or a service account.
    PrincipalName => string(
        "A user (`bob`) or a service account (`cicd@ml-team`).",
        Some(anchored(&[ACCOUNT, "(@", WORKSPACE, ")?"])),
        "bob",
    )
);

schema!(
    /// A project name within its workspace.
    ProjectName => string(
        "A project name (N3): 3 to 128 characters, no control character, none of `/ \\ # ? % :`, no white space at either end; beyond ASCII, no character outside the Basic Multilingual Plane and none that renders invisibly (the server answers 422 for those). Case-insensitive (NFKC_Casefold).",
        Some(anchored(&[PROJECT])),
        "cls",
    )
);

schema!(
    /// A qualified project name.
    QualifiedProjectName => string(
        "A qualified project name, `workspace/project` (N5).",
        Some(anchored(&[WORKSPACE, "/", PROJECT])),
        "ml-team/cls",
    )
);

schema!(
    /// A project key.
    ProjectKey => ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some("A project key (N4): 1 to 10 of `A-Z 0-9` with at least one letter; case-insensitive."))
        .pattern(Some("^[A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*$"))
        .min_length(Some(1))
        .max_length(Some(10))
        .examples([json!("CLS")])
        .into()
);

schema!(
    /// A project description.
    Description => ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some("A project description (N8): at most 4,096 characters, no control character but tab and newline."))
        .pattern(Some(r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*$"))
        .max_length(Some(crate::domain::description::MAX_DESCRIPTION_CHARS))
        .examples([json!("Image classification")])
        .into()
);

schema!(
    /// A project role.
    ProjectRole => words("A project role.", &["viewer", "contributor", "owner"])
);

schema!(
    /// A workspace role.
    WorkspaceRole => words("A workspace role.", &["admin", "member"])
);

schema!(
    /// A project's visibility.
    Visibility => words("A project's visibility.", &["private", "workspace", "public"])
);

schema!(
    /// An action on a project.
    Action => words("An action on a project.", &["view", "edit", "manage", "delete"])
);

/// The error responses every operation may give, in the order documented: status,
/// component name, meaning. All have the body `ErrorBody`.
const ERRORS: &[(u16, &str, &str)] = &[
    (
        400,
        "BadRequest",
        "`bad_request`: the request could not be read: malformed or mistyped JSON, an unknown or missing field, a bad path or query value.",
    ),
    (
        401,
        "Unauthenticated",
        "`unauthenticated`: no credential, or one that does not authenticate.",
    ),
    (
        403,
        "Denied",
        "`denied`: the caller sees the target but may not act on it, or may not ask about that principal (H5).",
    ),
    (
        404,
        "NotFound",
        "`not_found`: absent, or invisible to the caller (A6).",
    ),
    (
        409,
        "Conflict",
        "`conflict`: a duplicate, the last admin, a full limit, a restricted visibility.",
    ),
    (
        413,
        "PayloadTooLarge",
        "`bad_request`: the body is over 1 MiB.",
    ),
    (
        415,
        "UnsupportedMediaType",
        "`bad_request`: the body is not sent as `Content-Type: application/json`.",
    ),
    (
        422,
        "InvalidInput",
        "`invalid_input`: a name, role, action or value breaks a rule the schema cannot state in full.",
    ),
    (
        429,
        "TooManyRequests",
        "`too_many_requests`: too many engine calls are queued; retry after `Retry-After` seconds.",
    ),
    (
        500,
        "Internal",
        "`storage` or `internal`: the storage failed, or the server did.",
    ),
    (
        503,
        "Busy",
        "`busy`: the database's write lock was held past the busy timeout; retry after `Retry-After` seconds.",
    ),
];

/// Statuses only a request with a body can get.
const BODY_ONLY: &[u16] = &[413, 415];

/// Adds the shared error responses to every operation of the document, as references
/// to one set of response components (H3).
pub struct ErrorResponses;

impl utoipa::Modify for ErrorResponses {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Components::new);
        for (status, name, description) in ERRORS {
            let mut response = ResponseBuilder::new().description(*description).content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            );
            if matches!(status, 429 | 503) {
                response = response.header(
                    "Retry-After",
                    HeaderBuilder::new()
                        .schema(ObjectBuilder::new().schema_type(Type::Integer))
                        .description(Some("Seconds to wait before retrying."))
                        .build(),
                );
            }
            components
                .responses
                .insert((*name).to_owned(), RefOr::T(response.build()));
        }
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in operations.into_iter().flatten() {
                let has_body = op.request_body.is_some();
                let responses = &mut op.responses.responses;
                for (status, name, _) in ERRORS {
                    if BODY_ONLY.contains(status) && !has_body {
                        continue;
                    }
                    responses.entry(status.to_string()).or_insert_with(|| {
                        RefOr::Ref(Ref::new(format!("#/components/responses/{name}")))
                    });
                }
                let mut sorted: Vec<_> = std::mem::take(responses).into_iter().collect();
                sorted.sort_by(|a, b| a.0.cmp(&b.0));
                *responses = sorted.into_iter().collect();
            }
        }
    }
}

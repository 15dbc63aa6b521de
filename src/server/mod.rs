//! `turnstile serve`: the HTTP server (SPEC §12). Neptune's management API for the
//! `neptune` Python client ([`neptune`]) and turnstile's native JSON API under
//! `/api/turnstile/v1/` ([`api`]), over one [`Engine`] shared by every request.
//!
//! Handlers are thin: they read the request, authenticate, run one library call on
//! the blocking pool (the engine is synchronous), and serialize. No rule is decided
//! here.

pub mod api;
pub mod auth;
pub mod error;
pub mod neptune;
mod observe;
pub mod schema;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::Semaphore;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::engine::{Engine, Options};
use crate::error::Result;
use crate::session::Session;
use auth::{Credential, SigningKey};
use error::ApiError;

/// The largest request body (H6).
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// The longest request URI (H6).
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// The most header bytes a request may send (H6); hyper's smallest buffer.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Engine calls queued or running at once before the server answers 429.
const MAX_PENDING_CALLS: usize = 1024;

/// The arguments of `turnstile serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// the address to listen on; port 0 picks a free port (printed on stdout)
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8686")]
    pub listen: SocketAddr,
    /// serve HTTPS with this PEM certificate chain
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// the PEM private key of --tls-cert
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// allow plain HTTP on an address other than loopback
    #[arg(long)]
    pub insecure_http: bool,
    /// the URL clients reach the server at (default: from each request's Host header)
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// the longest a request may take, seconds, including reading its body
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub request_timeout: u64,
    /// do not write the access log to stderr
    #[arg(long)]
    pub quiet: bool,
    /// how long a write waits for another writer before answering 503 busy, milliseconds (D2)
    #[arg(long, value_name = "MS", default_value_t = 60_000)]
    pub busy_timeout_ms: u64,
    /// on PostgreSQL, cache decisions that may be this late, milliseconds (at least 4):
    /// changes are heard through LISTEN/NOTIFY and a heartbeat enforces the bound (B3).
    /// Without it every decision reads the database
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(4..))]
    pub postgres_staleness_ms: Option<u64>,
}

/// What every request shares.
pub struct AppState {
    engine: Arc<Engine>,
    key: SigningKey,
    metrics: observe::Metrics,
    pending: Arc<Semaphore>,
    tls: bool,
    public_url: Option<String>,
    quiet: bool,
}

impl AppState {
    /// Runs `f` on the blocking pool: the engine never runs on the async threads.
    async fn blocking<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        F: FnOnce(&Engine, &SigningKey) -> T + Send + 'static,
        T: Send + 'static,
    {
        let permit = self
            .pending
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::overloaded())?;
        let engine = self.engine.clone();
        let key = self.key.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f(&engine, &key)
        })
        .await
        .map_err(|_| ApiError::internal())
    }

    /// Authenticates `cred` and runs `f` with the caller's session, on the blocking
    /// pool. The outer error is the server's (overload, panic); the inner is the call's.
    async fn with_session<T, F>(&self, cred: Credential, f: F) -> Result<Result<T>, ApiError>
    where
        F: FnOnce(&Session<'_>) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let (principal, out) = self
            .blocking(move |engine, key| match cred.authenticate(engine, key) {
                Ok((session, _)) => (Some(session.actor().to_string()), f(&session)),
                Err(e) => (None, Err(e)),
            })
            .await?;
        if let Some(p) = principal {
            observe::set_principal(p);
        }
        Ok(out)
    }

    /// The server's base URL as the client reached it.
    fn base_url(&self, headers: &HeaderMap) -> String {
        if let Some(url) = &self.public_url {
            return url.trim_end_matches('/').to_owned();
        }
        let scheme = if self.tls { "https" } else { "http" };
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| {
                h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
            })
            .unwrap_or("localhost");
        format!("{scheme}://{host}")
    }
}

/// The credential of a request: `Authorization: Bearer <token>`, or Neptune's
/// `X-Neptune-Api-Token` header. Read here, checked against the database later.
pub struct Cred(pub Credential);

impl<S: Send + Sync> FromRequestParts<S> for Cred {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            });
        let neptune = parts
            .headers
            .get("x-neptune-api-token")
            .and_then(|v| v.to_str().ok());
        bearer
            .or(neptune)
            .filter(|t| !t.trim().is_empty())
            .map(|t| Cred(Credential::parse(t)))
            .ok_or_else(ApiError::missing_credential)
    }
}

/// The whole router: health, metrics, Neptune's API and the native API, with the
/// limits of H6 as layers.
pub fn router(state: Arc<AppState>, request_timeout: Duration) -> Router {
    app(state, request_timeout, Router::new())
}

/// [`router`] with `extra` routes under the same layers (tests add failing routes).
fn app(state: Arc<AppState>, request_timeout: Duration, extra: Router<Arc<AppState>>) -> Router {
    Router::new()
        .merge(extra)
        .route("/healthz", get(healthz))
        // Without the database: the HTTP stack's own cost, the load benchmark's baseline.
        .route("/livez", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .merge(neptune::routes())
        .nest("/api/turnstile/v1", api::routes())
        .fallback(|| async {
            ApiError::request(StatusCode::NOT_FOUND, "NotFound", "no such route")
        })
        // The last layer added is the outermost.
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        .layer(CatchPanicLayer::custom(observe::panic_response))
        .layer(axum::middleware::from_fn(observe::json_errors))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            observe::observe,
        ))
        .with_state(state)
}

/// `GET /healthz`: 200 when the database answers, 503 when it does not (H9).
async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    let ok = state.blocking(|engine, _| engine.store.ping()).await;
    match ok {
        Ok(Ok(_)) => axum::Json(serde_json::json!({ "status": "ok" })).into_response(),
        Ok(Err(e)) => {
            // The cause (a host, a user, a driver's words) is for the operator's log,
            // not for an unauthenticated caller.
            if !state.quiet {
                eprintln!("turnstile: health check: the database does not answer: {e}");
            }
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({
                    "status": "unavailable",
                    "message": "the database does not answer",
                })),
            )
                .into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// `GET /metrics`: Prometheus text (H9).
async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// Runs `turnstile serve` until SIGTERM or SIGINT, then drains for at most 10 s.
pub fn serve(db: &Path, args: ServeArgs) -> Result<(), String> {
    if args.tls_cert.is_none() && !args.listen.ip().is_loopback() && !args.insecure_http {
        return Err(format!(
            "refusing plain HTTP on `{}`, which is not a loopback address: give --tls-cert and --tls-key, or --insecure-http",
            args.listen
        ));
    }
    if Engine::database_file(db).is_some_and(|file| !file.exists()) {
        return Err(format!(
            "database `{}` not found: create it with `turnstile init` or name another with --db",
            db.display()
        ));
    }
    let engine = Engine::open_with(
        db,
        Options {
            decision_cache: true,
            busy_timeout: std::time::Duration::from_millis(args.busy_timeout_ms),
            postgres_staleness: args
                .postgres_staleness_ms
                .map(std::time::Duration::from_millis),
            ..Options::default()
        },
    )
    .map_err(|e| e.to_string())?;
    let key = SigningKey::load_or_create(&engine).map_err(|e| e.to_string())?;
    let state = Arc::new(AppState {
        engine: Arc::new(engine),
        key,
        metrics: observe::Metrics::default(),
        pending: Arc::new(Semaphore::new(MAX_PENDING_CALLS)),
        tls: args.tls_cert.is_some(),
        public_url: args.public_url.clone(),
        quiet: args.quiet,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    // The engine is dropped here, after the runtime: dropping it writes the last token
    // uses and, on PostgreSQL, closes pooled connections with the driver's own
    // blocking calls, which must not run on the runtime's threads.
    let engine = state.engine.clone();
    let result = runtime.block_on(run(state, args));
    drop(runtime);
    drop(engine);
    result
}

async fn run(state: Arc<AppState>, args: ServeArgs) -> Result<(), String> {
    let app = router(
        state.clone(),
        Duration::from_secs(args.request_timeout.max(1)),
    );
    let listener = std::net::TcpListener::bind(args.listen)
        .map_err(|e| format!("cannot listen on `{}`: {e}", args.listen))?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let handle = axum_server::Handle::new();
    let scheme = if state.tls { "https" } else { "http" };
    println!("turnstile: listening on {scheme}://{addr}");
    use std::io::Write as _;
    let _ = std::io::stdout().flush();

    let shutdown = handle.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        eprintln!("turnstile: shutting down, finishing requests in flight (at most 10 s)");
        shutdown.graceful_shutdown(Some(Duration::from_secs(10)));
    });

    let service = app.into_make_service();
    let result = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .map_err(|e| format!("cannot load the TLS certificate or key: {e}"))?;
            let mut server = axum_server::from_tcp_rustls(listener, config).handle(handle);
            tune(server.http_builder());
            server.serve(service).await
        }
        _ => {
            let mut server = axum_server::from_tcp(listener).handle(handle);
            tune(server.http_builder());
            server.serve(service).await
        }
    };
    result.map_err(|e| e.to_string())?;
    eprintln!("turnstile: stopped");
    Ok(())
}

/// HTTP/1.1 only, bounded header buffers, and a deadline on reading headers (H6).
fn tune(builder: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>) {
    builder
        .http1()
        .max_buf_size(MAX_HEADER_BYTES)
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let term = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    fn state() -> Arc<AppState> {
        let engine = Engine::open_in_memory().expect("in-memory engine");
        let key = SigningKey::load_or_create(&engine).expect("key");
        Arc::new(AppState {
            engine: Arc::new(engine),
            key,
            metrics: observe::Metrics::default(),
            pending: Arc::new(Semaphore::new(MAX_PENDING_CALLS)),
            tls: false,
            public_url: None,
            quiet: true,
        })
    }

    async fn get_json(app: &Router, uri: &str) -> (u16, serde_json::Value) {
        let res = app
            .clone()
            .oneshot(
                axum::http::Request::builder()
                    .uri(uri)
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("infallible");
        let status = res.status().as_u16();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    async fn boom() -> &'static str {
        panic!("handler panicked")
    }

    #[tokio::test]
    async fn h6_a_panic_answers_json_500_and_the_server_keeps_serving() {
        let state = state();
        let extra = Router::new().route("/panic", get(boom)).route(
            "/panic-blocking",
            get(|State(s): State<Arc<AppState>>| async move {
                s.blocking(|_, _| -> u8 { panic!("engine call panicked") })
                    .await
                    .map(|_| "unreachable")
            }),
        );
        let app = app(state, Duration::from_secs(5), extra);
        for uri in ["/panic", "/panic-blocking"] {
            let (status, body) = get_json(&app, uri).await;
            assert_eq!(status, 500, "{uri}");
            assert_eq!(body["kind"], "internal", "{uri}: {body}");
            assert_eq!(body["message"], "internal server error");
        }
        let (status, body) = get_json(&app, "/healthz").await;
        assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    }
}

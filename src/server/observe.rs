//! What the server says about itself (SPEC H7, H9): one structured access-log line per
//! request, Prometheus metrics, and JSON bodies for the errors raised by layers.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;

tokio::task_local! {
    /// The principal a request authenticated as, for its access-log line.
    static PRINCIPAL: Arc<Mutex<Option<String>>>;
}

/// Records the authenticated principal of the current request for its log line.
pub fn set_principal(principal: String) {
    let _ = PRINCIPAL.try_with(|p| {
        if let Ok(mut slot) = p.lock() {
            *slot = Some(principal);
        }
    });
}

/// Latency buckets, seconds.
const BUCKETS: [f64; 14] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Request and decision counters.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), Histogram>>,
    allowed: AtomicU64,
    denied: AtomicU64,
    errors: AtomicU64,
}

impl Metrics {
    fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let mut map = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let h = map
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += seconds;
    }

    /// Counts one decision's outcome: `Some(allowed)`, or `None` for an error.
    pub fn decision(&self, outcome: Option<bool>) {
        let c = match outcome {
            Some(true) => &self.allowed,
            Some(false) => &self.denied,
            None => &self.errors,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP turnstile_http_requests_total HTTP requests by method, route and status.\n",
        );
        out.push_str("# TYPE turnstile_http_requests_total counter\n");
        let map = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        for ((m, r, s), h) in map.iter() {
            let _ = writeln!(
                out,
                "turnstile_http_requests_total{{method=\"{m}\",route=\"{}\",status=\"{s}\"}} {}",
                escape(r),
                h.count
            );
        }
        out.push_str("# HELP turnstile_http_request_duration_seconds HTTP request latency by method, route and status.\n");
        out.push_str("# TYPE turnstile_http_request_duration_seconds histogram\n");
        for ((m, r, s), h) in map.iter() {
            let labels = format!("method=\"{m}\",route=\"{}\",status=\"{s}\"", escape(r));
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "turnstile_http_request_duration_seconds_bucket{{{labels},le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "turnstile_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "turnstile_http_request_duration_seconds_sum{{{labels}}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "turnstile_http_request_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }
        drop(map);
        out.push_str("# HELP turnstile_decisions_total Decisions answered over HTTP by outcome.\n");
        out.push_str("# TYPE turnstile_decisions_total counter\n");
        for (name, c) in [
            ("allowed", &self.allowed),
            ("denied", &self.denied),
            ("error", &self.errors),
        ] {
            let _ = writeln!(
                out,
                "turnstile_decisions_total{{outcome=\"{name}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The access log and metrics of one request. The route is the matched template
/// (`/api/turnstile/v1/projects/{workspace}/{project}`), never the path itself, so no
/// name and no secret reaches the log; the principal is the authenticated one.
pub async fn observe(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let slot = Arc::new(Mutex::new(None));
    let res = PRINCIPAL.scope(slot.clone(), next.run(req)).await;
    let seconds = start.elapsed().as_secs_f64();
    let status = res.status().as_u16();
    state.metrics.observe(&method, &route, status, seconds);
    let principal = slot.lock().ok().and_then(|p| p.clone());
    let line = serde_json::json!({
        "ts": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "method": method,
        "route": route,
        "status": status,
        "latency_ms": (seconds * 1e6).round() / 1e3,
        "principal": principal,
    });
    if !state.quiet {
        eprintln!("{line}");
    }
    res
}

/// Gives every error response a JSON body: the layers (body limit, timeout, panic,
/// unknown route) answer with plain text of their own.
pub async fn json_errors(req: Request, next: Next) -> Response {
    if req.uri().to_string().len() > super::MAX_URI_BYTES {
        return ApiError::request(
            StatusCode::URI_TOO_LONG,
            "UriTooLong",
            "the request URI is too long",
        )
        .into_response();
    }
    let res = next.run(req).await;
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if (status.is_client_error() || status.is_server_error()) && !is_json {
        let (error, message) = match status {
            StatusCode::NOT_FOUND => ("NotFound", "no such route"),
            StatusCode::METHOD_NOT_ALLOWED => {
                ("MethodNotAllowed", "method not allowed on this route")
            }
            StatusCode::PAYLOAD_TOO_LARGE => ("PayloadTooLarge", "the request body is over 1 MiB"),
            StatusCode::REQUEST_TIMEOUT => ("Timeout", "the request took too long"),
            s if s.is_server_error() => ("Internal", "internal server error"),
            _ => ("InvalidRequest", "the request could not be read"),
        };
        let mut out = ApiError::request(status, error, message).into_response();
        for (k, v) in res.headers() {
            if k == header::ALLOW || k == header::RETRY_AFTER {
                out.headers_mut().insert(k.clone(), v.clone());
            }
        }
        return out;
    }
    res
}

/// The response to a panic in a handler: a JSON 500; the server keeps serving.
pub fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    ApiError::internal().into_response()
}

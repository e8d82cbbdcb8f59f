//! The admin HTTP API (axum): health, Prometheus metrics, and the operator's channel list.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use serde_json::json;

use crate::link::LinkStatus;

const DB_TIMEOUT: Duration = Duration::from_secs(2);

/// What the handlers read.
#[derive(Clone)]
pub struct AdminState {
    pub links: Vec<(String, Arc<LinkStatus>)>,
    pub store: mam_store::Store,
    pub metrics: Option<PrometheusHandle>,
}

/// The routes, without a server, so tests can call them with `oneshot`.
pub fn admin_router(state: AdminState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(render_metrics))
        .route("/channels", get(list_channels).post(create_channel))
        .route(
            "/channels/{name}/retention",
            get(get_retention).put(put_retention),
        )
        .with_state(state)
        .layer(
            tower::ServiceBuilder::new()
                .layer(axum::error_handling::HandleErrorLayer::new(
                    |_: tower::BoxError| async { StatusCode::REQUEST_TIMEOUT },
                ))
                .layer(tower::timeout::TimeoutLayer::new(Duration::from_secs(10))),
        )
}

/// 200 when every link is up and the database answers; 503 with the reason otherwise.
async fn health(State(s): State<AdminState>) -> Response {
    let links: serde_json::Map<String, serde_json::Value> = s
        .links
        .iter()
        .map(|(d, st)| (d.clone(), json!(st.up.load(Ordering::Relaxed))))
        .collect();
    let mut reasons: Vec<String> = s
        .links
        .iter()
        .filter(|(_, st)| !st.up.load(Ordering::Relaxed))
        .map(|(d, _)| format!("component link {d} is down"))
        .collect();
    let db = match tokio::time::timeout(DB_TIMEOUT, s.store.ping()).await {
        Ok(Ok(t)) => {
            metrics::histogram!("mixd_db_seconds").record(t.as_secs_f64());
            json!({"ok": true, "backend": s.store.backend(), "latency_ms": t.as_secs_f64() * 1e3})
        }
        Ok(Err(e)) => {
            reasons.push(format!("database error: {e}"));
            json!({"ok": false})
        }
        Err(_) => {
            reasons.push("database did not answer within 2 s".into());
            json!({"ok": false})
        }
    };
    let ok = reasons.is_empty();
    let body = json!({
        "status": if ok { "ok" } else { "unavailable" },
        "reason": reasons.join("; "),
        "links": links,
        "database": db,
    });
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn render_metrics(State(s): State<AdminState>) -> Response {
    match &s.metrics {
        Some(h) => ([("content-type", "text/plain; version=0.0.4")], h.render()).into_response(),
        None => (StatusCode::NOT_FOUND, "metrics are not enabled").into_response(),
    }
}

async fn list_channels(State(s): State<AdminState>) -> Response {
    let req = mam_store::PageRequest {
        max: 10_000,
        include_hidden: true,
        ..Default::default()
    };
    match s.store.channels_page(&req).await {
        Ok(p) => Json(json!({
            "count": p.count,
            "channels": p.items.iter().map(|c| json!({
                "name": c.name, "display_name": c.display_name,
                "description": c.description, "public": c.public,
            })).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

#[derive(Deserialize)]
struct CreateChannel {
    name: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    description: String,
    #[serde(default = "yes")]
    public: bool,
}

fn yes() -> bool {
    true
}

async fn create_channel(State(s): State<AdminState>, body: axum::body::Bytes) -> Response {
    let req: CreateChannel = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return problem(StatusCode::BAD_REQUEST, &format!("invalid JSON: {e}")),
    };
    // The name is a JID localpart on both domains: it must survive nodeprep unchanged.
    match jid::NodePart::new(&req.name) {
        Ok(n) if n.as_str() == req.name && !req.name.is_empty() => {}
        _ => {
            return problem(
                StatusCode::BAD_REQUEST,
                "name must be a valid, already normalised JID localpart",
            );
        }
    }
    let ch = mam_store::NewChannel {
        name: req.name,
        display_name: req.display_name,
        description: req.description,
        public: req.public,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default();
    match s.store.create_channel(&ch, now).await {
        Ok(()) => (StatusCode::CREATED, Json(json!({"name": ch.name}))).into_response(),
        Err(mam_store::StoreError::Exists(n)) => {
            problem(StatusCode::CONFLICT, &format!("channel {n} exists"))
        }
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// A retention rule in JSON: `null` = the service default, `0` = keep everything, `N` = the
/// limit (days, or entries per node).
fn rule_json(r: mam_store::Rule) -> serde_json::Value {
    match r {
        mam_store::Rule::Default => serde_json::Value::Null,
        mam_store::Rule::Keep => json!(0),
        mam_store::Rule::Limit(n) => json!(n),
    }
}

fn rule_of(v: Option<i64>) -> Result<mam_store::Rule, String> {
    match v {
        None => Ok(mam_store::Rule::Default),
        Some(0) => Ok(mam_store::Rule::Keep),
        Some(n) if n > 0 => Ok(mam_store::Rule::Limit(n)),
        Some(n) => Err(format!("{n} is negative")),
    }
}

async fn get_retention(
    State(s): State<AdminState>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Response {
    match s.store.retention(&name).await {
        Ok(Some(r)) => Json(json!({
            "days": rule_json(r.days),
            "messages": rule_json(r.messages),
        }))
        .into_response(),
        Ok(None) => problem(StatusCode::NOT_FOUND, &format!("no channel {name}")),
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

#[derive(Deserialize)]
struct RetentionBody {
    #[serde(default)]
    days: Option<i64>,
    #[serde(default)]
    messages: Option<i64>,
}

async fn put_retention(
    State(s): State<AdminState>,
    axum::extract::Path(name): axum::extract::Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let req: RetentionBody = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return problem(StatusCode::BAD_REQUEST, &format!("invalid JSON: {e}")),
    };
    let (days, messages) = match (rule_of(req.days), rule_of(req.messages)) {
        (Ok(d), Ok(m)) => (d, m),
        (Err(e), _) | (_, Err(e)) => return problem(StatusCode::BAD_REQUEST, &e),
    };
    let r = mam_store::ChannelRetention { days, messages };
    match s.store.set_retention(&name, r).await {
        Ok(true) => {
            Json(json!({"days": rule_json(days), "messages": rule_json(messages)})).into_response()
        }
        Ok(false) => problem(StatusCode::NOT_FOUND, &format!("no channel {name}")),
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn problem(code: StatusCode, reason: &str) -> Response {
    (code, Json(json!({"error": reason}))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn state(up: bool) -> (AdminState, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tmp");
        let url = format!("sqlite://{}", dir.path().join("a.db").display());
        let store = mam_store::Store::open(&url).await.expect("store");
        let st = Arc::new(LinkStatus::default());
        st.up.store(up, Ordering::Relaxed);
        let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
            .build_recorder()
            .handle();
        (
            AdminState {
                links: vec![("mix.localhost".into(), st)],
                store,
                metrics: Some(metrics),
            },
            dir,
        )
    }

    async fn call(s: AdminState, method: &str, uri: &str, body: &str) -> (StatusCode, String) {
        let res = admin_router(s)
            .oneshot(
                Request::builder()
                    .method(method)
                    .uri(uri)
                    .body(Body::from(body.to_owned()))
                    .expect("request"),
            )
            .await
            .expect("response");
        let code = res.status();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .expect("body");
        (code, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn health_ok_when_links_up() {
        let (s, _d) = state(true).await;
        let (code, body) = call(s, "GET", "/health", "").await;
        assert_eq!(code, StatusCode::OK, "{body}");
        assert!(body.contains("\"status\":\"ok\""));
    }

    #[tokio::test]
    async fn health_503_names_the_down_link() {
        let (s, _d) = state(false).await;
        let (code, body) = call(s, "GET", "/health", "").await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            body.contains("component link mix.localhost is down"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn channels_create_list_conflict_and_bad_names() {
        let (s, _d) = state(true).await;
        let (code, _) = call(
            s.clone(),
            "POST",
            "/channels",
            r#"{"name":"coven","display_name":"Coven"}"#,
        )
        .await;
        assert_eq!(code, StatusCode::CREATED);
        let (code, _) = call(s.clone(), "POST", "/channels", r#"{"name":"coven"}"#).await;
        assert_eq!(code, StatusCode::CONFLICT);
        for bad in [
            r#"{"name":"a@b"}"#,
            r#"{"name":"Upper"}"#,
            r#"{"name":""}"#,
            "not json",
        ] {
            let (code, _) = call(s.clone(), "POST", "/channels", bad).await;
            assert_eq!(code, StatusCode::BAD_REQUEST, "{bad}");
        }
        let (code, body) = call(s, "GET", "/channels", "").await;
        assert_eq!(code, StatusCode::OK);
        assert!(body.contains("\"Coven\""), "{body}");
    }

    #[tokio::test]
    async fn retention_per_channel_is_read_and_set() {
        let (s, _d) = state(true).await;
        call(s.clone(), "POST", "/channels", r#"{"name":"coven"}"#).await;
        let (code, body) = call(s.clone(), "GET", "/channels/coven/retention", "").await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(body, r#"{"days":null,"messages":null}"#);
        let (code, body) = call(
            s.clone(),
            "PUT",
            "/channels/coven/retention",
            r#"{"days":30,"messages":0}"#,
        )
        .await;
        assert_eq!(code, StatusCode::OK, "{body}");
        let (_, body) = call(s.clone(), "GET", "/channels/coven/retention", "").await;
        assert_eq!(body, r#"{"days":30,"messages":0}"#);
        let (code, _) = call(
            s.clone(),
            "PUT",
            "/channels/coven/retention",
            r#"{"days":-1}"#,
        )
        .await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        let (code, _) = call(s, "PUT", "/channels/nope/retention", r#"{}"#).await;
        assert_eq!(code, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn metrics_are_prometheus_text() {
        let (s, _d) = state(true).await;
        let (code, _) = call(s, "GET", "/metrics", "").await;
        assert_eq!(code, StatusCode::OK);
    }
}

//! Probes and observability: liveness (`/healthz`), readiness (`/readyz`: database reachable and
//! schema current), `/health/detailed` (database, migrations, queues, embedding provider),
//! `/metrics` (Prometheus), and the middleware that counts HTTP requests per route.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiError, ApiResult};
use crate::db::schema;
use crate::metrics::{metrics, render};
use crate::queue;

/// The process answers.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "alive")))]
pub async fn live() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The database answers and its schema is the one this binary expects.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, description = "ready"), (status = 503, description = "not ready")))]
pub async fn ready(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    sqlx::query("SELECT 1")
        .execute(&state.pool)
        .await
        .map_err(|e| ApiError::unavailable(format!("database unreachable: {e}")))?;
    let stored = schema::check(&state.pool, &state.settings.vector_schema)
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(Json(json!({
        "status": "ready",
        "schema_version": schema::expected_version(),
        "embedding_dimensions": stored.dimensions,
    })))
}

/// Remembers the last embedding-provider probe so health checks do not hammer (or bill) it.
#[derive(Default)]
pub struct ProviderProbe {
    last: Mutex<Option<(Instant, Result<f64, String>)>>,
}

const PROBE_TTL: Duration = Duration::from_secs(30);

impl ProviderProbe {
    async fn check(&self, state: &AppState) -> Result<f64, String> {
        if let Ok(guard) = self.last.lock()
            && let Some((at, result)) = guard.as_ref()
            && at.elapsed() < PROBE_TTL
        {
            return result.clone();
        }
        let started = Instant::now();
        let texts = ["ragdoll health check".to_string()];
        let result = match tokio::time::timeout(
            Duration::from_secs(5),
            crate::embed::embed_all(state.search.embedder.as_ref(), &texts, "probe"),
        )
        .await
        {
            Ok(Ok(_)) => Ok(started.elapsed().as_secs_f64() * 1000.0),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no answer within 5s".into()),
        };
        if let Ok(mut guard) = self.last.lock() {
            *guard = Some((Instant::now(), result.clone()));
        }
        result
    }
}

/// Every dependency, one by one; 503 when any is unhealthy.
#[utoipa::path(get, path = "/health/detailed", tag = "health",
    responses((status = 200, description = "all checks pass"), (status = 503, description = "a check failed")))]
pub async fn detailed(State(state): State<AppState>) -> Response {
    let started = Instant::now();
    let database = match sqlx::query("SELECT 1").execute(&state.pool).await {
        Ok(_) => json!({"ok": true, "latency_ms": started.elapsed().as_secs_f64() * 1000.0}),
        Err(e) => json!({"ok": false, "error": e.to_string()}),
    };
    let applied = schema::applied_version(&state.pool).await.ok().flatten();
    let migrations = match schema::check(&state.pool, &state.settings.vector_schema).await {
        Ok(_) => json!({"ok": true, "applied": applied, "expected": schema::expected_version()}),
        Err(e) => {
            json!({"ok": false, "applied": applied, "expected": schema::expected_version(), "error": e.to_string()})
        }
    };
    let queues = match queue::depth(&state.pool).await {
        Ok(rows) => {
            let mut by_queue = serde_json::Map::new();
            for q in queue::Queue::ALL {
                by_queue.insert(
                    q.as_str().into(),
                    json!({"queued": 0, "running": 0, "failed": 0}),
                );
            }
            for (q, status, n) in rows {
                if let Some(Value::Object(m)) = by_queue.get_mut(&q) {
                    m.insert(status, json!(n));
                }
            }
            json!({"ok": true, "depth": by_queue})
        }
        Err(e) => json!({"ok": false, "error": e.to_string()}),
    };
    let provider = match state.probe.check(&state).await {
        Ok(ms) => json!({"ok": true, "model": state.search.embedder.model(), "latency_ms": ms}),
        Err(e) => json!({"ok": false, "model": state.search.embedder.model(), "error": e}),
    };
    let healthy = [&database, &migrations, &queues, &provider]
        .iter()
        .all(|c| c["ok"] == true);
    let body = json!({
        "status": if healthy { "ok" } else { "degraded" },
        "checks": {"database": database, "migrations": migrations, "queues": queues, "embedding_provider": provider},
    });
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

/// Prometheus metrics; queue depth is sampled from the database at scrape time.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn prometheus(State(state): State<AppState>) -> Response {
    metrics_response(&state.pool).await
}

async fn metrics_response(pool: &sqlx::PgPool) -> Response {
    sample_queue_depth(pool).await;
    match render() {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        Err(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot render metrics: {e}"),
        )
        .into_response(),
    }
}

/// Sets `ragdoll_queue_depth` from the jobs table (zero for empty queue/status pairs).
pub async fn sample_queue_depth(pool: &sqlx::PgPool) {
    match queue::depth(pool).await {
        Ok(rows) => {
            let gauge = &metrics().queue_depth;
            for q in queue::Queue::ALL {
                for s in ["queued", "running", "failed"] {
                    gauge.with_label_values(&[q.as_str(), s]).set(0);
                }
            }
            for (q, s, n) in rows {
                gauge.with_label_values(&[&q, &s]).set(n);
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot sample queue depth"),
    }
}

/// Counts requests and their latency by method, matched route and status.
pub async fn track_http(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = req.method().to_string();
    let started = Instant::now();
    let resp = next.run(req).await;
    let m = metrics();
    m.http_requests
        .with_label_values(&[&method, &route, resp.status().as_str()])
        .inc();
    m.http_duration
        .with_label_values(&[&method, &route])
        .observe(started.elapsed().as_secs_f64());
    resp
}

/// The small HTTP surface of a worker process: `/healthz`, `/readyz` (database reachable) and
/// `/metrics`, so worker Deployments get probes and scraping like the API.
pub fn worker_router(pool: sqlx::PgPool) -> axum::Router {
    async fn ready(State(pool): State<sqlx::PgPool>) -> Response {
        match sqlx::query("SELECT 1").execute(&pool).await {
            Ok(_) => Json(json!({"status": "ready"})).into_response(),
            Err(e) => ApiError::unavailable(format!("database unreachable: {e}")).into_response(),
        }
    }
    async fn worker_metrics(State(pool): State<sqlx::PgPool>) -> Response {
        metrics_response(&pool).await
    }
    axum::Router::new()
        .route("/healthz", axum::routing::get(live))
        .route("/readyz", axum::routing::get(ready))
        .route("/metrics", axum::routing::get(worker_metrics))
        .with_state(pool)
}

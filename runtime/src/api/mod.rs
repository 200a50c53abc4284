//! The HTTP API (axum): routes, shared state, bearer-key authentication on `/v1/*`, request ids
//! and tracing. Handlers live in `documents` and `health`; errors in `error`.

pub mod documents;
pub mod error;
pub mod extract;
pub mod health;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::db::schema::VectorSchema;
use error::ApiError;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Settings the handlers need.
#[derive(Clone, Debug)]
pub struct ApiSettings {
    pub max_file_size: u64,
    pub max_attempts: i32,
    pub vector_schema: VectorSchema,
}

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub settings: Arc<ApiSettings>,
    /// SHA-256 digests of the accepted API keys; `None` disables authentication.
    pub key_digests: Option<Arc<Vec<[u8; 32]>>>,
}

impl AppState {
    pub fn new(pool: PgPool, settings: ApiSettings, api_keys: Option<Vec<String>>) -> Self {
        Self {
            pool,
            settings: Arc::new(settings),
            key_digests: api_keys.map(|keys| Arc::new(keys.iter().map(|k| digest(k)).collect())),
        }
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// Splits `RAGDOLL_API_KEYS` (comma-separated), dropping blanks.
pub fn parse_api_keys(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(String::from)
        .collect()
}

pub fn router(state: AppState) -> Router {
    // Room for multipart framing around the largest accepted file.
    let upload_limit = usize::try_from(state.settings.max_file_size)
        .unwrap_or(usize::MAX)
        .saturating_add(1 << 20);
    let v1 = Router::new()
        .route(
            "/documents",
            post(documents::create)
                .layer(DefaultBodyLimit::max(upload_limit))
                .get(documents::list),
        )
        .route(
            "/documents/{id}",
            get(documents::show)
                .patch(documents::update)
                .delete(documents::delete),
        )
        .route("/documents/{id}/reprocess", post(documents::reprocess))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .route("/healthz", get(health::live))
        .route("/readyz", get(health::ready))
        .nest("/v1", v1)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .with_state(state)
        .layer(
            tower::ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http().make_span_with(|req: &Request| {
                        let id = req
                            .headers()
                            .get(REQUEST_ID)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("-");
                        // Path only: query strings may carry user data.
                        tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %id)
                    }),
                )
                .layer(PropagateRequestIdLayer::new(REQUEST_ID)),
        )
}

async fn authenticate(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(keys) = &state.key_digests else {
        return Ok(next.run(req).await);
    };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    match presented {
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing API key: send `Authorization: Bearer <key>`",
        )),
        Some(key) if keys.contains(&digest(key)) => Ok(next.run(req).await),
        Some(_) => Err(ApiError::new(StatusCode::UNAUTHORIZED, "invalid API key")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_are_split_and_trimmed() {
        assert_eq!(parse_api_keys(" a, b ,,c"), vec!["a", "b", "c"]);
        assert!(parse_api_keys(" , ").is_empty());
    }
}

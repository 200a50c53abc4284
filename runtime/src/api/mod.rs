//! The HTTP API (axum): routes, shared state, bearer-key authentication on `/v1/*`, request ids,
//! tracing, per-route metrics, and the OpenAPI document generated from the handlers (utoipa) and
//! served at `/openapi.json`. Handlers live in `documents`, `search`, `admin` and `health`.

pub mod admin;
pub mod documents;
pub mod error;
pub mod extract;
pub mod health;
pub mod search;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::db::schema::VectorSchema;
use crate::search::SearchService;
use error::ApiError;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Settings the handlers need.
#[derive(Clone, Debug)]
pub struct ApiSettings {
    pub max_file_size: u64,
    /// Accepted document types; empty means all.
    pub allowed_file_types: Vec<crate::extract::DocumentType>,
    pub max_attempts: i32,
    pub vector_schema: VectorSchema,
}

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub settings: Arc<ApiSettings>,
    pub search: Arc<SearchService>,
    pub probe: Arc<health::ProviderProbe>,
    /// SHA-256 digests of the accepted API keys; `None` disables authentication.
    pub key_digests: Option<Arc<Vec<[u8; 32]>>>,
}

impl AppState {
    pub fn new(
        pool: PgPool,
        settings: ApiSettings,
        search: Arc<SearchService>,
        api_keys: Option<Vec<String>>,
    ) -> Self {
        Self {
            pool,
            settings: Arc::new(settings),
            search,
            probe: Arc::new(health::ProviderProbe::default()),
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

#[derive(OpenApi)]
#[openapi(
    info(title = "Ragdoll runtime API", description = "Document ingestion and retrieval on PostgreSQL + pgvector. \
        `/v1` routes require `Authorization: Bearer <key>`; errors are `application/problem+json`."),
    modifiers(&BearerAuth),
    tags((name = "documents"), (name = "search"), (name = "operations"), (name = "health"))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The router and the OpenAPI document describing it, built together from the same handlers.
pub fn router_and_openapi(state: AppState) -> (Router, utoipa::openapi::OpenApi) {
    // Room for multipart framing around the largest accepted file.
    let upload_limit = usize::try_from(state.settings.max_file_size)
        .unwrap_or(usize::MAX)
        .saturating_add(1 << 20);
    let (schemas, paths, upload) = routes!(documents::create, documents::list);
    let v1 = OpenApiRouter::new()
        .routes((
            schemas,
            paths,
            upload.layer(DefaultBodyLimit::max(upload_limit)),
        ))
        .routes(routes!(
            documents::show,
            documents::update,
            documents::delete
        ))
        .routes(routes!(documents::reprocess))
        .routes(routes!(search::search))
        .routes(routes!(search::context))
        .routes(routes!(search::enhance))
        .routes(routes!(admin::stats))
        .routes(routes!(admin::jobs))
        .routes(routes!(admin::retry))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::live))
        .routes(routes!(health::ready))
        .routes(routes!(health::detailed))
        .routes(routes!(health::prometheus))
        .merge(v1)
        .route_layer(middleware::from_fn(health::track_http))
        .split_for_parts();
    let spec = Arc::new(openapi.clone());
    let router = router
        .route("/openapi.json", get(move || async move { axum::Json(spec.as_ref().clone()) }))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .with_state(state)
        .layer(
            tower::ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(|req: &Request| {
                            let id = req
                                .headers()
                                .get(REQUEST_ID)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-");
                            // Method and path only: bodies, headers (keys) and query strings
                            // may carry user data and are never logged.
                            tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %id)
                        })
                        .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
                )
                .layer(PropagateRequestIdLayer::new(REQUEST_ID)),
        );
    (router, openapi)
}

pub fn router(state: AppState) -> Router {
    router_and_openapi(state).0
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

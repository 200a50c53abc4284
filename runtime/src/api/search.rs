//! `/v1/search`, `/v1/context`, `/v1/enhance`: retrieval for in-cluster callers.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::extract::ApiJson;
use crate::search::context::{self, Source};
use crate::search::{Filters, Mode, SearchError, SearchRequest, SearchResponse};

impl From<SearchError> for ApiError {
    fn from(e: SearchError) -> Self {
        match e {
            SearchError::Invalid(m) => ApiError::bad_request(m),
            SearchError::EmbeddingUnavailable(m) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, m)
            }
            SearchError::Database(e) => e.into(),
        }
    }
}

/// Semantic, full-text or hybrid search over the stored chunks.
#[utoipa::path(post, path = "/v1/search", tag = "search", request_body = SearchRequest,
    responses((status = 200, body = SearchResponse),
              (status = 400, description = "invalid request"),
              (status = 503, description = "the embedding provider is unavailable (semantic/hybrid)")),
    security(("bearer" = [])))]
pub async fn search(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<SearchRequest>,
) -> ApiResult<Json<SearchResponse>> {
    let search = state.search.validate(req)?;
    Ok(Json(state.search.run(&search).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextRequest {
    pub query: String,
    /// Chunks to consider (default 5).
    pub limit: Option<u32>,
    /// Character budget of the context (default 4000).
    pub max_chars: Option<usize>,
    #[serde(default)]
    pub mode: Mode,
    pub threshold: Option<f32>,
    #[serde(default)]
    pub filters: Filters,
}

#[derive(Serialize, ToSchema)]
pub struct ContextResponse {
    pub context: String,
    pub sources: Vec<Source>,
}

const DEFAULT_CONTEXT_LIMIT: u32 = 5;
const DEFAULT_MAX_CHARS: usize = 4000;
const MAX_CHARS_LIMIT: usize = 1_000_000;

async fn gather(
    state: &AppState,
    query: String,
    limit: Option<u32>,
    max_chars: Option<usize>,
    mode: Mode,
    threshold: Option<f32>,
    filters: Filters,
) -> ApiResult<(String, Vec<Source>)> {
    let max_chars = max_chars.unwrap_or(DEFAULT_MAX_CHARS);
    if max_chars == 0 || max_chars > MAX_CHARS_LIMIT {
        return Err(ApiError::bad_request(format!(
            "`max_chars` must be between 1 and {MAX_CHARS_LIMIT}"
        )));
    }
    let search = state.search.validate(SearchRequest {
        query,
        mode,
        limit: Some(limit.unwrap_or(DEFAULT_CONTEXT_LIMIT)),
        threshold,
        filters,
        group_by_document: false,
        weights: None,
        embedding: None,
    })?;
    let response = state.search.run(&search).await?;
    Ok(context::build(&response.results, max_chars))
}

/// The best matching chunks joined into one context string, with their sources.
#[utoipa::path(post, path = "/v1/context", tag = "search", request_body = ContextRequest,
    responses((status = 200, body = ContextResponse), (status = 400), (status = 503)),
    security(("bearer" = [])))]
pub async fn context(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<ContextRequest>,
) -> ApiResult<Json<ContextResponse>> {
    let (context, sources) = gather(
        &state,
        req.query,
        req.limit,
        req.max_chars,
        req.mode,
        req.threshold,
        req.filters,
    )
    .await?;
    Ok(Json(ContextResponse { context, sources }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnhanceRequest {
    pub prompt: String,
    /// Chunks of context to include (default 5).
    pub limit: Option<u32>,
    pub max_chars: Option<usize>,
    /// A template with `{{context}}` and `{{prompt}}` placeholders.
    pub template: Option<String>,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub filters: Filters,
}

#[derive(Serialize, ToSchema)]
pub struct EnhanceResponse {
    pub prompt: String,
    pub sources: Vec<Source>,
}

/// The prompt wrapped in a template together with the context retrieved for it.
#[utoipa::path(post, path = "/v1/enhance", tag = "search", request_body = EnhanceRequest,
    responses((status = 200, body = EnhanceResponse), (status = 400), (status = 503)),
    security(("bearer" = [])))]
pub async fn enhance(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<EnhanceRequest>,
) -> ApiResult<Json<EnhanceResponse>> {
    let template = req.template.as_deref().unwrap_or(context::DEFAULT_TEMPLATE);
    // Reject a bad template before spending a search on it.
    context::enhance(template, "", "").map_err(ApiError::bad_request)?;
    let (ctx, sources) = gather(
        &state,
        req.prompt.clone(),
        req.limit,
        req.max_chars,
        req.mode,
        None,
        req.filters,
    )
    .await?;
    let prompt = context::enhance(template, &ctx, &req.prompt).map_err(ApiError::bad_request)?;
    Ok(Json(EnhanceResponse { prompt, sources }))
}

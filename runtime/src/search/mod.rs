//! Retrieval: the search request and response types, their validation, and the service that
//! answers a search — result cache, query embedding (cached), one SQL query (`sql`), usage
//! accounting off the request path (`usage`) and metrics. Prompt context assembly is in
//! `context`.

pub mod cache;
pub mod context;
pub mod sql;
pub mod usage;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::config::SearchSettings;
use crate::embed::{EmbedError, Embedder};
use crate::extract::DocumentType;
use crate::metrics::metrics;
use cache::{QueryEmbeddingCache, ResultCache};
use usage::{SearchRecord, UsageRecorder};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Cosine similarity on the HNSW index.
    Semantic,
    /// `websearch_to_tsquery` on the stored tsvector, ranked with `ts_rank_cd`.
    Fulltext,
    /// Reciprocal rank fusion of the semantic and full-text lists.
    #[default]
    Hybrid,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Semantic => "semantic",
            Mode::Fulltext => "fulltext",
            Mode::Hybrid => "hybrid",
        }
    }
}

/// One value or a list of values.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(v) => vec![v],
            OneOrMany::Many(v) => v,
        }
    }
}

/// Keyword filter: documents having any (or all) of the keywords.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeywordFilter {
    pub any: Option<Vec<String>>,
    pub all: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Filters {
    /// A document type or a list of them (text, markdown, html, xml, pdf, docx, csv, json, yaml).
    #[schema(value_type = Option<Vec<String>>)]
    pub document_type: Option<OneOrMany<String>>,
    pub document_ids: Option<Vec<Uuid>>,
    /// JSON containment on document metadata (`metadata @> filter`).
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
    pub keywords: Option<KeywordFilter>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
}

/// Relative weights of the two lists in hybrid search.
#[derive(Clone, Copy, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Weights {
    pub semantic: f64,
    pub fulltext: f64,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// The question or keywords.
    pub query: String,
    #[serde(default)]
    pub mode: Mode,
    /// Results to return (default 10, at most the configured maximum).
    pub limit: Option<u32>,
    /// Minimum cosine similarity, in [-1, 1]; default: the configured threshold for semantic
    /// search, none for hybrid; ignored by full-text search.
    pub threshold: Option<f32>,
    #[serde(default)]
    pub filters: Filters,
    /// Return only the best chunk of each document.
    #[serde(default)]
    pub group_by_document: bool,
    pub weights: Option<Weights>,
    /// A precomputed query vector (of the configured dimension) used instead of embedding `query`.
    pub embedding: Option<Vec<f32>>,
}

/// A validated, normalised search: what runs, and (serialised) the result-cache key.
#[derive(Clone, Debug, Serialize)]
pub struct Search {
    pub query: String,
    pub mode: Mode,
    pub limit: u32,
    pub threshold: Option<f32>,
    pub group_by_document: bool,
    pub weights: (f64, f64),
    pub filters: ValidFilters,
    pub embedding: Option<Vec<f32>>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ValidFilters {
    pub document_types: Option<Vec<String>>,
    pub document_ids: Option<Vec<Uuid>>,
    pub metadata: Option<Value>,
    pub keywords_any: Option<Vec<String>>,
    pub keywords_all: Option<Vec<String>>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
}

impl ValidFilters {
    pub fn is_empty(&self) -> bool {
        self.document_types.is_none()
            && self.document_ids.is_none()
            && self.metadata.is_none()
            && self.keywords_any.is_none()
            && self.keywords_all.is_none()
            && self.created_after.is_none()
            && self.created_before.is_none()
    }

    /// The label used in metrics: the document types searched, or `all`.
    pub fn content_type(&self) -> String {
        self.document_types
            .as_ref()
            .map_or_else(|| "all".into(), |t| t.join(","))
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct SearchHit {
    pub chunk_id: i64,
    pub document_id: Uuid,
    pub title: String,
    pub location: String,
    pub document_type: String,
    pub content: String,
    pub chunk_index: i32,
    /// Ranking score: similarity (semantic), ts_rank_cd (full-text) or fused RRF score (hybrid),
    /// times the usage boost when enabled.
    pub score: f64,
    /// Cosine similarity to the query, when the chunk came from the semantic list.
    pub similarity: Option<f64>,
    /// The document's metadata.
    #[schema(value_type = Object)]
    pub metadata: Value,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SearchResponse {
    pub results: Vec<SearchHit>,
    pub total: usize,
    pub mode: Mode,
    pub took_ms: f64,
    /// Whether the results came from the result cache.
    pub cached: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    EmbeddingUnavailable(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

fn invalid(msg: impl Into<String>) -> SearchError {
    SearchError::Invalid(msg.into())
}

/// Validates and normalises a request against the settings and the embedding dimension.
pub fn validate(
    req: SearchRequest,
    s: &SearchSettings,
    dims: usize,
) -> Result<Search, SearchError> {
    // PostgreSQL text cannot hold NUL characters.
    let cleaned = req.query.replace('\0', " ");
    let query = cleaned.trim();
    if query.is_empty() {
        return Err(invalid("`query` must not be empty"));
    }
    let query: String = match query.char_indices().nth(s.max_query_chars) {
        Some((cut, _)) => {
            tracing::debug!(max = s.max_query_chars, "query truncated");
            query[..cut].to_string()
        }
        None => query.to_string(),
    };
    let limit = req.limit.unwrap_or(10.min(s.max_results));
    if limit == 0 || limit > s.max_results {
        return Err(invalid(format!(
            "`limit` must be between 1 and {}",
            s.max_results
        )));
    }
    if let Some(t) = req.threshold
        && !(-1.0..=1.0).contains(&t)
    {
        return Err(invalid(
            "`threshold` is a cosine similarity and must be between -1 and 1",
        ));
    }
    let threshold = match req.mode {
        Mode::Semantic => Some(req.threshold.unwrap_or(s.similarity_threshold)),
        Mode::Hybrid => req.threshold,
        Mode::Fulltext => None,
    };
    let weights = match req.weights {
        None => (1.0, 1.0),
        Some(w) => {
            let ok = |x: f64| x.is_finite() && x >= 0.0;
            if !ok(w.semantic) || !ok(w.fulltext) || w.semantic + w.fulltext == 0.0 {
                return Err(invalid("`weights` must be non-negative and not both zero"));
            }
            (w.semantic, w.fulltext)
        }
    };
    if let Some(v) = &req.embedding {
        if v.len() != dims {
            return Err(invalid(format!(
                "`embedding` has {} dimensions; this deployment uses {dims}",
                v.len()
            )));
        }
        if v.iter().any(|x| !x.is_finite()) {
            return Err(invalid("`embedding` contains a non-finite value"));
        }
    }
    Ok(Search {
        query,
        mode: req.mode,
        limit,
        threshold,
        group_by_document: req.group_by_document,
        weights,
        filters: validate_filters(req.filters)?,
        embedding: req.embedding,
    })
}

fn non_empty<T>(field: &str, v: Option<Vec<T>>) -> Result<Option<Vec<T>>, SearchError> {
    match v {
        Some(v) if v.is_empty() => Err(invalid(format!(
            "`filters.{field}` must not be an empty list"
        ))),
        other => Ok(other),
    }
}

fn validate_filters(f: Filters) -> Result<ValidFilters, SearchError> {
    let document_types = f
        .document_type
        .map(|t| {
            t.into_vec()
                .into_iter()
                .map(|s| {
                    s.parse::<DocumentType>()
                        .map(|t| t.as_str().to_string())
                        .map_err(invalid)
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let lower = |v: Option<Vec<String>>| {
        v.map(|k| k.into_iter().map(|s| s.trim().to_lowercase()).collect())
    };
    let (any, all) = match f.keywords {
        None => (None, None),
        Some(k) => {
            if k.any.is_none() && k.all.is_none() {
                return Err(invalid("`filters.keywords` needs `any` or `all`"));
            }
            (lower(k.any), lower(k.all))
        }
    };
    if let (Some(a), Some(b)) = (f.created_after, f.created_before)
        && a >= b
    {
        return Err(invalid(
            "`filters.created_after` must be earlier than `filters.created_before`",
        ));
    }
    Ok(ValidFilters {
        document_types: non_empty("document_type", document_types)?,
        document_ids: non_empty("document_ids", f.document_ids)?,
        metadata: f.metadata.map(Value::Object),
        keywords_any: non_empty("keywords.any", any)?,
        keywords_all: non_empty("keywords.all", all)?,
        created_after: f.created_after,
        created_before: f.created_before,
    })
}

/// Answers searches. Cheap to share: clone the `Arc`.
pub struct SearchService {
    pub pool: PgPool,
    pub embedder: Arc<dyn Embedder>,
    pub settings: SearchSettings,
    pub text_search_config: String,
    pub query_cache: QueryEmbeddingCache,
    pub results: ResultCache,
    pub usage: Arc<UsageRecorder>,
}

impl SearchService {
    pub fn new(pool: PgPool, embedder: Arc<dyn Embedder>, settings: SearchSettings) -> Self {
        Self {
            query_cache: QueryEmbeddingCache::new(
                settings.embedding_cache_max_entries,
                Duration::from_secs(settings.embedding_cache_ttl_secs),
            ),
            results: ResultCache::new(
                settings.cache_max_entries,
                Duration::from_secs(settings.cache_ttl_secs),
            ),
            usage: Arc::new(UsageRecorder::new(settings.track_searches)),
            text_search_config: settings.text_search_config.clone(),
            pool,
            embedder,
            settings,
        }
    }

    pub fn validate(&self, req: SearchRequest) -> Result<Search, SearchError> {
        validate(req, &self.settings, self.embedder.dimensions())
    }

    /// Runs a validated search: result cache, then query embedding, then one SQL query.
    pub async fn run(&self, search: &Search) -> Result<SearchResponse, SearchError> {
        let started = Instant::now();
        // The key is only worth building when results are cached at all.
        let key = self
            .results
            .enabled()
            .then(|| serde_json::to_string(search).unwrap_or_default());
        let (mut response, cached) = match key.as_deref().and_then(|k| self.results.get(k)) {
            Some(hit) => (hit, true),
            None => {
                let generation = self.results.generation();
                let ranking = match search.mode {
                    Mode::Fulltext => sql::Ranking::Fulltext,
                    Mode::Semantic => sql::Ranking::Semantic(self.query_vector(search).await?),
                    Mode::Hybrid => sql::Ranking::Hybrid(self.query_vector(search).await?),
                };
                let hits = sql::run(
                    &self.pool,
                    search,
                    ranking,
                    &self.text_search_config,
                    &self.settings,
                )
                .await?;
                let response = SearchResponse {
                    total: hits.len(),
                    results: hits,
                    mode: search.mode,
                    took_ms: 0.0,
                    cached: false,
                };
                if let Some(key) = key {
                    self.results.insert(key, &response, generation);
                }
                (response, false)
            }
        };
        let elapsed = started.elapsed();
        response.took_ms = elapsed.as_secs_f64() * 1000.0;
        response.cached = cached;
        metrics()
            .search_duration
            .with_label_values(&[search.mode.as_str(), &search.filters.content_type()])
            .observe(elapsed.as_secs_f64());
        self.usage
            .returned(response.results.iter().map(|h| h.chunk_id));
        self.usage.searched(|| SearchRecord {
            query: search.query.clone(),
            mode: search.mode.as_str(),
            filters: serde_json::to_value(&search.filters).unwrap_or(Value::Null),
            result_count: response.total as i32,
            top_score: response.results.first().map(|h| h.score),
            took_ms: response.took_ms,
            cached,
        });
        Ok(response)
    }

    async fn query_vector(&self, search: &Search) -> Result<pgvector::Vector, SearchError> {
        match &search.embedding {
            Some(v) => Ok(pgvector::Vector::from(v.clone())),
            None => self
                .embed_query(&search.query)
                .await
                .map(pgvector::Vector::from),
        }
    }

    /// The query's embedding, from the cache or the provider (with a deadline).
    pub async fn embed_query(&self, query: &str) -> Result<Vec<f32>, SearchError> {
        let key = format!("{}\u{0}{query}", self.embedder.model());
        if let Some(v) = self.query_cache.get(&key) {
            return Ok(v.as_ref().clone());
        }
        let deadline = Duration::from_millis(self.settings.query_embedding_timeout_ms);
        let texts = [query.to_string()];
        let result = tokio::time::timeout(
            deadline,
            crate::embed::embed_all(self.embedder.as_ref(), &texts, "query"),
        )
        .await;
        let unavailable = |detail: String| {
            SearchError::EmbeddingUnavailable(format!(
                "the embedding provider cannot embed the query right now ({detail}); semantic and \
                 hybrid search are unavailable, full-text search (mode \"fulltext\") still works"
            ))
        };
        let mut vectors = match result {
            Err(_) => {
                return Err(unavailable(format!(
                    "no answer within {}ms",
                    deadline.as_millis()
                )));
            }
            Ok(Err(
                e @ (EmbedError::Unavailable(_) | EmbedError::Rejected(_) | EmbedError::Config(_)),
            )) => {
                return Err(unavailable(e.to_string()));
            }
            Ok(Ok(v)) => v,
        };
        let v = vectors
            .pop()
            .ok_or_else(|| unavailable("empty answer".into()))?;
        self.query_cache.insert(key, v.clone());
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> SearchRequest {
        serde_json::from_value(v).unwrap()
    }

    fn check(v: Value) -> Result<Search, SearchError> {
        validate(req(v), &SearchSettings::default(), 4)
    }

    #[test]
    fn defaults() {
        let s = check(serde_json::json!({"query": "  hello  "})).unwrap();
        assert_eq!(
            (s.query.as_str(), s.mode, s.limit, s.threshold),
            ("hello", Mode::Hybrid, 10, None)
        );
        let s = check(serde_json::json!({"query": "x", "mode": "semantic"})).unwrap();
        assert_eq!(s.threshold, Some(0.7));
        let s =
            check(serde_json::json!({"query": "x", "mode": "fulltext", "threshold": 0.9})).unwrap();
        assert_eq!(s.threshold, None);
    }

    #[test]
    fn bounds_are_named() {
        let err = |v| check(v).unwrap_err().to_string();
        assert!(err(serde_json::json!({"query": " "})).contains("must not be empty"));
        assert!(err(serde_json::json!({"query": "x", "limit": 0})).contains("between 1 and 50"));
        assert!(err(serde_json::json!({"query": "x", "limit": 51})).contains("between 1 and 50"));
        assert!(
            err(serde_json::json!({"query": "x", "threshold": 1.5})).contains("between -1 and 1")
        );
        assert!(
            err(serde_json::json!({"query": "x", "embedding": [1.0]}))
                .contains("1 dimensions; this deployment uses 4")
        );
        assert!(
            err(serde_json::json!({"query": "x", "filters": {"document_type": "exe"}}))
                .contains("unknown document_type")
        );
        assert!(
            err(serde_json::json!({"query": "x", "filters": {"keywords": {}}}))
                .contains("needs `any` or `all`")
        );
        assert!(
            err(serde_json::json!({"query": "x", "weights": {"semantic": 0, "fulltext": 0}}))
                .contains("not both zero")
        );
        assert!(
            serde_json::from_value::<SearchRequest>(
                serde_json::json!({"query": "x", "mode": "fuzzy"})
            )
            .is_err()
        );
        assert!(
            serde_json::from_value::<SearchRequest>(
                serde_json::json!({"query": "x", "filters": {"colour": 1}})
            )
            .is_err()
        );
    }

    #[test]
    fn long_queries_are_truncated_at_a_char_boundary() {
        let s = SearchSettings {
            max_query_chars: 3,
            ..Default::default()
        };
        let v = validate(req(serde_json::json!({"query": "ééééé"})), &s, 4).unwrap();
        assert_eq!(v.query, "ééé");
    }

    #[test]
    fn filters_are_normalised() {
        let s = check(serde_json::json!({"query": "x", "filters": {
            "document_type": "PDF", "keywords": {"any": [" Rust "]}, "metadata": {"team": "a"}}}))
        .unwrap();
        assert_eq!(s.filters.document_types, Some(vec!["pdf".to_string()]));
        assert_eq!(s.filters.keywords_any, Some(vec!["rust".to_string()]));
        assert_eq!(s.filters.content_type(), "pdf");
    }
}

//! Operational endpoints: `/v1/stats` (documents, chunks, jobs, index sizes, caches),
//! `/v1/jobs` (filter by queue and status) and `/v1/jobs/{id}/retry`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiPath, ApiQuery};
use crate::queue::{self, JobRow, Queue};

#[derive(Serialize, ToSchema)]
pub struct Stats {
    /// Documents by status.
    pub documents_by_status: BTreeMap<String, i64>,
    /// Documents by type.
    pub documents_by_type: BTreeMap<String, i64>,
    pub documents: i64,
    pub chunks: i64,
    /// Jobs by queue, then by status.
    pub jobs: BTreeMap<String, BTreeMap<String, i64>>,
    /// Sizes in bytes of the tables and indexes that hold the data.
    pub sizes: BTreeMap<String, i64>,
    pub embedding_model: String,
    pub embedding_dimensions: u32,
}

/// Counts of documents, chunks and jobs, and storage sizes.
#[utoipa::path(get, path = "/v1/stats", tag = "operations",
    responses((status = 200, body = Stats)), security(("bearer" = [])))]
pub async fn stats(State(state): State<AppState>) -> ApiResult<Json<Stats>> {
    let pool = &state.pool;
    let pairs = |rows: Vec<(String, i64)>| rows.into_iter().collect::<BTreeMap<_, _>>();
    let by_status = pairs(
        sqlx::query_as("SELECT status, count(*) FROM documents GROUP BY status")
            .fetch_all(pool)
            .await?,
    );
    let by_type = pairs(
        sqlx::query_as("SELECT document_type, count(*) FROM documents GROUP BY document_type")
            .fetch_all(pool)
            .await?,
    );
    let chunks: i64 = sqlx::query_scalar("SELECT count(*) FROM chunks")
        .fetch_one(pool)
        .await?;
    let job_rows: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT queue, status, count(*) FROM jobs GROUP BY queue, status")
            .fetch_all(pool)
            .await?;
    let mut jobs: BTreeMap<String, BTreeMap<String, i64>> = Queue::ALL
        .iter()
        .map(|q| (q.as_str().to_string(), BTreeMap::new()))
        .collect();
    for (q, s, n) in job_rows {
        jobs.entry(q).or_default().insert(s, n);
    }
    let sizes = pairs(
        sqlx::query_as(
            "SELECT c.relname::text, pg_total_relation_size(c.oid) FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = current_schema() AND c.relname = ANY($1)",
        )
        .bind(vec![
            "documents",
            "document_blobs",
            "contents",
            "chunks",
            "jobs",
            "searches",
            "chunks_embedding_hnsw_idx",
            "chunks_content_tsv_idx",
        ])
        .fetch_all(pool)
        .await?,
    );
    Ok(Json(Stats {
        documents: by_status.values().sum(),
        documents_by_status: by_status,
        documents_by_type: by_type,
        chunks,
        jobs,
        sizes,
        embedding_model: state.search.embedder.model().to_string(),
        embedding_dimensions: state.settings.vector_schema.dimensions,
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct JobsQuery {
    /// processing, embeddings, analysis or default
    queue: Option<String>,
    /// queued, running, succeeded or failed
    status: Option<String>,
    /// Page size (1-500, default 50).
    limit: Option<i64>,
    /// Jobs with a smaller id than this (the last id of the previous page).
    before: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct JobsPage {
    pub jobs: Vec<JobRow>,
    pub next_before: Option<i64>,
}

const JOB_STATUSES: [&str; 4] = ["queued", "running", "succeeded", "failed"];

/// Jobs, newest first.
#[utoipa::path(get, path = "/v1/jobs", tag = "operations", params(JobsQuery),
    responses((status = 200, body = JobsPage), (status = 400)), security(("bearer" = [])))]
pub async fn jobs(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<JobsQuery>,
) -> ApiResult<Json<JobsPage>> {
    let queue = q
        .queue
        .as_deref()
        .map(str::parse::<Queue>)
        .transpose()
        .map_err(ApiError::bad_request)?;
    if let Some(s) = &q.status
        && !JOB_STATUSES.contains(&s.as_str())
    {
        return Err(ApiError::bad_request(format!(
            "unknown job status `{s}` (known: {})",
            JOB_STATUSES.join(", ")
        )));
    }
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request("`limit` must be between 1 and 500"));
    }
    let jobs = queue::list(&state.pool, queue, q.status.as_deref(), q.before, limit).await?;
    let next_before = (jobs.len() as i64 == limit)
        .then(|| jobs.last().map(|j| j.id))
        .flatten();
    Ok(Json(JobsPage { jobs, next_before }))
}

/// Queues a failed job again with fresh attempts.
#[utoipa::path(post, path = "/v1/jobs/{id}/retry", tag = "operations",
    params(("id" = i64, Path, description = "job id")),
    responses((status = 202, body = JobRow), (status = 404), (status = 409, description = "the job has not failed")),
    security(("bearer" = [])))]
pub async fn retry(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<(StatusCode, Json<JobRow>)> {
    if queue::retry_failed(&state.pool, id).await? {
        let job = queue::get(&state.pool, id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("job {id}")))?;
        return Ok((StatusCode::ACCEPTED, Json(job)));
    }
    match queue::get(&state.pool, id).await? {
        None => Err(ApiError::not_found(format!("job {id}"))),
        Some(job) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "job {id} is {}; only failed jobs can be retried",
                job.status
            ),
        )),
    }
}

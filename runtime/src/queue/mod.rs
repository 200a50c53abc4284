//! The job queue, in PostgreSQL: enqueue, claim (`FOR UPDATE SKIP LOCKED`), heartbeat, complete,
//! retry with exponential backoff and jitter, fail, release, and reaping of jobs whose worker died.
//! The worker loop that drives these lives in `worker`.

pub mod worker;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

/// Postgres NOTIFY channel on which the queue name is published when a job becomes claimable.
pub const NOTIFY_CHANNEL: &str = "ragdoll_jobs";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Queue {
    Processing,
    Embeddings,
    Analysis,
    Default,
}

impl Queue {
    pub const ALL: [Queue; 4] = [
        Queue::Processing,
        Queue::Embeddings,
        Queue::Analysis,
        Queue::Default,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Queue::Processing => "processing",
            Queue::Embeddings => "embeddings",
            Queue::Analysis => "analysis",
            Queue::Default => "default",
        }
    }
}

impl fmt::Display for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Queue {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Queue::ALL
            .into_iter()
            .find(|q| q.as_str() == s.trim())
            .ok_or_else(|| {
                format!("unknown queue `{s}` (known: processing, embeddings, analysis, default)")
            })
    }
}

/// A job to insert.
#[derive(Clone, Debug)]
pub struct NewJob {
    pub queue: Queue,
    pub kind: &'static str,
    pub payload: serde_json::Value,
    pub document_id: Option<Uuid>,
    pub max_attempts: i32,
}

/// A claimed job.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Job {
    pub id: i64,
    pub queue: String,
    pub kind: String,
    pub payload: serde_json::Value,
    pub document_id: Option<Uuid>,
    /// Attempts including the current one.
    pub attempts: i32,
    pub max_attempts: i32,
}

/// Inserts a job; with a `document_id`, a second queued job of the same kind is a no-op.
/// Returns the new job id, or `None` when an identical job was already queued.
pub async fn enqueue<'e>(
    ex: impl PgExecutor<'e>,
    job: &NewJob,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO jobs (queue, kind, payload, document_id, max_attempts) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (document_id, kind) WHERE status = 'queued' AND document_id IS NOT NULL \
         DO NOTHING RETURNING id",
    )
    .bind(job.queue.as_str())
    .bind(job.kind)
    .bind(&job.payload)
    .bind(job.document_id)
    .bind(job.max_attempts)
    .fetch_optional(ex)
    .await
}

/// Claims the next runnable job of `queue`: a queued job that is due, or a running job whose
/// visibility timeout expired (its worker died) and that still has attempts left.
pub async fn claim(
    pool: &PgPool,
    queue: Queue,
    worker_id: &str,
    visibility: Duration,
) -> Result<Option<Job>, sqlx::Error> {
    sqlx::query_as::<_, Job>(
        "WITH next AS ( \
             SELECT id FROM jobs \
             WHERE queue = $1 AND ( \
                   (status = 'queued' AND run_at <= now()) \
                OR (status = 'running' AND locked_until < now() AND attempts < max_attempts)) \
             ORDER BY run_at, id \
             LIMIT 1 \
             FOR UPDATE SKIP LOCKED) \
         UPDATE jobs j SET status = 'running', attempts = j.attempts + 1, locked_by = $2, \
             locked_until = now() + make_interval(secs => $3), updated_at = now() \
         FROM next WHERE j.id = next.id \
         RETURNING j.id, j.queue, j.kind, j.payload, j.document_id, j.attempts, j.max_attempts",
    )
    .bind(queue.as_str())
    .bind(worker_id)
    .bind(visibility.as_secs_f64())
    .fetch_optional(pool)
    .await
}

/// Extends the lock of a running job. Returns false when the job is no longer ours (it was
/// reclaimed after a timeout, or deleted with its document).
pub async fn heartbeat(
    pool: &PgPool,
    job_id: i64,
    worker_id: &str,
    visibility: Duration,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE jobs SET locked_until = now() + make_interval(secs => $3), updated_at = now() \
         WHERE id = $1 AND locked_by = $2 AND status = 'running'",
    )
    .bind(job_id)
    .bind(worker_id)
    .bind(visibility.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn complete(pool: &PgPool, job_id: i64, worker_id: &str) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE jobs SET status = 'succeeded', finished_at = now(), updated_at = now(), \
             locked_by = NULL, locked_until = NULL \
         WHERE id = $1 AND locked_by = $2 AND status = 'running'",
    )
    .bind(job_id)
    .bind(worker_id)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Puts the job back in the queue to run at `run_at`, keeping the error.
pub async fn retry_later(
    pool: &PgPool,
    job_id: i64,
    worker_id: &str,
    error: &str,
    delay: Duration,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE jobs SET status = 'queued', run_at = now() + make_interval(secs => $4), \
             last_error = $3, locked_by = NULL, locked_until = NULL, updated_at = now() \
         WHERE id = $1 AND locked_by = $2 AND status = 'running'",
    )
    .bind(job_id)
    .bind(worker_id)
    .bind(error)
    .bind(delay.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Marks the job failed for good, keeping the error.
pub async fn fail(
    pool: &PgPool,
    job_id: i64,
    worker_id: &str,
    error: &str,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE jobs SET status = 'failed', last_error = $3, finished_at = now(), \
             locked_by = NULL, locked_until = NULL, updated_at = now() \
         WHERE id = $1 AND locked_by = $2 AND status = 'running'",
    )
    .bind(job_id)
    .bind(worker_id)
    .bind(error)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Gives a job back without counting the attempt (graceful shutdown before it finished).
pub async fn release(pool: &PgPool, job_id: i64, worker_id: &str) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE jobs SET status = 'queued', attempts = greatest(attempts - 1, 0), run_at = now(), \
             locked_by = NULL, locked_until = NULL, updated_at = now() \
         WHERE id = $1 AND locked_by = $2 AND status = 'running'",
    )
    .bind(job_id)
    .bind(worker_id)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Fails running jobs whose lock expired and that have no attempts left (their worker died on
/// the last attempt). Returns them so their owners (e.g. documents) can be marked failed too.
pub async fn reap_expired(pool: &PgPool, queue: Queue) -> Result<Vec<Job>, sqlx::Error> {
    sqlx::query_as::<_, Job>(
        "UPDATE jobs SET status = 'failed', finished_at = now(), updated_at = now(), \
             last_error = coalesce(last_error || '; ', '') || 'worker ' || coalesce(locked_by, '?') \
                 || ' stopped responding during the last attempt (visibility timeout expired)', \
             locked_by = NULL, locked_until = NULL \
         WHERE id IN (SELECT id FROM jobs WHERE queue = $1 AND status = 'running' \
                          AND locked_until < now() AND attempts >= max_attempts \
                      FOR UPDATE SKIP LOCKED) \
         RETURNING id, queue, kind, payload, document_id, attempts, max_attempts",
    )
    .bind(queue.as_str())
    .fetch_all(pool)
    .await
}

/// Sets a failed job back to queued with fresh attempts (manual retry).
pub async fn retry_failed<'e>(ex: impl PgExecutor<'e>, job_id: i64) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE jobs SET status = 'queued', attempts = 0, run_at = now(), finished_at = NULL, \
             updated_at = now() WHERE id = $1 AND status = 'failed'",
    )
    .bind(job_id)
    .execute(ex)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Exponential backoff with full jitter on the upper half: attempt 1 → [base/2, base],
/// attempt 2 → [base, 2·base], …, capped at `max`.
pub fn backoff(attempt: i32, base: Duration, max: Duration) -> Duration {
    let exp = attempt.clamp(1, 30) as u32 - 1;
    let ceiling = base.saturating_mul(2u32.saturating_pow(exp)).min(max);
    let half = ceiling / 2;
    let jitter = rand::rng().random_range(0.0..=1.0);
    half + half.mul_f64(jitter)
}

/// A summary row of the jobs table, for status endpoints.
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct JobRow {
    pub id: i64,
    pub queue: String,
    pub kind: String,
    pub document_id: Option<Uuid>,
    pub status: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub last_error: Option<String>,
    pub run_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

const JOB_COLUMNS: &str = "id, queue, kind, document_id, status, attempts, max_attempts, \
    last_error, run_at, created_at, finished_at";

pub async fn jobs_for_document(
    pool: &PgPool,
    document_id: Uuid,
) -> Result<Vec<JobRow>, sqlx::Error> {
    sqlx::query_as::<_, JobRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE document_id = $1 ORDER BY id"
    )))
    .bind(document_id)
    .fetch_all(pool)
    .await
}

pub async fn get(pool: &PgPool, id: i64) -> Result<Option<JobRow>, sqlx::Error> {
    sqlx::query_as::<_, JobRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// Jobs newest first, optionally of one queue and status, older than `before`.
pub async fn list(
    pool: &PgPool,
    queue: Option<Queue>,
    status: Option<&str>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<JobRow>, sqlx::Error> {
    sqlx::query_as::<_, JobRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE ($1::text IS NULL OR queue = $1) \
         AND ($2::text IS NULL OR status = $2) AND ($3::int8 IS NULL OR id < $3) \
         ORDER BY id DESC LIMIT $4"
    )))
    .bind(queue.map(Queue::as_str))
    .bind(status)
    .bind(before)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Job counts per queue and status for everything not yet succeeded.
pub async fn depth(pool: &PgPool) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT queue, status, count(*) FROM jobs WHERE status <> 'succeeded' GROUP BY queue, status",
    )
    .fetch_all(pool)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_round_trip() {
        for q in Queue::ALL {
            assert_eq!(q.as_str().parse::<Queue>(), Ok(q));
        }
        assert!(
            "sidekiq"
                .parse::<Queue>()
                .unwrap_err()
                .contains("unknown queue")
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(1000);
        let max = Duration::from_secs(10);
        for _ in 0..100 {
            let b1 = backoff(1, base, max);
            assert!(b1 >= Duration::from_millis(500) && b1 <= base, "{b1:?}");
            let b3 = backoff(3, base, max);
            assert!(
                b3 >= Duration::from_secs(2) && b3 <= Duration::from_secs(4),
                "{b3:?}"
            );
            let b20 = backoff(20, base, max);
            assert!(b20 >= Duration::from_secs(5) && b20 <= max, "{b20:?}");
        }
    }
}

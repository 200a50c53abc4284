//! The Postgres job queue on its own: exactly-once claiming under competition, retries with
//! backoff, permanent failures, the visibility timeout, reaping, graceful shutdown, NOTIFY
//! wake-ups and per-document de-duplication.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use ragdoll::config::QueueSettings;
use ragdoll::db::schema::{self, VectorSchema};
use ragdoll::queue::worker::{self, JobError, JobHandler, WorkerConfig};
use ragdoll::queue::{self, Job, NewJob, Queue};
use serde_json::json;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// Runs jobs as their payload says: `fail_times` retryable failures first, `permanent`, `sleep_ms`.
#[derive(Default)]
struct Scripted {
    runs: Mutex<Vec<(i64, Instant)>>,
    failed: Mutex<Vec<(i64, String)>>,
}

impl JobHandler for Scripted {
    async fn handle(&self, job: &Job) -> Result<(), JobError> {
        self.runs.lock().unwrap().push((job.id, Instant::now()));
        if let Some(ms) = job.payload["sleep_ms"].as_u64() {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if job.payload["permanent"] == true {
            return Err(JobError::Permanent("cannot ever work".into()));
        }
        let fail_times = job.payload["fail_times"].as_i64().unwrap_or(0);
        if i64::from(job.attempts) <= fail_times {
            return Err(JobError::Retryable(format!("boom {}", job.attempts)));
        }
        Ok(())
    }
    async fn on_failed(&self, job: &Job, error: &str) {
        self.failed
            .lock()
            .unwrap()
            .push((job.id, error.to_string()));
    }
}

async fn migrated() -> (TestDb, PgPool) {
    let db = TestDb::create().await;
    let pool = db.pool().await;
    schema::migrate(
        &pool,
        &VectorSchema {
            dimensions: 8,
            model: "hash-v1".into(),
            hnsw_m: 16,
            hnsw_ef_construction: 64,
            text_search_config: "english".into(),
        },
    )
    .await
    .unwrap();
    (db, pool)
}

fn settings() -> QueueSettings {
    QueueSettings {
        max_attempts: 3,
        visibility_timeout_secs: 30,
        backoff_base_ms: 200,
        backoff_max_ms: 2000,
        poll_interval_ms: 50,
        shutdown_grace_secs: 5,
    }
}

async fn push(pool: &PgPool, payload: serde_json::Value, max_attempts: i32) -> i64 {
    queue::enqueue(
        pool,
        &NewJob {
            queue: Queue::Default,
            kind: "test",
            payload,
            document_id: None,
            max_attempts,
        },
    )
    .await
    .unwrap()
    .unwrap()
}

fn start(
    pool: &PgPool,
    handler: Arc<Scripted>,
    s: QueueSettings,
    slots: usize,
    id: &str,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let token = CancellationToken::new();
    let cfg = WorkerConfig {
        queues: vec![(Queue::Default, slots)],
        settings: s,
        worker_id: id.into(),
    };
    let h = tokio::spawn(worker::run(pool.clone(), handler, cfg, token.clone()));
    (token, h)
}

async fn status_of(pool: &PgPool, id: i64) -> (String, i32, Option<String>) {
    sqlx::query_as("SELECT status, attempts, last_error FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn wait_until(pool: &PgPool, sql: &'static str, want: i64, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let n: i64 = sqlx::query_scalar(sql).fetch_one(pool).await.unwrap();
        if n == want {
            return;
        }
        assert!(Instant::now() < deadline, "`{sql}` is {n}, expected {want}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_job_runs_exactly_once_across_competing_workers() {
    let (_db, pool) = migrated().await;
    for i in 0..300 {
        push(&pool, json!({ "n": i }), 3).await;
    }
    let h = Arc::new(Scripted::default());
    let (t1, w1) = start(&pool, h.clone(), settings(), 4, "worker-a");
    let (t2, w2) = start(&pool, h.clone(), settings(), 4, "worker-b");
    wait_until(
        &pool,
        "SELECT count(*) FROM jobs WHERE status = 'succeeded'",
        300,
        60,
    )
    .await;
    t1.cancel();
    t2.cancel();
    let _ = tokio::join!(w1, w2);
    let mut ids: Vec<i64> = h.runs.lock().unwrap().iter().map(|(id, _)| *id).collect();
    assert_eq!(ids.len(), 300, "no job ran twice");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_back_off_and_give_up_with_the_last_error() {
    let (_db, pool) = migrated().await;
    let recovers = push(&pool, json!({ "fail_times": 2 }), 3).await;
    let never = push(&pool, json!({ "fail_times": 99 }), 3).await;
    let permanent = push(&pool, json!({ "permanent": true }), 3).await;
    let h = Arc::new(Scripted::default());
    let (t, w) = start(&pool, h.clone(), settings(), 2, "w");
    wait_until(
        &pool,
        "SELECT count(*) FROM jobs WHERE status IN ('succeeded', 'failed')",
        3,
        30,
    )
    .await;
    t.cancel();
    w.await.unwrap();

    assert_eq!(status_of(&pool, recovers).await.0, "succeeded");
    assert_eq!(status_of(&pool, recovers).await.1, 3);
    let (status, attempts, err) = status_of(&pool, never).await;
    assert_eq!((status.as_str(), attempts), ("failed", 3));
    assert_eq!(err.as_deref(), Some("boom 3 (gave up after 3 attempts)"));
    let (status, attempts, err) = status_of(&pool, permanent).await;
    assert_eq!(
        (status.as_str(), attempts, err.as_deref()),
        ("failed", 1, Some("cannot ever work"))
    );

    // on_failed ran once per failed job, never for the one that recovered.
    let mut failed: Vec<i64> = h.failed.lock().unwrap().iter().map(|(id, _)| *id).collect();
    failed.sort();
    assert_eq!(failed, vec![never, permanent]);

    // Exponential backoff: ≥ base/2 before the 2nd attempt, ≥ base before the 3rd.
    let runs: Vec<Instant> = h
        .runs
        .lock()
        .unwrap()
        .iter()
        .filter(|(id, _)| *id == never)
        .map(|(_, t)| *t)
        .collect();
    assert_eq!(runs.len(), 3);
    assert!(
        runs[1] - runs[0] >= Duration::from_millis(100),
        "{:?}",
        runs[1] - runs[0]
    );
    assert!(
        runs[2] - runs[1] >= Duration::from_millis(200),
        "{:?}",
        runs[2] - runs[1]
    );

    // A failed job can be retried by hand with fresh attempts.
    assert!(queue::retry_failed(&pool, never).await.unwrap());
    assert_eq!(status_of(&pool, never).await.0, "queued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_workers_job_runs_again_after_the_visibility_timeout() {
    let (_db, pool) = migrated().await;
    let orphan = push(&pool, json!({}), 3).await;
    let last_chance = push(&pool, json!({}), 1).await;
    // A worker claims both and dies without a word.
    for _ in 0..2 {
        queue::claim(&pool, Queue::Default, "ghost", Duration::from_secs(1))
            .await
            .unwrap()
            .unwrap();
    }
    let mut s = settings();
    s.visibility_timeout_secs = 1;
    let h = Arc::new(Scripted::default());
    let (t, w) = start(&pool, h.clone(), s, 2, "rescuer");
    wait_until(
        &pool,
        "SELECT count(*) FROM jobs WHERE status IN ('succeeded', 'failed')",
        2,
        30,
    )
    .await;
    t.cancel();
    w.await.unwrap();
    let (status, attempts, _) = status_of(&pool, orphan).await;
    assert_eq!(
        (status.as_str(), attempts),
        ("succeeded", 2),
        "ran again, counted as a second attempt"
    );
    // The job with no attempts left is reaped: failed, with the reason, and reported once.
    let (status, _, err) = status_of(&pool, last_chance).await;
    assert_eq!(status, "failed");
    assert!(err.unwrap().contains("ghost stopped responding"));
    assert_eq!(h.failed.lock().unwrap().len(), 1);
    assert!(h.runs.lock().unwrap().iter().all(|(id, _)| *id == orphan));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_short_jobs_and_releases_long_ones() {
    let (_db, pool) = migrated().await;
    let long = push(&pool, json!({ "sleep_ms": 20_000 }), 3).await;
    let short = push(&pool, json!({ "sleep_ms": 600 }), 3).await;
    let mut s = settings();
    s.shutdown_grace_secs = 2;
    let h = Arc::new(Scripted::default());
    let (t, w) = start(&pool, h.clone(), s, 2, "w");
    wait_until(
        &pool,
        "SELECT count(*) FROM jobs WHERE status = 'running'",
        2,
        10,
    )
    .await;
    let stopping = Instant::now();
    t.cancel();
    w.await.unwrap();
    assert!(stopping.elapsed() < Duration::from_secs(10));
    assert_eq!(
        status_of(&pool, short).await.0,
        "succeeded",
        "finished within the grace period"
    );
    let (status, attempts, _) = status_of(&pool, long).await;
    assert_eq!(
        (status.as_str(), attempts),
        ("queued", 0),
        "released without using up an attempt"
    );
    let locked: Option<String> = sqlx::query_scalar("SELECT locked_by FROM jobs WHERE id = $1")
        .bind(long)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(locked, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_wakes_idle_workers_without_waiting_for_the_poll() {
    let (_db, pool) = migrated().await;
    let mut s = settings();
    s.poll_interval_ms = 60_000;
    let h = Arc::new(Scripted::default());
    let (t, w) = start(&pool, h.clone(), s, 1, "w");
    tokio::time::sleep(Duration::from_millis(500)).await; // idle, waiting
    let enqueued = Instant::now();
    push(&pool, json!({}), 3).await;
    wait_until(
        &pool,
        "SELECT count(*) FROM jobs WHERE status = 'succeeded'",
        1,
        20,
    )
    .await;
    assert!(
        enqueued.elapsed() < Duration::from_secs(20),
        "picked up long before the 60 s poll"
    );
    t.cancel();
    w.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_jobs_are_deduplicated_per_document_and_kind() {
    let (_db, pool) = migrated().await;
    let doc = uuid::Uuid::now_v7();
    sqlx::query(
        "INSERT INTO documents (id, location, title, document_type, mime_type, content_hash, byte_size) \
         VALUES ($1, 'x', 'x', 'text', 'text/plain', 'h', 1)",
    )
    .bind(doc)
    .execute(&pool)
    .await
    .unwrap();
    let job = NewJob {
        queue: Queue::Embeddings,
        kind: "embed_document",
        payload: json!({}),
        document_id: Some(doc),
        max_attempts: 3,
    };
    assert!(queue::enqueue(&pool, &job).await.unwrap().is_some());
    assert!(
        queue::enqueue(&pool, &job).await.unwrap().is_none(),
        "same kind already queued"
    );
    let other = NewJob {
        kind: "analyze_document",
        ..job.clone()
    };
    assert!(queue::enqueue(&pool, &other).await.unwrap().is_some());
    // Once the queued one is claimed, a new one may be queued (e.g. a reprocess).
    queue::claim(&pool, Queue::Embeddings, "w", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert!(queue::enqueue(&pool, &job).await.unwrap().is_some());
}

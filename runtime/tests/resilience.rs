//! Failures of the environment, not of the input: the database restarts mid-run, a worker process
//! is killed with SIGKILL in the middle of a job. No job is lost, no chunk duplicated.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::openai_mock::{OpenAiMock, Reply};
use common::*;
use ragdoll::config::EmbeddingProviderKind;
use reqwest::StatusCode;
use uuid::Uuid;

/// Polls the database directly (the API may be briefly unavailable) until every document is
/// processed or failed.
async fn wait_settled(pool: &sqlx::PgPool, ids: &[Uuid], secs: u64) -> Vec<(Uuid, String, i32)> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let rows: Result<Vec<(Uuid, String, i32)>, _> = sqlx::query_as(
            "SELECT id, status, chunk_count FROM documents WHERE id = ANY($1) \
             AND (status = 'failed' OR (status = 'processed' AND analysis_status <> 'pending'))",
        )
        .bind(ids)
        .fetch_all(pool)
        .await;
        if let Ok(rows) = rows
            && rows.len() == ids.len()
        {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "documents did not settle in {secs}s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn assert_no_duplicate_chunks(pool: &sqlx::PgPool, ids: &[Uuid]) {
    let (rows, distinct): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT (document_id, chunk_index)) FROM chunks WHERE document_id = ANY($1)",
    )
    .bind(ids)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(rows, distinct);
    let mismatched: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM documents d WHERE d.id = ANY($1) AND d.chunk_count <> \
         (SELECT count(*) FROM chunks c WHERE c.document_id = d.id)",
    )
    .bind(ids)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(mismatched, 0, "chunk_count matches stored chunks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_restart_mid_run_loses_no_job() {
    // A Postgres of its own, so restarting it does not disturb other tests.
    let port = "55433";
    let admin = pg_script("up", &[("RAGDOLL_PG_PORT", port)]);
    let db = TestDb::create_on(&admin).await;
    let mock = OpenAiMock::start(16).await;
    mock.set_default(Reply::Delay(Duration::from_millis(150)));
    let base = mock.base_url.clone();
    let app = TestApp::start_on(
        db,
        move |s| {
            s.embedding.provider = Some(EmbeddingProviderKind::Openai);
            s.embedding.base_url = base;
            s.embedding.dimensions = 16;
            s.embedding.batch_size = 2;
            s.ingestion.chunk_size = 200;
            s.ingestion.chunk_overlap = 0;
        },
        true,
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..12 {
        let text: String = (0..120).map(|w| format!("doc{i} word{w} ")).collect();
        let (status, body) = app.upload(&format!("doc{i}.txt"), text.into_bytes()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        ids.push(uuid_of(&body));
    }
    // Let work get under way, then restart the server under the workers' feet.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let in_flight: i64 =
        sqlx::query_scalar("SELECT count(*) FROM jobs WHERE status <> 'succeeded'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(
        in_flight > 0,
        "the restart must happen while jobs are pending"
    );
    let restart =
        tokio::task::spawn_blocking(move || pg_script("restart", &[("RAGDOLL_PG_PORT", port)]));
    restart.await.unwrap();

    let rows = wait_settled(&app.pool, &ids, 120).await;
    for (id, status, chunks) in &rows {
        assert_eq!(status, "processed", "document {id}");
        assert!(*chunks > 0);
    }
    let not_done: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE status <> 'succeeded'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(not_done, 0, "every job finished");
    assert_no_duplicate_chunks(&app.pool, &ids).await;
    app.stop().await;
    pg_script("down", &[("RAGDOLL_PG_PORT", port)]);
}

fn spawn_worker(db_url: &str, mock: &OpenAiMock) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ragdoll"))
        .args(["worker", "--queues", "processing,embeddings,analysis"])
        .env("DATABASE_URL", db_url)
        .env("RAGDOLL_EMBEDDING_PROVIDER", "openai")
        .env("RAGDOLL_EMBEDDING_BASE_URL", &mock.base_url)
        .env("RAGDOLL_EMBEDDING_DIMENSIONS", mock.dims().to_string())
        .env("RAGDOLL_EMBEDDING_TIMEOUT_SECS", "120")
        .env("RAGDOLL_CHUNK_SIZE", "200")
        .env("RAGDOLL_CHUNK_OVERLAP", "20")
        .env("RAGDOLL_JOB_VISIBILITY_TIMEOUT_SECS", "2")
        .env("RAGDOLL_JOB_POLL_INTERVAL_MS", "100")
        .env("RAGDOLL_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ragdoll worker")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_mid_job_is_replaced_without_duplicate_chunks() {
    let mock = OpenAiMock::start(24).await;
    // The first embedding request hangs: the worker will be killed while waiting on it.
    mock.script([Reply::Delay(Duration::from_secs(600))]);
    let base = mock.base_url.clone();
    let db = TestDb::create().await;
    let app = TestApp::start_on(
        db,
        move |s| {
            s.embedding.provider = Some(EmbeddingProviderKind::Openai);
            s.embedding.base_url = base;
            s.embedding.dimensions = 24;
            s.ingestion.chunk_size = 200;
            s.ingestion.chunk_overlap = 20;
        },
        false, // API only: the workers are separate processes
    )
    .await;
    let text: String = (0..150).map(|w| format!("alpha{w} beta{w} ")).collect();
    let (status, body) = app.upload("long.txt", text.into_bytes()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let id = uuid_of(&body);

    let mut first = spawn_worker(&app.db.url, &mock);
    let deadline = Instant::now() + Duration::from_secs(30);
    while mock.request_count() == 0 {
        assert!(
            Instant::now() < deadline,
            "the worker never asked for embeddings"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.kill().expect("SIGKILL the worker"); // std's kill() is SIGKILL on Unix
    first.wait().unwrap();
    let held: (String, i32) = sqlx::query_as(
        "SELECT status, attempts FROM jobs WHERE document_id = $1 AND kind = 'embed_document'",
    )
    .bind(id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        held,
        ("running".to_string(), 1),
        "the dead worker still holds the job"
    );

    let mut second = spawn_worker(&app.db.url, &mock);
    let rows = wait_settled(&app.pool, &[id], 60).await;
    assert_eq!(rows[0].1, "processed");
    let (status, attempts): (String, i32) = sqlx::query_as(
        "SELECT status, attempts FROM jobs WHERE document_id = $1 AND kind = 'embed_document'",
    )
    .bind(id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!((status.as_str(), attempts), ("succeeded", 2));
    assert_no_duplicate_chunks(&app.pool, &[id]).await;

    // SIGTERM stops the worker cleanly.
    let pid = second.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(s) = second.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "worker ignored SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "{exit:?}");
    app.stop().await;
}

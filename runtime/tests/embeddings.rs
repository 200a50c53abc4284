//! The `openai` embedding provider against a local server speaking the OpenAI wire format:
//! request shape, batching, recovery from 5xx, giving up cleanly, Retry-After, bad responses.

mod common;

use std::time::{Duration, Instant};

use common::openai_mock::{OpenAiMock, Reply};
use common::*;
use ragdoll::config::EmbeddingProviderKind;
use reqwest::StatusCode;

async fn app_with(mock: &OpenAiMock, max_retries: u32, batch: usize) -> TestApp {
    let base = mock.base_url.clone();
    let dims = mock.dims() as u32;
    TestApp::start_with(move |s| {
        s.embedding.provider = Some(EmbeddingProviderKind::Openai);
        s.embedding.model = Some("text-embedding-3-small".into());
        s.embedding.base_url = base;
        s.embedding.api_key = Some("sk-test-123".into());
        s.embedding.dimensions = dims;
        s.embedding.max_retries = max_retries;
        s.embedding.batch_size = batch;
        s.embedding.timeout_secs = 5;
        s.ingestion.chunk_size = 200;
        s.ingestion.chunk_overlap = 20;
    })
    .await
}

fn long_text(words: usize) -> Vec<u8> {
    (0..words)
        .map(|i| format!("word{i} "))
        .collect::<String>()
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_have_the_openai_shape_and_are_batched() {
    let mock = OpenAiMock::start(64).await;
    let app = app_with(&mock, 0, 4).await;
    let (status, body) = app.upload("doc.txt", long_text(300)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let d = app.wait_done(body["id"].as_str().unwrap()).await;
    assert_eq!(d["status"], "processed", "{d}");
    let chunks = d["chunk_count"].as_u64().unwrap() as usize;
    assert!(chunks > 8, "{chunks}");
    let requests = mock.requests();
    assert_eq!(
        requests.len(),
        chunks.div_ceil(4),
        "one request per batch of 4"
    );
    for r in &requests {
        assert_eq!(r["model"], "text-embedding-3-small");
        assert_eq!(r["encoding_format"], "float");
        assert_eq!(
            r["dimensions"], 64,
            "text-embedding-3 models are asked for the configured size"
        );
        let n = r["input"].as_array().unwrap().len();
        assert!((1..=4).contains(&n));
    }
    assert!(
        mock.auth_headers()
            .iter()
            .all(|h| h.as_deref() == Some("Bearer sk-test-123"))
    );
    let model: String = sqlx::query_scalar("SELECT DISTINCT embedding_model FROM chunks")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(model, "text-embedding-3-small");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_then_recovery_retries_the_job_and_processes() {
    let mock = OpenAiMock::start(32).await;
    // No retries inside a request: each 500 fails the job attempt, the queue retries the job.
    mock.script([Reply::Status(500), Reply::Status(503)]);
    let app = app_with(&mock, 0, 64).await;
    let (_, body) = app.upload("doc.txt", long_text(50)).await;
    let d = app.wait_done(body["id"].as_str().unwrap()).await;
    assert_eq!(d["status"], "processed", "{d}");
    let embed_job = job_of(&d, "embed_document");
    assert_eq!(embed_job["attempts"], 3, "{embed_job}");
    assert_eq!(embed_job["status"], "succeeded");
    assert!(
        embed_job["last_error"].as_str().unwrap().contains("503"),
        "{embed_job}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_keeps_failing_fails_the_document_visibly_with_no_chunks() {
    let mock = OpenAiMock::start(32).await;
    mock.set_default(Reply::Status(500));
    let app = app_with(&mock, 1, 64).await;
    let (_, body) = app.upload("doc.txt", long_text(50)).await;
    let id = uuid_of(&body);
    let d = app.wait_done(&id.to_string()).await;
    assert_eq!(d["status"], "failed", "{d}");
    let err = d["error"].as_str().unwrap();
    assert!(
        err.starts_with("embedding failed:")
            && err.contains("500")
            && err.contains("gave up after 3 attempts"),
        "{err}"
    );
    assert_eq!(d["chunk_count"], 0);
    assert_eq!(
        count(
            &app.pool,
            "SELECT count(*) FROM chunks WHERE document_id = $1",
            id
        )
        .await,
        0
    );
    // 3 job attempts × (1 try + 1 retry) requests; never a made-up vector.
    assert_eq!(mock.request_count(), 6);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_honoured_and_bad_answers_are_errors() {
    let mock = OpenAiMock::start(32).await;
    mock.script([Reply::RateLimited(1)]);
    let app = app_with(&mock, 2, 64).await;
    let started = Instant::now();
    let (_, body) = app.upload("doc.txt", long_text(20)).await;
    let d = app.wait_done(body["id"].as_str().unwrap()).await;
    assert_eq!(d["status"], "processed", "{d}");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited for Retry-After"
    );
    assert_eq!(mock.request_count(), 2);
    let embed_job = job_of(&d, "embed_document");
    assert_eq!(embed_job["attempts"], 1, "retried inside one attempt");

    // Wrong dimension: permanent, fails at once with the reason.
    mock.script([Reply::WrongDimensions]);
    let (_, body) = app
        .upload("dims.txt", b"some other words here".to_vec())
        .await;
    let d = app.wait_done(body["id"].as_str().unwrap()).await;
    assert_eq!(d["status"], "failed");
    assert!(
        d["error"]
            .as_str()
            .unwrap()
            .contains("33-dimensional vectors but 32 dimensions are configured"),
        "{d}"
    );

    // 401: permanent, with a hint.
    mock.script([Reply::Status(401)]);
    let (_, body) = app.upload("auth.txt", b"yet another text".to_vec()).await;
    let d = app.wait_done(body["id"].as_str().unwrap()).await;
    assert_eq!(d["status"], "failed");
    assert!(
        d["error"]
            .as_str()
            .unwrap()
            .contains("check RAGDOLL_EMBEDDING_API_KEY"),
        "{d}"
    );
    let embed_job = job_of(&d, "embed_document");
    assert_eq!(embed_job["attempts"], 1);

    // A body that is not an embeddings response: retried, then processed once the server is sane.
    mock.script([Reply::Garbage]);
    let (_, body) = app
        .upload("garbage.txt", b"garbage first then fine".to_vec())
        .await;
    let d = app.wait_done(body["id"].as_str().unwrap()).await;
    assert_eq!(d["status"], "processed", "{d}");
    app.stop().await;
}

//! Changing the embedding model or dimension of an existing database: refused at start-up with
//! instructions, and `ragdoll reembed` rebuilds every vector in the background while full-text
//! search keeps working.

mod common;

use std::process::Command;

use common::openai_mock::OpenAiMock;
use common::*;
use ragdoll::config::EmbeddingProviderKind;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_changes_are_refused_then_reembedded() {
    let app = TestApp::start().await; // hash-v1, 384 dimensions
    let mut ids = Vec::new();
    for f in ["bicycle-history.txt", "planets.csv", "sourdough.html"] {
        let (_, body) = app.upload_fixture(&format!("documents/{f}")).await;
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        app.wait_done(id).await;
    }
    let db = app.stop().await;
    let url = db.url.clone();

    // Another dimension, or another model of the same dimension: refused, pointing at reembed.
    let mock = OpenAiMock::start(16).await;
    let mut openai = test_settings(&url);
    openai.embedding.provider = Some(EmbeddingProviderKind::Openai);
    openai.embedding.base_url = mock.base_url.clone();
    openai.embedding.dimensions = 16;
    let err = ragdoll::app::open_database(&openai, true)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("dimension mismatch")
            && err.contains("384")
            && err.contains("ragdoll reembed"),
        "{err}"
    );
    let mut other_model = test_settings(&url);
    other_model.embedding.model = Some("hash-v2".into());
    let err = ragdoll::app::open_database(&other_model, false)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model mismatch")
            && err.contains("hash-v1")
            && err.contains("ragdoll reembed"),
        "{err}"
    );

    // The command switches the database and queues the work.
    let out = Command::new(env!("CARGO_BIN_EXE_ragdoll"))
        .arg("reembed")
        .env("DATABASE_URL", &url)
        .env("RAGDOLL_EMBEDDING_PROVIDER", "openai")
        .env("RAGDOLL_EMBEDDING_BASE_URL", &mock.base_url)
        .env("RAGDOLL_EMBEDDING_DIMENSIONS", "16")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("re-embedding 3 document(s): hash-v1 (384 dimensions) -> text-embedding-3-small (16 dimensions)"), "{text}");

    // Until workers run, vectors are empty and full-text search still answers.
    let app = TestApp::start_on(
        db,
        |s| {
            s.embedding.provider = Some(EmbeddingProviderKind::Openai);
            s.embedding.base_url = mock.base_url.clone();
            s.embedding.dimensions = 16;
        },
        false,
    )
    .await;
    let empty: i64 = app
        .scalar("SELECT count(*) FROM chunks WHERE embedding IS NULL")
        .await;
    assert!(empty >= 3, "{empty}");
    let (status, answer) = json_of(
        app.post("/v1/search")
            .json(&json!({"query": "saturn rings", "mode": "fulltext"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["total"], 1);
    let db = app.stop().await;

    // Workers with the new settings rebuild every vector.
    let app = TestApp::start_on(
        db,
        |s| {
            s.embedding.provider = Some(EmbeddingProviderKind::Openai);
            s.embedding.base_url = mock.base_url.clone();
            s.embedding.dimensions = 16;
        },
        true,
    )
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let left: i64 = app
            .scalar(
                "SELECT count(*) FROM jobs WHERE kind = 'embed_document' AND status <> 'succeeded'",
            )
            .await;
        if left == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "re-embedding did not finish"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (nulls, dims, models): (i64, i32, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE embedding IS NULL), max(vector_dims(embedding)), count(DISTINCT embedding_model) FROM chunks",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!((nulls, dims, models), (0, 16, 1));
    let (status, answer) = json_of(
        app.post("/v1/search")
            .json(&json!({"query": "saturn rings", "mode": "semantic", "threshold": -1.0}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(answer["total"].as_u64().unwrap() >= 3);
    app.stop().await;
}

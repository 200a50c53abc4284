//! End-to-end ingestion against the real local Postgres: every fixture type goes from upload to
//! searchable chunks; duplicates, reprocessing, deletion, listing and updates behave.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const FIXTURES: &[(&str, &str)] = &[
    ("documents/bicycle-history.txt", "text"),
    ("documents/creme-brulee-latin1.txt", "text"),
    ("documents/pgvector-operations.md", "markdown"),
    ("documents/sourdough.html", "html"),
    ("documents/library-catalog.xml", "xml"),
    ("documents/energy-report.pdf", "pdf"),
    ("documents/onboarding-handbook.docx", "docx"),
    ("documents/planets.csv", "csv"),
    ("documents/product-catalog.json", "json"),
    ("documents/search-service.yaml", "yaml"),
];

async fn text_of(app: &TestApp, id: uuid::Uuid) -> String {
    sqlx::query_scalar("SELECT content FROM contents WHERE document_id = $1 AND kind = 'text'")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .expect("extracted text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_type_is_extracted_chunked_and_embedded() {
    let app = TestApp::start().await;
    let mut ids = Vec::new();
    for (rel, kind) in FIXTURES {
        let (status, body) = app.upload_fixture(rel).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{rel}: {body}");
        assert_eq!(body["status"], "pending");
        assert_eq!(body["duplicate"], false);
        ids.push((rel, kind, uuid_of(&body)));
    }
    for (rel, kind, id) in &ids {
        let d = app.wait_done(&id.to_string()).await;
        assert_eq!(d["status"], "processed", "{rel}: {d}");
        assert_eq!(d["document_type"], **kind, "{rel}");
        let chunks = d["chunk_count"].as_i64().unwrap_or(0);
        assert!(chunks >= 1, "{rel} has no chunks");
        let stored = count(
            &app.pool,
            "SELECT count(*) FROM chunks WHERE document_id = $1",
            *id,
        )
        .await;
        assert_eq!(stored, chunks, "{rel}: chunk_count matches rows");
        // Without an LLM provider, analysis is extractive, and says so.
        assert_eq!(d["analysis_status"], "completed", "{rel}: {d}");
        assert_eq!(d["analysis_method"], "extractive", "{rel}");
        let keywords = d["keywords"].as_array().unwrap();
        assert!(
            !keywords.is_empty() && keywords.len() <= 20,
            "{rel}: {keywords:?}"
        );
        let chars = d["metadata"]["extraction"]["characters"].as_u64().unwrap();
        if chars >= 300 {
            assert!(
                d["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{rel} has a summary"
            );
        } else {
            assert!(d["summary"].is_null(), "{rel} is too short for a summary");
            assert!(
                d["analysis_note"]
                    .as_str()
                    .unwrap()
                    .contains("summary skipped"),
                "{rel}"
            );
        }
        assert!(d["error"].is_null());
        // Every stage ran exactly once and succeeded.
        let kinds: Vec<&str> = d["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            ["process_document", "embed_document", "analyze_document"],
            "{rel}"
        );
        assert!(
            d["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .all(|j| j["status"] == "succeeded")
        );
    }
    let by_name = |name: &str| {
        ids.iter()
            .find(|(r, _, _)| r.contains(name))
            .map(|(_, _, id)| *id)
            .unwrap()
    };

    // Titles come from the documents themselves where they have one.
    let title = |id: uuid::Uuid| {
        let app = &app;
        async move {
            app.document(&id.to_string()).await["title"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    assert_eq!(
        title(by_name("sourdough")).await,
        "Baking Sourdough Bread at Home"
    );
    assert_eq!(
        title(by_name("pgvector")).await,
        "Operating PostgreSQL with pgvector"
    );
    assert_eq!(
        title(by_name("onboarding")).await,
        "Employee Onboarding Handbook"
    );
    assert_eq!(
        title(by_name("energy")).await,
        "Renewable Energy Quarterly Report"
    );
    assert_eq!(title(by_name("bicycle")).await, "bicycle-history");

    // Extracted text is what a reader sees.
    let html = text_of(&app, by_name("sourdough")).await;
    assert!(
        html.contains("500 g bread flour")
            && !html.contains("analytics")
            && !html.contains("font-family")
    );
    let latin1 = text_of(&app, by_name("creme")).await;
    assert!(
        latin1.contains("La crème brûlée est un dessert français"),
        "{latin1}"
    );
    let pdf = text_of(&app, by_name("energy")).await;
    assert!(
        pdf.contains("Solar installations grew") && pdf.contains("offshore wind"),
        "{pdf}"
    );
    let docx = text_of(&app, by_name("onboarding")).await;
    assert!(docx.contains("Monday | Meet your mentor"), "{docx}");
    let csv = text_of(&app, by_name("planets")).await;
    assert!(csv.contains("planet: Saturn\ntype: gas giant"), "{csv}");
    let json_text = text_of(&app, by_name("product")).await;
    assert!(
        json_text.contains("price.amount: 22.0") || json_text.contains("price.amount: 22"),
        "{json_text}"
    );
    let yaml = text_of(&app, by_name("search-service")).await;
    assert!(yaml.contains("alerts[1].name: queue-backlog"), "{yaml}");

    let pdf_doc = app.document(&by_name("energy").to_string()).await;
    assert_eq!(pdf_doc["metadata"]["extraction"]["pages"], 2);
    let latin_doc = app.document(&by_name("creme").to_string()).await;
    assert_eq!(
        latin_doc["metadata"]["extraction"]["encoding"],
        "ISO-8859-1"
    );

    // Chunks carry vectors of the configured dimension and a full-text vector.
    let (dims, tsv_ok): (i32, bool) = sqlx::query_as(
        "SELECT vector_dims(embedding), bool_and(content_tsv IS NOT NULL) OVER () FROM chunks LIMIT 1",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(dims, 384);
    assert!(tsv_ok);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_documents_are_chunked_with_overlap_within_size() {
    let app = TestApp::start_with(|s| {
        s.ingestion.chunk_size = 300;
        s.ingestion.chunk_overlap = 60;
    })
    .await;
    let text: String = (0..200)
        .map(|i| format!("Sentence number {i} talks about topic {}. ", i % 7))
        .collect();
    let (status, body) = app.upload("long.txt", text.into_bytes()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = uuid_of(&body);
    let d = app.wait_done(&id.to_string()).await;
    assert_eq!(d["status"], "processed");
    let rows: Vec<(i32, String)> = sqlx::query_as(
        "SELECT chunk_index, content FROM chunks WHERE document_id = $1 ORDER BY chunk_index",
    )
    .bind(id)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert!(rows.len() > 20, "{} chunks", rows.len());
    for (i, (idx, content)) in rows.iter().enumerate() {
        assert_eq!(*idx as usize, i);
        assert!(content.chars().count() <= 300);
        assert!(
            content.ends_with('.'),
            "breaks at sentence ends: {content:?}"
        );
    }
    // Overlap: each chunk starts with text the previous one ended with.
    for pair in rows.windows(2) {
        let head: String = pair[1].1.chars().take(20).collect();
        assert!(
            pair[0].1.contains(&head),
            "no overlap between {:?} and {:?}",
            pair[0].1,
            pair[1].1
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_force_reprocess_and_delete() {
    let app = TestApp::start().await;
    let (s1, b1) = app.upload_fixture("documents/planets.csv").await;
    assert_eq!(s1, StatusCode::ACCEPTED);
    let id = uuid_of(&b1);
    app.wait_done(&id.to_string()).await;

    // Same bytes again: the existing document, flagged as a duplicate.
    let (s2, b2) = app.upload_fixture("documents/planets.csv").await;
    assert_eq!(s2, StatusCode::OK, "{b2}");
    assert_eq!(b2["duplicate"], true);
    assert_eq!(uuid_of(&b2), id);
    assert_eq!(b2["status"], "processed");

    // Forced: a second document.
    let bytes = std::fs::read(fixture("documents/planets.csv")).unwrap();
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(bytes).file_name("planets.csv"),
    );
    let resp = app
        .post("/v1/documents?force=true")
        .multipart(form)
        .send()
        .await
        .unwrap();
    let (s3, b3) = json_of(resp).await;
    assert_eq!(s3, StatusCode::ACCEPTED, "{b3}");
    assert_ne!(uuid_of(&b3), id);

    // Reprocess: the pipeline runs again from the stored bytes and does not duplicate chunks.
    let before = count(
        &app.pool,
        "SELECT count(*) FROM chunks WHERE document_id = $1",
        id,
    )
    .await;
    let first_chunk_ids: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM chunks WHERE document_id = $1")
            .bind(id)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    let resp = app
        .post(&format!("/v1/documents/{id}/reprocess"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let d = app.document(&id.to_string()).await;
        let jobs = d["jobs"].as_array().unwrap();
        if jobs.len() == 6 && jobs.iter().all(|j| j["status"] == "succeeded") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "reprocess did not finish: {d}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let after = count(
        &app.pool,
        "SELECT count(*) FROM chunks WHERE document_id = $1",
        id,
    )
    .await;
    assert_eq!(before, after);
    let new_ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM chunks WHERE document_id = $1")
        .bind(id)
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert!(
        new_ids.iter().all(|n| !first_chunk_ids.contains(n)),
        "chunks were rebuilt"
    );

    // Delete removes the document and everything hanging off it.
    let resp = app
        .delete(&format!("/v1/documents/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    for sql in [
        "SELECT count(*) FROM chunks WHERE document_id = $1",
        "SELECT count(*) FROM contents WHERE document_id = $1",
        "SELECT count(*) FROM document_blobs WHERE document_id = $1",
        "SELECT count(*) FROM jobs WHERE document_id = $1",
    ] {
        assert_eq!(count(&app.pool, sql, id).await, 0, "{sql}");
    }
    let resp = app
        .get(&format!("/v1/documents/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        resp.headers()["content-type"],
        "application/problem+json",
        "errors are problem+json"
    );
    let resp = app
        .delete(&format!("/v1/documents/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_upload_list_filter_paginate_and_patch() {
    let app = TestApp::start().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let resp = app
            .post("/v1/documents")
            .json(&json!({
                "title": format!("Note {i}"),
                "content": format!("# Heading {i}\n\nBody of note number {i} about gardening."),
                "document_type": "markdown",
                "metadata": {"team": if i % 2 == 0 { "green" } else { "blue" }, "n": i},
                "location": format!("notes/{i}.md"),
            }))
            .send()
            .await
            .unwrap();
        let (status, body) = json_of(resp).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        ids.push(uuid_of(&body));
    }
    for id in &ids {
        let d = app.wait_done(&id.to_string()).await;
        assert_eq!(d["status"], "processed");
        assert_eq!(d["document_type"], "markdown");
        assert!(
            d["title"].as_str().unwrap().starts_with("Note "),
            "user titles are kept: {d}"
        );
    }
    // Two per page, newest first, following the cursor.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/v1/documents?limit=2&status=processed&document_type=markdown".to_string();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, body) = json_of(app.get(&path).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        for d in body["documents"].as_array().unwrap() {
            seen.push(uuid_of(d));
        }
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(seen, expected);
    let (_, body) = json_of(app.get("/v1/documents?status=failed").send().await.unwrap()).await;
    assert_eq!(body["documents"].as_array().unwrap().len(), 0);
    for bad in [
        "/v1/documents?status=done",
        "/v1/documents?limit=0",
        "/v1/documents?limit=501",
        "/v1/documents?colour=red",
        "/v1/documents/not-a-uuid",
    ] {
        let resp = app.get(bad).send().await.unwrap();
        assert_eq!(
            resp.headers()["content-type"],
            "application/problem+json",
            "{bad}"
        );
        let (status, body) = json_of(resp).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }

    // PATCH title and metadata.
    let id = ids[0];
    let resp = app
        .http
        .patch(app.url(&format!("/v1/documents/{id}")))
        .bearer_auth(API_KEY)
        .json(&json!({"title": "Renamed", "metadata": {"team": "red"}}))
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(resp).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["title"], "Renamed");
    assert_eq!(body["metadata"], json!({"team": "red"}));
    for bad in [
        json!({"title": ""}),
        json!({"metadata": [1]}),
        json!({"owner": "x"}),
    ] {
        let resp = app
            .http
            .patch(app.url(&format!("/v1/documents/{id}")))
            .bearer_auth(API_KEY)
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_client_error(), "{bad} → {}", resp.status());
    }
    let _: Value = app.document(&id.to_string()).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness() {
    let app = TestApp::start().await;
    let resp = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let (status, body) = json_of(app.http.get(app.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["embedding_dimensions"], 384);
    // A request id is returned (generated when the caller sends none, echoed when it does).
    let resp = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "abc-123");
    let resp = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert!(resp.headers().contains_key("x-request-id"));
    app.stop().await;
}

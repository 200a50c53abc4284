//! Summaries and keywords: from an OpenAI-compatible chat API (checked against a local server
//! speaking its wire format, with its failures), and extractively without one.

mod common;

use std::time::{Duration, Instant};

use common::openai_mock::{OpenAiMock, Reply};
use common::*;
use ragdoll::config::LlmProviderKind;
use reqwest::StatusCode;
use serde_json::json;

async fn llm_app(mock: &OpenAiMock, timeout_secs: u64, retries: u32) -> TestApp {
    let base = mock.base_url.clone();
    TestApp::start_with(move |s| {
        s.llm.provider = LlmProviderKind::Openai;
        s.llm.base_url = base;
        s.llm.api_key = Some("sk-llm".into());
        s.llm.summary_model = "sum-model".into();
        s.llm.keywords_model = "kw-model".into();
        s.llm.timeout_secs = timeout_secs;
        s.llm.max_retries = retries;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_summaries_and_keywords_are_stored_and_searchable() {
    let mock = OpenAiMock::start(8).await;
    let app = llm_app(&mock, 10, 0).await;
    let (_, long) = app.upload_fixture("documents/energy-report.pdf").await;
    let (_, short) = app
        .upload("short.txt", b"Just a short note about tea.".to_vec())
        .await;
    let long = app.wait_done(long["id"].as_str().unwrap()).await;
    let short = app.wait_done(short["id"].as_str().unwrap()).await;

    assert_eq!(long["analysis_status"], "completed", "{long}");
    assert_eq!(long["analysis_method"], "llm:sum-model");
    assert!(
        long["summary"]
            .as_str()
            .unwrap()
            .starts_with("Summary: Renewable Energy"),
        "{long}"
    );
    assert_eq!(
        long["keywords"],
        json!(["photovoltaics", "grid storage", "wind"]),
        "a real list, lower-cased"
    );
    assert!(
        short["summary"].is_null(),
        "no summary under 300 characters"
    );
    assert!(
        short["analysis_note"]
            .as_str()
            .unwrap()
            .contains("summary skipped")
    );
    assert_eq!(short["keywords"].as_array().unwrap().len(), 3);

    // Request shapes: one summary and one keywords call for the long text, keywords only for the short.
    let requests = mock.chat_requests();
    assert_eq!(requests.len(), 3, "{requests:#?}");
    let models: Vec<&str> = requests
        .iter()
        .map(|r| r["model"].as_str().unwrap())
        .collect();
    assert_eq!(models.iter().filter(|m| **m == "sum-model").count(), 1);
    assert_eq!(models.iter().filter(|m| **m == "kw-model").count(), 2);
    for r in &requests {
        assert_eq!(r["messages"][0]["role"], "system");
        assert!(r["messages"][1]["content"].is_string());
        assert!(r["max_tokens"].as_u64().unwrap() > 0);
    }

    // Keywords count in full-text search even when the text lacks the word, and in the filter.
    let (status, answer) = json_of(
        app.post("/v1/search")
            .json(&json!({"query": "photovoltaics", "mode": "fulltext"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let docs: Vec<&str> = answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["document_id"].as_str().unwrap())
        .collect();
    assert!(docs.contains(&long["id"].as_str().unwrap()), "{answer}");
    let text: String =
        sqlx::query_scalar("SELECT content FROM contents WHERE document_id = $1::uuid")
            .bind(long["id"].as_str().unwrap())
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(
        !text.to_lowercase().contains("photovoltaic"),
        "the word is only a keyword"
    );
    let (_, filtered) = json_of(
        app.post("/v1/search")
            .json(&json!({"query": "storage", "mode": "fulltext", "filters": {"keywords": {"any": ["Grid Storage"]}}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(filtered["total"].as_u64().unwrap() >= 1, "{filtered}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_failures_retry_or_fail_visibly_and_never_block_search() {
    let mock = OpenAiMock::start(8).await;
    let app = llm_app(&mock, 1, 1).await;

    // Garbage, then a sane answer: retried, completed.
    mock.chat_script([Reply::Garbage]);
    let (_, a) = app
        .upload("a.txt", b"A short note about grid storage.".to_vec())
        .await;
    let a = app.wait_done(a["id"].as_str().unwrap()).await;
    assert_eq!(a["analysis_status"], "completed", "{a}");

    // 429 with Retry-After: honoured inside the call.
    mock.chat_script([Reply::RateLimited(1)]);
    let started = Instant::now();
    let (_, b) = app
        .upload("b.txt", b"Another short note about wind farms.".to_vec())
        .await;
    let b = app.wait_done(b["id"].as_str().unwrap()).await;
    assert_eq!(b["analysis_status"], "completed", "{b}");
    assert!(started.elapsed() >= Duration::from_secs(1));

    // A timeout: the call fails, the job retries and succeeds.
    mock.chat_script([
        Reply::Delay(Duration::from_secs(3)),
        Reply::Delay(Duration::from_secs(3)),
    ]);
    let (_, c) = app
        .upload("c.txt", b"A third note, about hydro power.".to_vec())
        .await;
    let c = app.wait_done(c["id"].as_str().unwrap()).await;
    assert_eq!(c["analysis_status"], "completed", "{c}");
    let analysis_job = job_of(&c, "analyze_document");
    assert_eq!(analysis_job["attempts"], 2, "{analysis_job}");

    // 401: permanent, the reason visible, the document still processed and searchable.
    mock.chat_script([Reply::Status(401)]);
    let (_, d) = app
        .upload("d.txt", b"A fourth note, about tidal energy.".to_vec())
        .await;
    let d = app.wait_done(d["id"].as_str().unwrap()).await;
    assert_eq!(d["status"], "processed");
    assert_eq!(d["analysis_status"], "failed");
    assert!(
        d["analysis_note"]
            .as_str()
            .unwrap()
            .contains("check RAGDOLL_LLM_API_KEY"),
        "{d}"
    );
    let (_, found) = json_of(
        app.post("/v1/search")
            .json(&json!({"query": "tidal", "mode": "fulltext"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(found["total"], 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extractive_analysis_keeps_corpus_statistics_once_per_document() {
    let app = TestApp::start().await;
    let mut ids = Vec::new();
    for f in ["bicycle-history.txt", "energy-report.pdf", "sourdough.html"] {
        let (_, body) = app.upload_fixture(&format!("documents/{f}")).await;
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        let d = app.wait_done(id).await;
        assert_eq!(d["analysis_method"], "extractive");
        assert!(d["summary"].as_str().is_some_and(|s| s.len() > 50), "{d}");
    }
    let bicycle = app.document(&ids[0]).await;
    let kw: Vec<String> = serde_json::from_value(bicycle["keywords"].clone()).unwrap();
    assert!(
        kw.iter()
            .any(|k| k.contains("bicycle") || k.contains("wheel")),
        "{kw:?}"
    );
    let counted = app
        .scalar("SELECT count(*) FROM documents WHERE terms_counted")
        .await;
    assert_eq!(counted, 3);
    let wheel = app
        .scalar("SELECT documents::int8 FROM term_stats WHERE term = 'wheel'")
        .await;
    assert_eq!(wheel, 1);
    // Reprocessing does not count a document twice.
    app.post(&format!("/v1/documents/{}/reprocess", ids[0]))
        .send()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let d = app.document(&ids[0]).await;
        let jobs = d["jobs"].as_array().unwrap();
        if jobs.len() == 6 && jobs.iter().all(|j| j["status"] == "succeeded") {
            break;
        }
        assert!(Instant::now() < deadline, "reprocess did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        app.scalar("SELECT documents::int8 FROM term_stats WHERE term = 'wheel'")
            .await,
        1
    );
    app.stop().await;
}

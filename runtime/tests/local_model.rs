//! The local semantic model end to end: documents embedded in-process with all-MiniLM-L6-v2, and
//! a question that shares no word with its answer still finds it.

mod common;

use std::collections::HashSet;

use common::*;
use ragdoll::config::EmbeddingProviderKind;
use reqwest::StatusCode;
use serde_json::json;

fn words(s: &str) -> HashSet<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_question_without_shared_words_finds_its_answer() {
    let dir = model_dir().to_path_buf();
    let app = TestApp::start_with(move |s| {
        s.embedding.provider = Some(EmbeddingProviderKind::Local);
        s.embedding.model_dir = Some(dir);
    })
    .await;
    let mut ids = Vec::new();
    for f in [
        "bicycle-history.txt",
        "sourdough.html",
        "energy-report.pdf",
        "planets.csv",
        "onboarding-handbook.docx",
        "product-catalog.json",
    ] {
        let (status, body) = app.upload_fixture(&format!("documents/{f}")).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        ids.push((f, body["id"].as_str().unwrap().to_string()));
    }
    for (_, id) in &ids {
        let d = app.wait_done(id).await;
        assert_eq!(d["status"], "processed", "{d}");
    }
    let model: String = sqlx::query_scalar("SELECT DISTINCT embedding_model FROM chunks")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(model, "all-MiniLM-L6-v2");

    let cases = [
        (
            "photovoltaic growth atop industrial buildings",
            "energy-report.pdf",
        ),
        (
            "which loaf needs a living culture of yeast",
            "sourdough.html",
        ),
        ("penny farthing", "bicycle-history.txt"),
    ];
    for (query, expected) in cases {
        let resp = app
            .post("/v1/search")
            .json(&json!({"query": query, "mode": "semantic", "threshold": 0.2, "limit": 3}))
            .send()
            .await
            .unwrap();
        let (status, answer) = json_of(resp).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let top = &answer["results"][0];
        let want = &ids.iter().find(|(f, _)| *f == expected).unwrap().1;
        assert_eq!(
            top["document_id"].as_str().unwrap(),
            want,
            "{query} → {answer}"
        );
        if expected == "energy-report.pdf" {
            let shared: Vec<String> = words(query)
                .intersection(&words(top["content"].as_str().unwrap()))
                .cloned()
                .collect();
            assert!(
                shared.is_empty(),
                "the query shares {shared:?} with the answer"
            );
        }
    }
    app.stop().await;
}

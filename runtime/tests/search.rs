//! Retrieval against the real local Postgres: each mode, each filter, grouping, thresholds, RRF
//! order, caches and their invalidation, usage analytics flushing, context/enhance, stats, jobs,
//! metrics, detailed health, OpenAPI against the live routes, and bad input.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::openai_mock::{OpenAiMock, Reply};
use common::*;
use ragdoll::config::EmbeddingProviderKind;
use reqwest::StatusCode;
use serde_json::{Value, json};

const DOCS: &[&str] = &[
    "documents/bicycle-history.txt",
    "documents/creme-brulee-latin1.txt",
    "documents/pgvector-operations.md",
    "documents/sourdough.html",
    "documents/library-catalog.xml",
    "documents/energy-report.pdf",
    "documents/onboarding-handbook.docx",
    "documents/planets.csv",
    "documents/product-catalog.json",
    "documents/search-service.yaml",
];

/// Ingests the fixtures; returns file stem → document id.
async fn ingest_fixtures(app: &TestApp) -> HashMap<String, String> {
    let mut ids = HashMap::new();
    for rel in DOCS {
        let (status, body) = app.upload_fixture(rel).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{rel}: {body}");
        let stem = rel
            .rsplit('/')
            .next()
            .unwrap()
            .split('.')
            .next()
            .unwrap()
            .to_string();
        ids.insert(stem, body["id"].as_str().unwrap().to_string());
    }
    for id in ids.values() {
        assert_eq!(app.wait_done(id).await["status"], "processed");
    }
    ids
}

async fn search(app: &TestApp, body: Value) -> (StatusCode, Value) {
    json_of(app.post("/v1/search").json(&body).send().await.unwrap()).await
}

async fn ok_search(app: &TestApp, body: Value) -> Value {
    let (status, answer) = search(app, body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body} → {answer}");
    answer
}

fn doc_ids(answer: &Value) -> Vec<String> {
    answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["document_id"].as_str().unwrap().to_string())
        .collect()
}

fn scores(answer: &Value) -> Vec<f64> {
    answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["score"].as_f64().unwrap())
        .collect()
}

fn assert_descending(v: &[f64]) {
    assert!(v.windows(2).all(|w| w[0] >= w[1]), "not sorted: {v:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_mode_finds_the_right_document() {
    let app = TestApp::start().await;
    let ids = ingest_fixtures(&app).await;

    // Session settings of the pool: per-query ef_search and iterative scans, no extra round trip.
    let (ef, scan, plans): (String, String, String) = sqlx::query_as(
        "SELECT current_setting('hnsw.ef_search'), current_setting('hnsw.iterative_scan'), \
                current_setting('plan_cache_mode')",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        (ef.as_str(), scan.as_str(), plans.as_str()),
        ("100", "relaxed_order", "force_custom_plan")
    );

    let sem = ok_search(&app, json!({"query": "sourdough starter flour water dough", "mode": "semantic", "threshold": 0.05})).await;
    assert_eq!(sem["mode"], "semantic");
    assert_eq!(doc_ids(&sem)[0], ids["sourdough"], "{sem}");
    assert_descending(&scores(&sem));
    for r in sem["results"].as_array().unwrap() {
        assert_eq!(
            r["score"], r["similarity"],
            "semantic score is the cosine similarity"
        );
        assert!(r["similarity"].as_f64().unwrap() >= 0.05);
        for field in [
            "chunk_id",
            "document_id",
            "title",
            "location",
            "content",
            "chunk_index",
            "metadata",
        ] {
            assert!(!r[field].is_null(), "{field} missing in {r}");
        }
    }
    assert_eq!(sem["total"], sem["results"].as_array().unwrap().len());

    // Full text, with stemming: "tyres" matches "tyre", "bicycles" matches "bicycle".
    let ft = ok_search(
        &app,
        json!({"query": "pneumatic tyres bicycles", "mode": "fulltext"}),
    )
    .await;
    // Both chunks of the history (they overlap) hold these words, and nothing else does.
    assert_eq!(
        doc_ids(&ft),
        vec![ids["bicycle-history"].clone(); 2],
        "{ft}"
    );
    assert!(ft["results"][0]["similarity"].is_null());
    let phrase = ok_search(
        &app,
        json!({"query": "\"offshore wind\" -hydrogen", "mode": "fulltext"}),
    )
    .await;
    assert_eq!(doc_ids(&phrase), vec![ids["energy-report"].clone()]);

    // Hybrid is the default.
    let hy = ok_search(&app, json!({"query": "battery storage for solar power"})).await;
    assert_eq!(hy["mode"], "hybrid");
    assert_eq!(doc_ids(&hy)[0], ids["energy-report"], "{hy}");
    assert_descending(&scores(&hy));

    // Semantic default threshold (0.7) is strict for the lexical hash embedder: nothing this vague passes.
    let strict = ok_search(&app, json!({"query": "bread", "mode": "semantic"})).await;
    assert!(
        strict["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["similarity"].as_f64().unwrap() >= 0.7)
    );
    let loose = ok_search(
        &app,
        json!({"query": "bread", "mode": "semantic", "threshold": -1.0, "limit": 50}),
    )
    .await;
    assert_eq!(
        loose["total"], 11,
        "every chunk passes threshold -1: {loose}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hybrid_is_reciprocal_rank_fusion_of_the_two_lists() {
    let app = TestApp::start_with(|s| s.search.cache_ttl_secs = 0).await;
    ingest_fixtures(&app).await;
    let q = "wind or solar or storage or tea or bread or bicycle";
    let sem = ok_search(
        &app,
        json!({"query": q, "mode": "semantic", "threshold": -1.0, "limit": 50}),
    )
    .await;
    let ft = ok_search(&app, json!({"query": q, "mode": "fulltext", "limit": 50})).await;
    let rank_of = |answer: &Value| -> HashMap<i64, usize> {
        answer["results"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, r)| (r["chunk_id"].as_i64().unwrap(), i + 1))
            .collect()
    };
    let (sem_rank, ft_rank) = (rank_of(&sem), rank_of(&ft));
    assert!(!ft_rank.is_empty());
    for (weights, (ws, wf)) in [
        (json!(null), (1.0, 1.0)),
        (json!({"semantic": 0.2, "fulltext": 1.0}), (0.2, 1.0)),
    ] {
        let mut body = json!({"query": q, "mode": "hybrid", "limit": 50});
        if !weights.is_null() {
            body["weights"] = weights;
        }
        let hy = ok_search(&app, body).await;
        let mut expected: Vec<(i64, f64)> = sem_rank
            .keys()
            .chain(ft_rank.keys())
            .collect::<std::collections::HashSet<_>>()
            .into_iter()
            .map(|id| {
                let s = sem_rank.get(id).map_or(0.0, |r| ws / (60.0 + *r as f64));
                let f = ft_rank.get(id).map_or(0.0, |r| wf / (60.0 + *r as f64));
                (*id, s + f)
            })
            .collect();
        expected.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap().then(a.0.cmp(&b.0)));
        let got: Vec<(i64, f64)> = hy["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["chunk_id"].as_i64().unwrap(),
                    r["score"].as_f64().unwrap(),
                )
            })
            .collect();
        assert_eq!(got.len(), expected.len().min(50));
        for (g, e) in got.iter().zip(&expected) {
            assert_eq!(
                g.0, e.0,
                "order differs: got {got:?}\nexpected {expected:?}"
            );
            assert!((g.1 - e.1).abs() < 1e-9);
        }
        // Chunks from the semantic list carry their similarity.
        for r in hy["results"].as_array().unwrap() {
            assert!(r["similarity"].is_number());
        }
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_and_grouping() {
    let app = TestApp::start_with(|s| {
        s.search.cache_ttl_secs = 0;
        s.ingestion.chunk_size = 300;
        s.ingestion.chunk_overlap = 0;
    })
    .await;
    let ids = ingest_fixtures(&app).await;
    // Metadata and keywords set directly (analysis does not produce keywords yet).
    sqlx::query("UPDATE documents SET metadata = metadata || '{\"team\": \"kitchen\"}', keywords = '{baking,food}' WHERE id = $1::uuid")
        .bind(&ids["sourdough"])
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE documents SET metadata = metadata || '{\"team\": \"kitchen\"}', keywords = '{dessert,food}' WHERE id = $1::uuid")
        .bind(&ids["creme-brulee-latin1"])
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE documents SET created_at = '2020-01-01T00:00:00Z' WHERE id = $1::uuid")
        .bind(&ids["planets"])
        .execute(&app.pool)
        .await
        .unwrap();
    let all = |extra: Value| {
        let mut body = json!({"query": "the", "mode": "semantic", "threshold": -1.0, "limit": 50});
        body["filters"] = extra;
        body
    };
    let only = |answer: &Value| -> std::collections::BTreeSet<String> {
        doc_ids(answer).into_iter().collect()
    };

    let by_type = ok_search(&app, all(json!({"document_type": ["pdf", "docx"]}))).await;
    assert_eq!(
        only(&by_type),
        [
            ids["energy-report"].clone(),
            ids["onboarding-handbook"].clone()
        ]
        .into()
    );
    let one_type = ok_search(&app, all(json!({"document_type": "csv"}))).await;
    assert_eq!(only(&one_type), [ids["planets"].clone()].into());
    let by_id = ok_search(&app, all(json!({"document_ids": [ids["bicycle-history"]]}))).await;
    assert_eq!(only(&by_id), [ids["bicycle-history"].clone()].into());
    let by_meta = ok_search(&app, all(json!({"metadata": {"team": "kitchen"}}))).await;
    assert_eq!(
        only(&by_meta),
        [ids["sourdough"].clone(), ids["creme-brulee-latin1"].clone()].into()
    );
    let any = ok_search(
        &app,
        all(json!({"keywords": {"any": ["Dessert", "unrelated"]}})),
    )
    .await;
    assert_eq!(only(&any), [ids["creme-brulee-latin1"].clone()].into());
    let every = ok_search(&app, all(json!({"keywords": {"all": ["food", "baking"]}}))).await;
    assert_eq!(only(&every), [ids["sourdough"].clone()].into());
    let old = ok_search(&app, all(json!({"created_before": "2021-01-01T00:00:00Z"}))).await;
    assert_eq!(only(&old), [ids["planets"].clone()].into());
    let recent = ok_search(&app, all(json!({"created_after": "2021-01-01T00:00:00Z"}))).await;
    assert!(!only(&recent).contains(&ids["planets"]) && only(&recent).len() == 9);
    // Filters combine (AND), in every mode.
    for mode in ["semantic", "fulltext", "hybrid"] {
        let body = json!({"query": "flour", "mode": mode, "threshold": -1.0,
            "filters": {"metadata": {"team": "kitchen"}, "document_type": "html"}});
        let answer = ok_search(&app, body).await;
        assert_eq!(
            only(&answer),
            [ids["sourdough"].clone()].into(),
            "{mode}: {answer}"
        );
    }

    // Grouping: several chunks of one document collapse to its best chunk.
    let many = ok_search(&app, json!({"query": "wind solar storage demand", "mode": "semantic", "threshold": -1.0, "limit": 20})).await;
    let energy_chunks = doc_ids(&many)
        .iter()
        .filter(|d| **d == ids["energy-report"])
        .count();
    assert!(
        energy_chunks > 1,
        "the PDF has several chunks at size 300: {many}"
    );
    let grouped = ok_search(&app, json!({"query": "wind solar storage demand", "mode": "semantic", "threshold": -1.0, "limit": 20, "group_by_document": true})).await;
    let docs = doc_ids(&grouped);
    let distinct: std::collections::HashSet<_> = docs.iter().collect();
    assert_eq!(docs.len(), distinct.len(), "one chunk per document");
    assert_eq!(docs.len(), 10, "every document once");
    assert_descending(&scores(&grouped));
    // The chunk kept is the document's best one.
    let best_energy = many["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["document_id"] == ids["energy-report"].as_str())
        .unwrap();
    let kept = grouped["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["document_id"] == ids["energy-report"].as_str())
        .unwrap();
    assert_eq!(kept["chunk_id"], best_energy["chunk_id"]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_cache_is_invalidated_by_ingest_and_delete() {
    let app = TestApp::start().await;
    let ids = ingest_fixtures(&app).await;
    let body = json!({"query": "gyokuro green tea", "mode": "fulltext"});
    let first = ok_search(&app, body.clone()).await;
    assert_eq!(first["cached"], false);
    let second = ok_search(&app, body.clone()).await;
    assert_eq!(second["cached"], true);
    assert_eq!(first["results"], second["results"]);

    // A new matching document: the cached answer must not hide it.
    let resp = app
        .post("/v1/documents")
        .json(&json!({"content": "Gyokuro is a shaded green tea from Japan.", "title": "tea note"}))
        .send()
        .await
        .unwrap();
    let (_, created) = json_of(resp).await;
    app.wait_done(created["id"].as_str().unwrap()).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let a = ok_search(&app, body.clone()).await;
        if a["total"] == 2 {
            break a;
        }
        assert!(
            Instant::now() < deadline,
            "cache never invalidated after ingest: {a}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(after["cached"], false);

    // Deleting the catalog removes it from cached answers too.
    let resp = app
        .delete(&format!("/v1/documents/{}", ids["product-catalog"]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let a = ok_search(&app, body.clone()).await;
        if a["total"] == 1 {
            assert_eq!(
                doc_ids(&a),
                vec![created["id"].as_str().unwrap().to_string()]
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "cache never invalidated after delete: {a}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Both caches are visible in the metrics.
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("ragdoll_cache_requests_total{cache=\"search_result\",result=\"hit\"}"),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_is_counted_off_the_request_path_and_flushed_on_shutdown() {
    let db = TestDb::create().await;
    let url = db.url.clone();
    let app = TestApp::start_on(
        db,
        |s| {
            s.search.usage_flush_interval_ms = 3_600_000; // only the shutdown flush
            s.search.track_searches = true;
            s.search.cache_ttl_secs = 0;
        },
        true,
    )
    .await;
    ingest_fixtures(&app).await;
    let body = json!({"query": "planet rings moons", "mode": "fulltext"});
    let mut returned = HashMap::new();
    for _ in 0..3 {
        for r in ok_search(&app, body.clone()).await["results"]
            .as_array()
            .unwrap()
        {
            *returned.entry(r["chunk_id"].as_i64().unwrap()).or_insert(0) += 1;
        }
    }
    assert!(!returned.is_empty());
    let before: i64 = app
        .scalar("SELECT coalesce(sum(usage_count), 0)::int8 FROM chunks")
        .await;
    assert_eq!(before, 0, "searches do not write on the request path");
    assert_eq!(app.scalar("SELECT count(*) FROM searches").await, 0);
    let _db = app.stop().await; // flushes

    let pool = sqlx::postgres::PgPoolOptions::new()
        .connect(&url)
        .await
        .unwrap();
    for (chunk, n) in &returned {
        let (count, at): (i32, Option<chrono::DateTime<chrono::Utc>>) =
            sqlx::query_as("SELECT usage_count, returned_at FROM chunks WHERE id = $1")
                .bind(chunk)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(count, *n);
        assert!(at.is_some());
    }
    let (n, mode, results): (i64, String, i32) =
        sqlx::query_as("SELECT count(*) OVER (), mode, result_count FROM searches LIMIT 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((n, mode.as_str()), (3, "fulltext"));
    assert_eq!(results as usize, returned.len());
    // Retention: old searches are pruned.
    sqlx::query("UPDATE searches SET created_at = now() - interval '40 days' WHERE id IN (SELECT id FROM searches LIMIT 2)").execute(&pool).await.unwrap();
    assert_eq!(ragdoll::search::usage::prune(&pool, 30).await.unwrap(), 2);
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_boost_promotes_popular_chunks_when_enabled() {
    let app = TestApp::start_with(|s| {
        s.search.usage_boost = 5.0;
        s.search.cache_ttl_secs = 0;
    })
    .await;
    let ids = ingest_fixtures(&app).await;
    let body = json!({"query": "tea OR bicycle", "mode": "fulltext"});
    let plain = ok_search(&app, body.clone()).await;
    assert_eq!(plain["total"], 3);
    let last = plain["results"][2]["chunk_id"].as_i64().unwrap();
    sqlx::query("UPDATE chunks SET usage_count = 1000, returned_at = now() WHERE id = $1")
        .bind(last)
        .execute(&app.pool)
        .await
        .unwrap();
    let boosted = ok_search(&app, body).await;
    assert_eq!(
        boosted["results"][0]["chunk_id"].as_i64().unwrap(),
        last,
        "{boosted}"
    );
    let _ = ids;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_search_requests_get_clear_400s() {
    let app = TestApp::start().await;
    ingest_fixtures(&app).await;
    let cases = [
        (json!({"query": ""}), "`query` must not be empty"),
        (json!({"query": "   "}), "`query` must not be empty"),
        (json!({"query": "x", "limit": 0}), "between 1 and 50"),
        (json!({"query": "x", "limit": 51}), "between 1 and 50"),
        (
            json!({"query": "x", "mode": "fuzzy"}),
            "unknown variant `fuzzy`",
        ),
        (
            json!({"query": "x", "filters": {"colour": "red"}}),
            "unknown field `colour`",
        ),
        (
            json!({"query": "x", "sort": "date"}),
            "unknown field `sort`",
        ),
        (json!({"query": "x", "threshold": 1.5}), "between -1 and 1"),
        (json!({"query": "x", "threshold": -2}), "between -1 and 1"),
        (
            json!({"query": "x", "filters": {"document_type": "exe"}}),
            "unknown document_type",
        ),
        (
            json!({"query": "x", "filters": {"document_ids": []}}),
            "must not be an empty list",
        ),
        (
            json!({"query": "x", "embedding": [0.1, 0.2]}),
            "this deployment uses 384",
        ),
        (json!({"limit": 3}), "missing field `query`"),
    ];
    for (body, needle) in cases {
        let resp = app.post("/v1/search").json(&body).send().await.unwrap();
        assert_eq!(
            resp.headers()["content-type"],
            "application/problem+json",
            "{body}"
        );
        let (status, answer) = json_of(resp).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {answer}");
        assert!(
            answer["detail"].as_str().unwrap().contains(needle),
            "{body} → {answer}"
        );
    }
    // Operators, quotes and SQL-looking input never produce SQL errors.
    for q in [
        "\"unbalanced",
        "-",
        "!!! & | <->",
        "a:* & (b | c)",
        "'; DROP TABLE chunks; --",
        "OR OR OR",
        "\\",
        "ü\u{0}x",
    ] {
        for mode in ["fulltext", "hybrid", "semantic"] {
            let (status, answer) =
                search(&app, json!({"query": q, "mode": mode, "threshold": -1.0})).await;
            assert_eq!(status, StatusCode::OK, "{mode} {q:?} → {answer}");
        }
    }
    // A query far longer than any model accepts is truncated, not rejected.
    let long = "bicycle ".repeat(5000);
    let (status, answer) = search(&app, json!({"query": long, "mode": "hybrid"})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(answer["total"].as_u64().unwrap() >= 1);
    // A precomputed embedding of the right size is accepted.
    let v = ragdoll::embed::hash::HashEmbedder::new("hash-v1", 384).embed_one("pneumatic tyre");
    let answer = ok_search(
        &app,
        json!({"query": "pneumatic tyre", "mode": "semantic", "embedding": v, "threshold": 0.1}),
    )
    .await;
    assert!(answer["total"].as_u64().unwrap() >= 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_down_gives_503_for_semantic_but_fulltext_works() {
    let mock = OpenAiMock::start(16).await;
    let base = mock.base_url.clone();
    let app = TestApp::start_with(move |s| {
        s.embedding.provider = Some(EmbeddingProviderKind::Openai);
        s.embedding.base_url = base;
        s.embedding.dimensions = 16;
        s.embedding.max_retries = 0;
    })
    .await;
    let (_, body) = app.upload_fixture("documents/bicycle-history.txt").await;
    app.wait_done(body["id"].as_str().unwrap()).await;
    mock.set_default(Reply::Status(503));
    for mode in ["semantic", "hybrid"] {
        let (status, answer) = search(&app, json!({"query": "penny farthing", "mode": mode})).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
        assert!(
            answer["detail"]
                .as_str()
                .unwrap()
                .contains("full-text search (mode \"fulltext\") still works"),
            "{answer}"
        );
    }
    let answer = ok_search(&app, json!({"query": "penny farthing", "mode": "fulltext"})).await;
    assert_eq!(answer["total"], 1);
    // The detailed health check reports the provider, and nothing else, as failing.
    let (status, health) = json_of(
        app.http
            .get(app.url("/health/detailed"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(health["checks"]["embedding_provider"]["ok"], false);
    assert_eq!(health["checks"]["database"]["ok"], true);
    assert_eq!(health["checks"]["migrations"]["ok"], true);
    // Recovery: once the provider answers again, semantic search works (query embeddings are
    // not cached from failures).
    mock.set_default(Reply::Ok);
    let answer = ok_search(
        &app,
        json!({"query": "penny farthing", "mode": "semantic", "threshold": -1.0}),
    )
    .await;
    assert!(answer["total"].as_u64().unwrap() >= 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_and_enhance() {
    let app = TestApp::start().await;
    ingest_fixtures(&app).await;
    let (status, ctx) = json_of(
        app.post("/v1/context")
            .json(&json!({"query": "sourdough starter bread", "limit": 3, "max_chars": 5000}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{ctx}");
    assert!(
        ctx["context"].as_str().unwrap().contains("wild yeast"),
        "{ctx}"
    );
    assert_eq!(ctx["sources"][0]["title"], "Baking Sourdough Bread at Home");
    assert!(ctx["sources"].as_array().unwrap().len() <= 3);
    let (_, small) = json_of(
        app.post("/v1/context")
            .json(&json!({"query": "sourdough", "max_chars": 50}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(small["context"].as_str().unwrap().chars().count() <= 50);

    let (status, enhanced) = json_of(
        app.post("/v1/enhance")
            .json(&json!({"prompt": "How long do I bake sourdough?", "limit": 2}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{enhanced}");
    let prompt = enhanced["prompt"].as_str().unwrap();
    assert!(
        prompt.contains("Question: How long do I bake sourdough?") && prompt.contains("Dutch oven"),
        "{prompt}"
    );
    let (status, custom) = json_of(
        app.post("/v1/enhance")
            .json(&json!({"prompt": "tea?", "template": "<ctx>{{context}}</ctx><q>{{prompt}}</q>", "mode": "fulltext"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{custom}");
    assert!(custom["prompt"].as_str().unwrap().ends_with("<q>tea?</q>"));
    let (status, bad) = json_of(
        app.post("/v1/enhance")
            .json(&json!({"prompt": "x", "template": "no placeholders"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(bad["detail"].as_str().unwrap().contains("{{context}}"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_jobs_retry_metrics_and_health() {
    let app = TestApp::start().await;
    ingest_fixtures(&app).await;
    let (_, bad) = app.upload_fixture("invalid/truncated.pdf").await;
    let failed = app.wait_done(bad["id"].as_str().unwrap()).await;
    assert_eq!(failed["status"], "failed");

    let (status, stats) = json_of(app.get("/v1/stats").send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    assert_eq!(stats["documents"], 11);
    assert_eq!(stats["documents_by_status"]["processed"], 10);
    assert_eq!(stats["documents_by_status"]["failed"], 1);
    assert_eq!(stats["documents_by_type"]["pdf"], 2);
    assert_eq!(stats["chunks"], 11);
    assert_eq!(stats["jobs"]["processing"]["failed"], 1);
    assert_eq!(stats["embedding_dimensions"], 384);
    assert!(
        stats["sizes"]["chunks_embedding_hnsw_idx"]
            .as_i64()
            .unwrap()
            > 0
    );

    let (_, jobs) = json_of(app.get("/v1/jobs?status=failed").send().await.unwrap()).await;
    let list = jobs["jobs"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["kind"], "process_document");
    let job_id = list[0]["id"].as_i64().unwrap();
    let (_, page) = json_of(
        app.get("/v1/jobs?queue=embeddings&limit=4")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(page["jobs"].as_array().unwrap().len(), 4);
    let before = page["next_before"].as_i64().unwrap();
    let (_, next) = json_of(
        app.get(&format!("/v1/jobs?queue=embeddings&before={before}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(next["jobs"].as_array().unwrap().len(), 6);
    for bad in [
        "/v1/jobs?queue=sidekiq",
        "/v1/jobs?status=done",
        "/v1/jobs?limit=0",
        "/v1/jobs?page=2",
    ] {
        assert_eq!(
            app.get(bad).send().await.unwrap().status(),
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
    // Retry: a failed job is queued again (and fails again: the file is still broken).
    let resp = app
        .post(&format!("/v1/jobs/{job_id}/retry"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, j) = json_of(app.get("/v1/jobs?status=failed").send().await.unwrap()).await;
        if j["jobs"].as_array().unwrap().len() == 1
            && j["jobs"][0]["attempts"] == 1
            && j["jobs"][0]["finished_at"].is_string()
        {
            let d = app.document(bad["id"].as_str().unwrap()).await;
            if d["status"] == "failed" {
                break;
            }
        }
        assert!(Instant::now() < deadline, "retried job never finished");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, done) = json_of(
        app.get("/v1/jobs?status=succeeded&limit=1")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let succeeded = done["jobs"][0]["id"].as_i64().unwrap();
    let (status, conflict) = json_of(
        app.post(&format!("/v1/jobs/{succeeded}/retry"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{conflict}");
    assert_eq!(
        app.post("/v1/jobs/999999/retry")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );

    // Metrics with the production guide's names, queue depth and HTTP metrics.
    ok_search(&app, json!({"query": "tea", "mode": "fulltext"})).await;
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "ragdoll_search_duration_seconds_bucket{content_type=\"all\",query_type=\"fulltext\"",
        "ragdoll_documents_processed_total{document_type=\"pdf\",status=\"failed\"}",
        "ragdoll_documents_processed_total{document_type=\"html\",status=\"processed\"}",
        "ragdoll_embedding_generation_seconds_count{content_type=\"text\",model=\"hash-v1\"}",
        "ragdoll_background_jobs_total{job_type=\"embed_document\",status=\"succeeded\"}",
        "ragdoll_queue_depth{queue=\"processing\",status=\"failed\"} 1",
        "ragdoll_http_requests_total{method=\"POST\",route=\"/v1/search\",status=\"200\"}",
    ] {
        assert!(metrics.contains(name), "missing {name} in\n{metrics}");
    }
    let (status, health) = json_of(
        app.http
            .get(app.url("/health/detailed"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{health}");
    assert_eq!(health["status"], "ok");
    assert_eq!(
        health["checks"]["queues"]["depth"]["processing"]["failed"],
        1
    );
    assert_eq!(health["checks"]["embedding_provider"]["model"], "hash-v1");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_matches_the_live_routes() {
    let app = TestApp::start().await;
    let (status, spec) =
        json_of(app.http.get(app.url("/openapi.json")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    let paths = spec["paths"].as_object().unwrap();
    let mut documented = Vec::new();
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            documented.push(format!("{} {path}", method.to_uppercase()));
            // The route is live: neither the 404 fallback nor 405 answers it.
            let concrete = path.replace("{id}", "1");
            let req = app
                .http
                .request(method.to_uppercase().parse().unwrap(), app.url(&concrete))
                .bearer_auth(API_KEY);
            let resp = req.send().await.unwrap();
            let (code, body) = json_of(resp).await;
            let missing = code == StatusCode::METHOD_NOT_ALLOWED
                || (code == StatusCode::NOT_FOUND && body["detail"] == "no such route");
            assert!(
                !missing,
                "{method} {path} is documented but not routed ({code})"
            );
        }
    }
    documented.sort();
    let expected = [
        "DELETE /v1/documents/{id}",
        "GET /health/detailed",
        "GET /healthz",
        "GET /metrics",
        "GET /readyz",
        "GET /v1/documents",
        "GET /v1/documents/{id}",
        "GET /v1/jobs",
        "GET /v1/stats",
        "PATCH /v1/documents/{id}",
        "POST /v1/context",
        "POST /v1/documents",
        "POST /v1/documents/{id}/reprocess",
        "POST /v1/enhance",
        "POST /v1/jobs/{id}/retry",
        "POST /v1/search",
    ];
    assert_eq!(documented, expected);
    // Undocumented paths are not routed.
    let resp = app.get("/v1/secret").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    // /v1 operations declare bearer auth; schemas are generated from the handlers' types.
    assert!(spec["paths"]["/v1/search"]["post"]["security"].is_array());
    for schema in [
        "SearchRequest",
        "SearchResponse",
        "Document",
        "JobRow",
        "Stats",
    ] {
        assert!(
            spec["components"]["schemas"][schema].is_object(),
            "{schema} missing"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_search_configuration_is_applied_by_migrate_and_checked_at_start() {
    let db = TestDb::create().await;
    let url = db.url.clone();
    let app = TestApp::start_on(db, |s| s.search.text_search_config = "simple".into(), true).await;
    let (_, body) = app.upload_fixture("documents/bicycle-history.txt").await;
    app.wait_done(body["id"].as_str().unwrap()).await;
    // "simple" does not stem: "tyres" no longer matches "tyre".
    let stemmed = ok_search(&app, json!({"query": "tyres", "mode": "fulltext"})).await;
    assert_eq!(stemmed["total"], 0);
    let exact = ok_search(&app, json!({"query": "tyre", "mode": "fulltext"})).await;
    assert_eq!(exact["total"], 2, "both overlapping chunks hold the word");
    let _db = app.stop().await;

    let mut s = test_settings(&url);
    let err = ragdoll::app::open_database(&s, false)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`simple` text search configuration") && err.contains("ragdoll migrate"),
        "{err}"
    );
    // Migrating switches back and rebuilds the vectors of existing chunks.
    ragdoll::app::open_database(&s, true).await.unwrap();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .connect(&url)
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM chunks WHERE content_tsv @@ websearch_to_tsquery('english', 'tyres')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(n, 2);
    s.search.text_search_config = "klingon".into();
    let err = ragdoll::app::open_database(&s, true)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown text search configuration `klingon`"),
        "{err}"
    );
    pool.close().await;
}

//! Ingestion benchmarks, each against a baseline measured in the same run:
//! 1. N text documents uploaded over HTTP to the runtime (hash embedder) until all are
//!    `processed`, versus bulk-loading the same document and chunk rows (same vectors, same schema
//!    and indexes) with `COPY`.
//! 2. With the local model (all-MiniLM-L6-v2): the same end-to-end path on English text, versus
//!    the model alone embedding exactly the chunks the pipeline stores — the pipeline's overhead.
//!
//! Prints chunks/s and ratios. Needs DATABASE_URL and RAGDOLL_MODEL_DIR (make bench provides both).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ragdoll::app::{self, RuntimeSettings};
use ragdoll::chunk::Chunker;
use ragdoll::embed::hash::HashEmbedder;
use ragdoll::queue::Queue;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

mod support;
use support::{admin_pool, admin_url, drop_db, fresh_db};

const DOCS: usize = 240;
const WORDS_PER_DOC: usize = 1800; // ≈ 11 chunks of 1000 characters each
/// Documents of the local-model benchmark (≈ 7 chunks each; the model takes ~0.1 s per chunk).
const LOCAL_DOCS: usize = 24;

fn corpus() -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(42);
    let vocab: Vec<String> = (0..3000)
        .map(|i| {
            let len = rng.random_range(3..10);
            let mut w: String = (0..len)
                .map(|_| rng.random_range(b'a'..=b'z') as char)
                .collect();
            w.push_str(&(i % 10).to_string());
            w
        })
        .collect();
    (0..DOCS)
        .map(|d| {
            let mut text = format!("Document {d}\n\n");
            let mut words = 0;
            while words < WORDS_PER_DOC {
                for _ in 0..rng.random_range(3..7) {
                    let n = rng.random_range(8..20);
                    let sentence: Vec<&str> = (0..n)
                        .map(|_| vocab[rng.random_range(0..vocab.len())].as_str())
                        .collect();
                    text.push_str(&sentence.join(" "));
                    text.push_str(". ");
                    words += n;
                }
                text.push_str("\n\n");
            }
            text
        })
        .collect()
}

/// Documents of English words (the vocabulary of the text fixtures), so the model sees ordinary
/// token lengths: a 1000-character chunk is about 200 tokens.
fn english_corpus(docs: usize, words_per_doc: usize) -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/documents");
    let mut vocab: Vec<String> = Vec::new();
    for name in [
        "bicycle-history.txt",
        "pgvector-operations.md",
        "sourdough.html",
    ] {
        let text = std::fs::read_to_string(dir.join(name)).expect("read fixture");
        vocab.extend(
            text.split(|c: char| !c.is_alphabetic())
                .filter(|w| w.len() > 1 && w.chars().all(|c| c.is_ascii_lowercase()))
                .map(String::from),
        );
    }
    vocab.sort();
    vocab.dedup();
    let mut rng = StdRng::seed_from_u64(7);
    (0..docs)
        .map(|d| {
            let mut text = format!("Report {d}\n\n");
            let mut words = 0;
            while words < words_per_doc {
                let n = rng.random_range(8..20);
                let sentence: Vec<&str> = (0..n)
                    .map(|_| vocab[rng.random_range(0..vocab.len())].as_str())
                    .collect();
                text.push_str(&sentence.join(" "));
                text.push_str(". ");
                words += n;
                if rng.random_range(0..5) == 0 {
                    text.push_str("\n\n");
                }
            }
            text
        })
        .collect()
}

/// What the pipeline's extraction makes of a text upload (outside any timed region).
fn extracted_text(text: &str) -> String {
    ragdoll::extract::extract(
        ragdoll::extract::DocumentType::Text,
        text.as_bytes(),
        ragdoll::extract::Limits {
            max_decompressed: 1 << 30,
        },
    )
    .expect("extract")
    .text
}

fn model_dir() -> std::path::PathBuf {
    match std::env::var("RAGDOLL_MODEL_DIR") {
        Ok(d) if !d.is_empty() => d.into(),
        _ => {
            eprintln!("RAGDOLL_MODEL_DIR is not set; run `make bench` (it fetches the model)");
            std::process::exit(2);
        }
    }
}

/// The model alone: embeds the chunks the pipeline would store, in one call (the model's own
/// batching by similar lengths), with nothing else around it.
async fn model_alone(docs: &[String]) -> (Duration, i64) {
    let settings = ragdoll::config::EmbeddingSettings {
        provider: Some(ragdoll::config::EmbeddingProviderKind::Local),
        model_dir: Some(model_dir()),
        ..Default::default()
    };
    let embedder = ragdoll::embed::from_settings(&settings).expect("load the local model");
    let chunker = Chunker::new(1000, 200).expect("chunker");
    let mut chunks: Vec<String> = Vec::new();
    for d in docs {
        let text = extracted_text(d);
        chunks.extend(chunker.split(&text).into_iter().map(String::from));
    }
    embedder.embed_batch(&chunks[..4]).await.expect("warm up");
    let started = Instant::now();
    let vectors = ragdoll::embed::embed_all(embedder.as_ref(), &chunks, "text")
        .await
        .expect("embed");
    let elapsed = started.elapsed();
    assert_eq!(vectors.len(), chunks.len());
    (elapsed, chunks.len() as i64)
}

async fn ours(
    url: &str,
    docs: &[String],
    configure: impl FnOnce(&mut RuntimeSettings),
) -> (Duration, i64) {
    let mut s = RuntimeSettings::new(url);
    s.queue.poll_interval_ms = 200;
    configure(&mut s);
    let pool = app::open_database(&s, true).await.expect("open");
    let shutdown = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (state, _tasks) = app::start_api(
        pool.clone(),
        &s,
        Some(vec!["bench".into()]),
        shutdown.clone(),
    )
    .expect("api");
    let server = tokio::spawn(app::serve_http(listener, state, shutdown.clone()));
    let pipeline = Arc::new(app::build_pipeline(pool.clone(), &s).expect("pipeline"));
    let workers = tokio::spawn(app::run_workers(
        pipeline,
        app::worker_config(&s, &Queue::ALL, None),
        shutdown.clone(),
    ));
    let http = ragdoll::http::client_builder().build().expect("client");

    let started = Instant::now();
    let uploads = futures::stream::iter(docs.iter().enumerate().map(|(i, text)| {
        let http = http.clone();
        let url = format!("{base}/v1/documents");
        let text = text.clone();
        async move {
            let form = reqwest::multipart::Form::new().part(
                "file",
                reqwest::multipart::Part::bytes(text.into_bytes()).file_name(format!("doc{i}.txt")),
            );
            let r = http
                .post(url)
                .bearer_auth("bench")
                .multipart(form)
                .send()
                .await
                .expect("upload");
            assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);
        }
    }));
    futures::StreamExt::for_each_concurrent(uploads, 8, |f| f).await;
    loop {
        let done: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM documents WHERE status IN ('processed', 'failed')",
        )
        .fetch_one(&pool)
        .await
        .expect("count");
        if done == docs.len() as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    let failed: i64 = sqlx::query_scalar("SELECT count(*) FROM documents WHERE status = 'failed'")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(failed, 0, "no document may fail in the benchmark");
    let chunks: i64 = sqlx::query_scalar("SELECT count(*) FROM chunks")
        .fetch_one(&pool)
        .await
        .expect("count");
    shutdown.cancel();
    let _ = server.await;
    let _ = workers.await;
    pool.close().await;
    (elapsed, chunks)
}

fn copy_escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
}

async fn baseline(url: &str, docs: &[String]) -> (Duration, i64) {
    let s = RuntimeSettings::new(url);
    let pool = app::open_database(&s, true).await.expect("open");
    // Prepared outside the timed region: the same chunks and vectors our pipeline produces.
    let chunker = Chunker::new(1000, 200).expect("chunker");
    let embedder = HashEmbedder::new("hash-v1", 384);
    let mut doc_rows = String::new();
    let mut chunk_rows = String::new();
    let mut total = 0i64;
    for (i, text) in docs.iter().enumerate() {
        let id = uuid::Uuid::now_v7();
        doc_rows.push_str(&format!(
            "{id}\tdoc{i}.txt\tdoc{i}\ttext\ttext/plain\th{i}\t{}\tprocessed\n",
            text.len()
        ));
        let extracted = extracted_text(text);
        for (n, chunk) in chunker.split(&extracted).into_iter().enumerate() {
            let v = embedder.embed_one(chunk);
            chunk_rows.push_str(&format!("{id}\t{n}\t"));
            copy_escape(chunk, &mut chunk_rows);
            let vec_text: Vec<String> = v.iter().map(|x| x.to_string()).collect();
            chunk_rows.push_str(&format!("\t[{}]\thash-v1\n", vec_text.join(",")));
            total += 1;
        }
    }
    let started = Instant::now();
    let mut conn = pool.acquire().await.expect("conn");
    let mut copy = conn
        .copy_in_raw("COPY documents (id, location, title, document_type, mime_type, content_hash, byte_size, status) FROM STDIN")
        .await
        .expect("copy docs");
    copy.send(doc_rows.as_bytes()).await.expect("send");
    copy.finish().await.expect("finish");
    let mut copy = conn
        .copy_in_raw("COPY chunks (document_id, chunk_index, content, embedding, embedding_model) FROM STDIN")
        .await
        .expect("copy chunks");
    copy.send(chunk_rows.as_bytes()).await.expect("send");
    copy.finish().await.expect("finish");
    let elapsed = started.elapsed();
    drop(conn);
    pool.close().await;
    (elapsed, total)
}

fn main() {
    let admin_url = admin_url();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let admin = admin_pool(&admin_url).await;
        let docs = corpus();
        let ours_url = fresh_db(&admin, &admin_url, "ragdoll_bench_ingest").await;
        let base_url = fresh_db(&admin, &admin_url, "ragdoll_bench_copy").await;
        let (base_t, base_chunks) = baseline(&base_url, &docs).await;
        let (ours_t, ours_chunks) = ours(&ours_url, &docs, |_| {}).await;
        assert_eq!(ours_chunks, base_chunks, "both sides store the same chunks");
        let ours_rate = ours_chunks as f64 / ours_t.as_secs_f64();
        let base_rate = base_chunks as f64 / base_t.as_secs_f64();
        println!("ingestion benchmark: {DOCS} documents, {ours_chunks} chunks, 384-dim hash embeddings, HNSW + GIN indexes");
        println!("{:<44} {:>9} {:>12}", "", "seconds", "chunks/s");
        println!("{:<44} {:>9.2} {:>12.0}", "baseline: COPY of the same rows", base_t.as_secs_f64(), base_rate);
        println!("{:<44} {:>9.2} {:>12.0}", "ragdoll: HTTP upload → queue → processed", ours_t.as_secs_f64(), ours_rate);
        println!("ratio (ragdoll / baseline): {:.2}  (target ≥ 0.70)", ours_rate / base_rate);
        drop_db(&admin, "ragdoll_bench_ingest").await;
        drop_db(&admin, "ragdoll_bench_copy").await;

        let english = english_corpus(LOCAL_DOCS, 900);
        let local_url = fresh_db(&admin, &admin_url, "ragdoll_bench_local").await;
        let (alone_t, alone_chunks) = model_alone(&english).await;
        let dir = model_dir();
        let (ours_t, ours_chunks) = ours(&local_url, &english, move |s| {
            s.embedding.provider = Some(ragdoll::config::EmbeddingProviderKind::Local);
            s.embedding.model_dir = Some(dir);
        })
        .await;
        assert_eq!(ours_chunks, alone_chunks, "both sides embed the same chunks");
        let ours_rate = ours_chunks as f64 / ours_t.as_secs_f64();
        let alone_rate = alone_chunks as f64 / alone_t.as_secs_f64();
        println!();
        println!("local model benchmark: {LOCAL_DOCS} English documents, {ours_chunks} chunks, all-MiniLM-L6-v2 (384 dims)");
        println!("{:<44} {:>9} {:>12}", "", "seconds", "chunks/s");
        println!("{:<44} {:>9.2} {:>12.1}", "baseline: the model alone on the same chunks", alone_t.as_secs_f64(), alone_rate);
        println!("{:<44} {:>9.2} {:>12.1}", "ragdoll: HTTP upload → queue → processed", ours_t.as_secs_f64(), ours_rate);
        println!("ratio (ragdoll / model alone): {:.2}  (target ≥ 0.85)", ours_rate / alone_rate);
        drop_db(&admin, "ragdoll_bench_local").await;
    });
}

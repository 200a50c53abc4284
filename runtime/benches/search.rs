//! Search benchmark on 100,000 chunks of 384 dimensions (clustered synthetic vectors with topic
//! words), loaded directly with binary COPY and indexed like production (HNSW m=16,
//! ef_construction=64; GIN on the tsvector).
//!
//! (a) recall@10 of semantic search over HTTP against exact results (sequential scan), for 200
//!     queries, with and without a 10%-selective metadata filter;
//! (b) latency p50/p99 and QPS over HTTP for each mode, next to the very same SQL statement issued
//!     directly with sqlx in the same run. Query vectors are precomputed and sent with the request,
//!     and the result cache is off, so both sides do the same search work.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use ragdoll::app::{self, RuntimeSettings};
use ragdoll::search::sql::{self, Ranking};
use ragdoll::search::{Mode, SearchRequest, SearchResponse};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Executor, PgPool};
use tokio_util::sync::CancellationToken;

mod support;
use support::{admin_pool, admin_url, drop_db, fresh_db, percentile};

const DIMS: usize = 384;
const CHUNKS: usize = 100_000;
const CHUNKS_PER_DOC: usize = 10;
const CLUSTERS: usize = 500;
const QUERIES: usize = 200;
const NOISE: f32 = 0.65;
/// Latency rounds over the query set.
const ROUNDS: usize = 3;
const DB: &str = "ragdoll_bench_search";

fn gaussian(rng: &mut StdRng) -> f32 {
    // Box-Muller
    let u1: f32 = rng.random_range(f32::EPSILON..1.0);
    let u2: f32 = rng.random_range(0.0..1.0);
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
}

fn normalise(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

struct Data {
    centroids: Vec<Vec<f32>>,
    topic_words: Vec<Vec<String>>,
}

impl Data {
    fn new(rng: &mut StdRng) -> Self {
        let centroids = (0..CLUSTERS)
            .map(|_| normalise((0..DIMS).map(|_| gaussian(rng)).collect()))
            .collect();
        let topic_words = (0..CLUSTERS)
            .map(|c| (0..20).map(|w| format!("topic{c}word{w}")).collect())
            .collect();
        Self {
            centroids,
            topic_words,
        }
    }

    /// A point of `cluster`: its centroid plus noise of norm ≈ NOISE.
    fn point(&self, rng: &mut StdRng, cluster: usize) -> Vec<f32> {
        let scale = NOISE / (DIMS as f32).sqrt();
        normalise(
            self.centroids[cluster]
                .iter()
                .map(|c| c + scale * gaussian(rng))
                .collect(),
        )
    }

    fn text(&self, rng: &mut StdRng, cluster: usize) -> String {
        let mut words: Vec<String> = (0..10)
            .map(|_| self.topic_words[cluster][rng.random_range(0..20)].clone())
            .collect();
        words.extend((0..20).map(|_| format!("common{}", rng.random_range(0..2000))));
        words.join(" ")
    }
}

fn put_field(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
    buf.extend_from_slice(bytes);
}

/// Loads documents and chunks with binary COPY, then builds the indexes like `ragdoll migrate`.
async fn load(pool: &PgPool, data: &Data, rng: &mut StdRng) -> Duration {
    let started = Instant::now();
    let mut conn = pool.acquire().await.expect("conn");
    conn.execute("DROP INDEX chunks_embedding_hnsw_idx")
        .await
        .expect("drop hnsw");
    conn.execute("DROP INDEX chunks_content_tsv_idx")
        .await
        .expect("drop gin");
    let docs = CHUNKS / CHUNKS_PER_DOC;
    let mut doc_rows = String::new();
    let mut doc_ids = Vec::with_capacity(docs);
    for d in 0..docs {
        let id = uuid::Uuid::now_v7();
        doc_ids.push(id);
        // metadata.bucket: 10 buckets, so a bucket filter keeps 10% of the documents.
        doc_rows.push_str(&format!(
            "{id}\tdoc{d}\tdocument {d}\ttext\ttext/plain\th{d}\t1000\tprocessed\t{{\"bucket\": {}}}\n",
            d % 10
        ));
    }
    let mut copy = conn
        .copy_in_raw("COPY documents (id, location, title, document_type, mime_type, content_hash, byte_size, status, metadata) FROM STDIN")
        .await
        .expect("copy documents");
    copy.send(doc_rows.as_bytes()).await.expect("send");
    copy.finish().await.expect("finish");

    let mut buf = Vec::with_capacity(64 << 20);
    buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    buf.extend_from_slice(&0i32.to_be_bytes());
    buf.extend_from_slice(&0i32.to_be_bytes());
    let mut copy = conn
        .copy_in_raw("COPY chunks (document_id, chunk_index, content, embedding, embedding_model) FROM STDIN (FORMAT binary)")
        .await
        .expect("copy chunks");
    for i in 0..CHUNKS {
        let cluster = rng.random_range(0..CLUSTERS);
        let v = data.point(rng, cluster);
        buf.extend_from_slice(&5i16.to_be_bytes());
        put_field(&mut buf, doc_ids[i / CHUNKS_PER_DOC].as_bytes());
        put_field(&mut buf, &((i % CHUNKS_PER_DOC) as i32).to_be_bytes());
        put_field(&mut buf, data.text(rng, cluster).as_bytes());
        let mut vec_bytes = Vec::with_capacity(4 + 4 * DIMS);
        vec_bytes.extend_from_slice(&(DIMS as u16).to_be_bytes());
        vec_bytes.extend_from_slice(&0u16.to_be_bytes());
        for x in &v {
            vec_bytes.extend_from_slice(&x.to_be_bytes());
        }
        put_field(&mut buf, &vec_bytes);
        put_field(&mut buf, b"bench");
        if buf.len() > 32 << 20 {
            copy.send(std::mem::take(&mut buf)).await.expect("send");
        }
    }
    buf.extend_from_slice(&(-1i16).to_be_bytes());
    copy.send(buf).await.expect("send");
    copy.finish().await.expect("finish");
    let loaded = started.elapsed();
    conn.execute("SET maintenance_work_mem = '1GB'")
        .await
        .expect("set");
    conn.execute("SET max_parallel_maintenance_workers = 2")
        .await
        .expect("set");
    let t = Instant::now();
    conn.execute("CREATE INDEX chunks_embedding_hnsw_idx ON chunks USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)")
        .await
        .expect("hnsw");
    let hnsw = t.elapsed();
    conn.execute("CREATE INDEX chunks_content_tsv_idx ON chunks USING gin (content_tsv)")
        .await
        .expect("gin");
    conn.execute("VACUUM ANALYZE documents")
        .await
        .expect("analyze");
    conn.execute("VACUUM ANALYZE chunks")
        .await
        .expect("analyze");
    println!(
        "loaded {CHUNKS} chunks in {:.1}s (COPY {:.1}s, HNSW build {:.1}s)",
        started.elapsed().as_secs_f64(),
        loaded.as_secs_f64(),
        hnsw.as_secs_f64()
    );
    started.elapsed()
}

struct Query {
    vector: Vec<f32>,
    text: String,
}

fn request(q: &Query, mode: Mode, filtered: bool) -> serde_json::Value {
    let mut body = json!({"query": q.text, "mode": mode, "limit": 10, "threshold": -1.0});
    if mode != Mode::Fulltext {
        body["embedding"] = json!(q.vector);
    }
    if filtered {
        body["filters"] = json!({"metadata": {"bucket": 3}});
    }
    body
}

async fn http_search(
    http: &reqwest::Client,
    base: &str,
    body: &serde_json::Value,
) -> SearchResponse {
    let resp = http
        .post(format!("{base}/v1/search"))
        .bearer_auth("bench")
        .json(body)
        .send()
        .await
        .expect("search");
    assert!(
        resp.status().is_success(),
        "{}",
        resp.text().await.unwrap_or_default()
    );
    resp.json().await.expect("json")
}

/// Exact top-10 by sequential scan (index scans disabled in this transaction).
async fn exact(pool: &PgPool, q: &Query, filtered: bool) -> HashSet<i64> {
    let mut tx = pool.begin().await.expect("tx");
    tx.execute("SET LOCAL enable_indexscan = off")
        .await
        .expect("set");
    tx.execute("SET LOCAL enable_bitmapscan = off")
        .await
        .expect("set");
    let sql = if filtered {
        "SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id WHERE d.metadata @> '{\"bucket\": 3}' \
         ORDER BY c.embedding <=> $1 LIMIT 10"
    } else {
        "SELECT c.id FROM chunks c ORDER BY c.embedding <=> $1 LIMIT 10"
    };
    let ids: Vec<i64> = sqlx::query_scalar(sql)
        .bind(pgvector::Vector::from(q.vector.clone()))
        .fetch_all(&mut *tx)
        .await
        .expect("exact");
    ids.into_iter().collect()
}

struct Latency {
    p50: f64,
    p99: f64,
}

fn summarise(mut samples: Vec<f64>) -> Latency {
    samples.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    Latency {
        p50: percentile(&samples, 50.0),
        p99: percentile(&samples, 99.0),
    }
}

fn main() {
    let admin_url = admin_url();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let admin = admin_pool(&admin_url).await;
        let url = fresh_db(&admin, &admin_url, DB).await;
        let mut s = RuntimeSettings::new(&url);
        s.search.cache_ttl_secs = 0; // every request does the work
        s.search.usage_flush_interval_ms = 1000;
        s.db.max_connections = 8;
        let pool = app::open_database(&s, true).await.expect("open");
        let mut rng = StdRng::seed_from_u64(7);
        let data = Data::new(&mut rng);
        load(&pool, &data, &mut rng).await;

        let queries: Vec<Query> = (0..QUERIES)
            .map(|_| {
                let cluster = rng.random_range(0..CLUSTERS);
                let w1 = rng.random_range(0..20);
                let w2 = (w1 + 1 + rng.random_range(0..19)) % 20;
                Query {
                    vector: data.point(&mut rng, cluster),
                    text: format!("{} {}", data.topic_words[cluster][w1], data.topic_words[cluster][w2]),
                }
            })
            .collect();

        // The runtime's API on loopback.
        let shutdown = CancellationToken::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (state, tasks) = app::start_api(pool.clone(), &s, Some(vec!["bench".into()]), shutdown.clone()).expect("api");
        let search_service = state.search.clone();
        let server = tokio::spawn(app::serve_http(listener, state, shutdown.clone()));
        let http = ragdoll::http::client_builder().pool_max_idle_per_host(16).build().expect("client");

        // (a) recall@10
        println!("\n(a) recall@10 of semantic search (HNSW, ef_search {}) against exact scans, {QUERIES} queries", s.search.ef_search);
        for filtered in [false, true] {
            let mut found = 0usize;
            for q in &queries {
                let truth = exact(&pool, q, filtered).await;
                let got = http_search(&http, &base, &request(q, Mode::Semantic, filtered)).await;
                found += got.results.iter().filter(|h| truth.contains(&h.chunk_id)).count();
                assert_eq!(got.results.len(), 10, "a search returns its limit");
            }
            let recall = found as f64 / (QUERIES * 10) as f64;
            let (label, target) = if filtered { ("with a 10%-selective metadata filter", 0.90) } else { ("unfiltered", 0.95) };
            println!("  {label:<40} recall {recall:.3}  (target ≥ {target:.2})");
        }

        // (b) latency and throughput per mode, HTTP vs the same SQL directly.
        let direct = PgPoolOptions::new()
            .max_connections(8)
            .connect_with(
                url.parse::<sqlx::postgres::PgConnectOptions>()
                    .expect("url")
                    .options(s.session()),
            )
            .await
            .expect("direct pool");
        // The floor any HTTP answer pays here: GET /healthz round trips.
        let mut floor = Vec::new();
        for _ in 0..500 {
            let t = Instant::now();
            let r = http.get(format!("{base}/healthz")).send().await.expect("healthz");
            r.bytes().await.expect("body");
            floor.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        floor.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
        println!("\nHTTP round-trip floor (GET /healthz on loopback): p50 {:.3}ms", percentile(&floor, 50.0));
        println!("\n(b) latency over {QUERIES} queries × {ROUNDS} rounds, one client, SQL and HTTP interleaved; QPS with 4 concurrent clients");
        println!("  {:<10} {:<8} {:>9} {:>9} {:>9}   {:>9} {:>9} {:>9}   {:>10}", "mode", "filter", "SQL p50", "SQL p99", "SQL QPS", "HTTP p50", "HTTP p99", "HTTP QPS", "p50 ratio");
        for mode in [Mode::Semantic, Mode::Fulltext, Mode::Hybrid] {
            for filtered in [false, true] {
                let bodies: Vec<serde_json::Value> = queries.iter().map(|q| request(q, mode, filtered)).collect();
                let searches: Vec<_> = bodies
                    .iter()
                    .map(|b| search_service.validate(serde_json::from_value::<SearchRequest>(b.clone()).expect("request")).expect("valid"))
                    .collect();
                let run_sql = |i: usize| {
                    let search = &searches[i];
                    let ranking = match mode {
                        Mode::Fulltext => Ranking::Fulltext,
                        Mode::Semantic => Ranking::Semantic(pgvector::Vector::from(queries[i].vector.clone())),
                        Mode::Hybrid => Ranking::Hybrid(pgvector::Vector::from(queries[i].vector.clone())),
                    };
                    let direct = direct.clone();
                    let settings = s.search.clone();
                    async move {
                        let mut qb = sql::build(search, ranking, &settings.text_search_config, &settings);
                        qb.build_query_as::<ragdoll::search::SearchHit>().fetch_all(&direct).await.expect("sql")
                    }
                };
                if std::env::var("RAGDOLL_BENCH_EXPLAIN").is_ok() {
                    let ranking = match mode {
                        Mode::Fulltext => Ranking::Fulltext,
                        _ if mode == Mode::Semantic => Ranking::Semantic(pgvector::Vector::from(queries[0].vector.clone())),
                        _ => Ranking::Hybrid(pgvector::Vector::from(queries[0].vector.clone())),
                    };
                    let mut qb = sql::build_explain(&searches[0], ranking, &s.search.text_search_config, &s.search);
                    let plan: Vec<String> = qb.build_query_scalar().fetch_all(&direct).await.expect("explain");
                    println!("--- {} filtered={filtered}\n{}", mode.as_str(), plan.join("\n"));
                }
                // Warm both paths on every query (plans, connections, buffers), then measure
                // interleaved — per query, alternately SQL first and HTTP first — so neither
                // side runs on buffers the other one just warmed for it.
                for (i, b) in bodies.iter().enumerate() {
                    run_sql(i).await;
                    http_search(&http, &base, b).await;
                }
                let (mut sql_ms, mut http_ms) = (Vec::new(), Vec::new());
                for round in 0..ROUNDS {
                    for (i, b) in bodies.iter().enumerate() {
                        for side in if (i + round) % 2 == 0 { [0, 1] } else { [1, 0] } {
                            let t = Instant::now();
                            if side == 0 {
                                run_sql(i).await;
                                sql_ms.push(t.elapsed().as_secs_f64() * 1000.0);
                            } else {
                                http_search(&http, &base, b).await;
                                http_ms.push(t.elapsed().as_secs_f64() * 1000.0);
                            }
                        }
                    }
                }
                let sql_lat = summarise(sql_ms);
                let http_lat = summarise(http_ms);
                // Throughput with 4 concurrent clients.
                let wall = Instant::now();
                futures::StreamExt::for_each_concurrent(futures::stream::iter(0..QUERIES), 4, |i| async move {
                    run_sql(i).await;
                })
                .await;
                let sql_qps = QUERIES as f64 / wall.elapsed().as_secs_f64();
                let wall = Instant::now();
                futures::StreamExt::for_each_concurrent(futures::stream::iter(bodies.iter()), 4, |b| {
                    let (http, base) = (&http, &base);
                    async move {
                        http_search(http, base, b).await;
                    }
                })
                .await;
                let http_qps = QUERIES as f64 / wall.elapsed().as_secs_f64();
                println!(
                    "  {:<10} {:<8} {:>7.2}ms {:>7.2}ms {:>9.0}   {:>7.2}ms {:>7.2}ms {:>9.0}   {:>9.2}x",
                    mode.as_str(),
                    if filtered { "10%" } else { "none" },
                    sql_lat.p50,
                    sql_lat.p99,
                    sql_qps,
                    http_lat.p50,
                    http_lat.p99,
                    http_qps,
                    http_lat.p50 / sql_lat.p50
                );
            }
        }
        println!("  target: HTTP p50 ≤ 1.3× the direct SQL p50");
        shutdown.cancel();
        let _ = server.await;
        for t in tasks {
            let _ = t.await;
        }
        pool.close().await;
        direct.close().await;
        drop_db(&admin, DB).await;
    });
}

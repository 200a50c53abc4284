//! Test harness: a fresh database per test on the project's local PostgreSQL (started through
//! tests/env/pg.sh if DATABASE_URL is not set), an in-process runtime (API + workers) on a real
//! TCP port, and helpers to call it.
#![allow(dead_code)]

pub mod openai_mock;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ragdoll::app::{self, RuntimeSettings};
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, PgPool};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const API_KEY: &str = "test-key-1";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn fixture(rel: &str) -> PathBuf {
    repo_root().join("tests/fixtures").join(rel)
}

/// Runs tests/env/pg.sh with extra environment and returns the DATABASE_URL it prints.
pub fn pg_script(action: &str, env: &[(&str, &str)]) -> String {
    let out = std::process::Command::new(repo_root().join("tests/env/pg.sh"))
        .arg(action)
        .envs(env.iter().copied())
        .output()
        .expect("run tests/env/pg.sh");
    assert!(
        out.status.success(),
        "tests/env/pg.sh {action} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("DATABASE_URL=").map(String::from))
        .unwrap_or_default()
}

/// The local embedding model's directory (fetched through tests/env/models.sh on first use).
pub fn model_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| match std::env::var("RAGDOLL_MODEL_DIR") {
        Ok(d) if !d.is_empty() => PathBuf::from(d),
        _ => {
            let out = std::process::Command::new(repo_root().join("tests/env/models.sh"))
                .output()
                .expect("run models.sh");
            assert!(
                out.status.success(),
                "models.sh failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            PathBuf::from(
                text.lines()
                    .find_map(|l| l.strip_prefix("RAGDOLL_MODEL_DIR="))
                    .expect("models.sh prints the directory"),
            )
        }
    })
}

/// The server-level URL of the shared local Postgres (started on first use).
pub fn admin_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| match std::env::var("DATABASE_URL") {
        Ok(u) if !u.is_empty() => u,
        _ => pg_script("up", &[]),
    })
}

fn with_database(url: &str, db: &str) -> String {
    let (base, _) = url
        .rsplit_once('/')
        .expect("DATABASE_URL has a database name");
    format!("{base}/{db}")
}

/// A database of its own for one test, dropped afterwards.
pub struct TestDb {
    pub url: String,
    pub name: String,
    admin: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        Self::create_on(admin_url()).await
    }

    pub async fn create_on(admin: &str) -> TestDb {
        let name = format!(
            "ragdoll_test_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(admin)
            .await
            .expect("connect admin");
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&pool)
            .await
            .expect("create test database");
        pool.close().await;
        TestDb {
            url: with_database(admin, &name),
            name,
            admin: admin.to_string(),
        }
    }

    pub async fn pool(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(4)
            .connect(&self.url)
            .await
            .expect("connect test db")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.name.clone();
        // Drop runs outside async context on its own thread and runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let pool = PgPoolOptions::new()
                    .max_connections(1)
                    .connect(&admin)
                    .await
                    .ok()?;
                sqlx::query(AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&pool)
                .await
                .ok()
            })
        })
        .join();
    }
}

/// Settings tuned for fast tests: short polls and backoffs.
pub fn test_settings(url: &str) -> RuntimeSettings {
    let mut s = RuntimeSettings::new(url);
    s.db.max_connections = 10;
    s.db.connect_timeout_secs = 10;
    s.queue.poll_interval_ms = 100;
    s.queue.backoff_base_ms = 50;
    s.queue.backoff_max_ms = 500;
    s.queue.visibility_timeout_secs = 30;
    s.queue.shutdown_grace_secs = 5;
    s.search.usage_flush_interval_ms = 100;
    s
}

/// The runtime in-process: API on a random loopback port, workers for all queues.
pub struct TestApp {
    pub base: String,
    pub db: TestDb,
    pub pool: PgPool,
    pub http: reqwest::Client,
    pub settings: RuntimeSettings,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl TestApp {
    pub async fn start() -> TestApp {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(customize: impl FnOnce(&mut RuntimeSettings)) -> TestApp {
        let db = TestDb::create().await;
        Self::start_on(db, customize, true).await
    }

    pub async fn start_on(
        db: TestDb,
        customize: impl FnOnce(&mut RuntimeSettings),
        workers: bool,
    ) -> TestApp {
        let mut settings = test_settings(&db.url);
        customize(&mut settings);
        let pool = app::open_database(&settings, true)
            .await
            .expect("open database");
        let shutdown = CancellationToken::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (state, mut tasks) = app::start_api(
            pool.clone(),
            &settings,
            Some(vec![API_KEY.to_string()]),
            shutdown.clone(),
        )
        .expect("start api");
        let sd = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            app::serve_http(listener, state, sd).await.expect("serve");
        }));
        if workers {
            let pipeline = std::sync::Arc::new(
                app::build_pipeline(pool.clone(), &settings).expect("pipeline"),
            );
            let cfg = app::worker_config(&settings, &ragdoll::queue::Queue::ALL, None);
            tasks.push(tokio::spawn(app::run_workers(
                pipeline,
                cfg,
                shutdown.clone(),
            )));
        }
        TestApp {
            base,
            db,
            pool,
            http: ragdoll::http::client_builder()
                .build()
                .expect("http client"),
            settings,
            shutdown,
            tasks,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(path)).bearer_auth(API_KEY)
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(self.url(path)).bearer_auth(API_KEY)
    }

    pub fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.delete(self.url(path)).bearer_auth(API_KEY)
    }

    /// A single integer from SQL without parameters (counts, mostly).
    pub async fn scalar(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.pool)
            .await
            .expect("scalar query")
    }

    /// Multipart upload of `bytes` as `filename`; returns status and JSON body.
    pub async fn upload(&self, filename: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name(filename.to_string()),
        );
        let resp = self
            .post("/v1/documents")
            .multipart(form)
            .send()
            .await
            .expect("upload");
        json_of(resp).await
    }

    pub async fn upload_fixture(&self, rel: &str) -> (StatusCode, Value) {
        let path = fixture(rel);
        let bytes = std::fs::read(&path).expect("read fixture");
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("x")
            .to_string();
        self.upload(&name, bytes).await
    }

    pub async fn document(&self, id: &str) -> Value {
        let resp = self
            .get(&format!("/v1/documents/{id}"))
            .send()
            .await
            .expect("get");
        let (status, body) = json_of(resp).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// Waits until the document reaches `processed` or `failed` and its analysis has run.
    pub async fn wait_done(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let d = self.document(id).await;
            let status = d["status"].as_str().unwrap_or_default();
            let settled =
                status == "failed" || (status == "processed" && d["analysis_status"] != "pending");
            if settled {
                return d;
            }
            assert!(
                Instant::now() < deadline,
                "document {id} never settled: {d}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the server and workers (running their shutdown paths) and hands back the
    /// database, which is dropped with it unless the caller keeps it.
    pub async fn stop(self) -> TestDb {
        self.shutdown.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        self.pool.close().await;
        self.db
    }
}

pub async fn json_of(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

pub async fn count(pool: &PgPool, sql: &'static str, id: uuid::Uuid) -> i64 {
    sqlx::query_scalar(sql)
        .bind(id)
        .fetch_one(pool)
        .await
        .expect("count query")
}

/// The job of `kind` in a document's `jobs` list.
pub fn job_of<'a>(doc: &'a Value, kind: &str) -> &'a Value {
    doc["jobs"]
        .as_array()
        .and_then(|jobs| jobs.iter().find(|j| j["kind"] == kind))
        .unwrap_or_else(|| panic!("no {kind} job in {doc}"))
}

pub fn uuid_of(v: &Value) -> uuid::Uuid {
    v["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("response has an id")
}

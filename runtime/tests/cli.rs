//! The `ragdoll` binary as users run it: start-up refusals with clear messages, `serve
//! --with-workers`, `ingest --recursive --wait` (exit status and one line per failure), `status`.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn ragdoll(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ragdoll"))
        .args(args)
        .env_remove("RAGDOLL_API_KEYS")
        .env_remove("DATABASE_URL")
        .envs(env.iter().copied())
        .output()
        .expect("run ragdoll")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn help_documents_every_setting() {
    let out = ragdoll(&["serve", "--help"], &[]);
    assert!(out.status.success());
    let help = text(&out);
    for var in [
        "DATABASE_URL",
        "RAGDOLL_EMBEDDING_PROVIDER",
        "RAGDOLL_EMBEDDING_MODEL",
        "RAGDOLL_EMBEDDING_DIMENSIONS",
        "RAGDOLL_EMBEDDING_BASE_URL",
        "RAGDOLL_EMBEDDING_API_KEY",
        "RAGDOLL_CHUNK_SIZE",
        "RAGDOLL_CHUNK_OVERLAP",
        "RAGDOLL_MAX_FILE_SIZE",
        "RAGDOLL_API_KEYS",
        "RAGDOLL_LOG_FORMAT",
    ] {
        assert!(help.contains(var), "--help does not mention {var}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_refusals_are_clear() {
    let db = TestDb::create().await;
    let out = ragdoll(&["serve"], &[("DATABASE_URL", &db.url)]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("no API keys configured"),
        "{}",
        text(&out)
    );

    let out = ragdoll(&["worker"], &[("DATABASE_URL", &db.url)]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("run `ragdoll migrate`"),
        "{}",
        text(&out)
    );

    let out = ragdoll(&["migrate"], &[("DATABASE_URL", &db.url)]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("embedding dimensions 384"),
        "{}",
        text(&out)
    );
    let report = std::env::temp_dir().join(format!("{}-report.json", db.name));
    let again = ragdoll(
        &["migrate", "--report", report.to_str().unwrap()],
        &[("DATABASE_URL", &db.url)],
    );
    assert!(
        again.status.success(),
        "migrate is idempotent: {}",
        text(&again)
    );
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(
        written["schema_version"],
        ragdoll::db::schema::expected_version()
    );
    assert_eq!(written["embedding_dimensions"], 384);
    let _ = std::fs::remove_file(&report);

    // Housekeeping runs against a migrated database and says what it did.
    let out = ragdoll(
        &["maintain", "--vacuum-analyze", "--reindex"],
        &[("DATABASE_URL", &db.url)],
    );
    assert!(out.status.success(), "{}", text(&out));
    let done: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(done["vacuumed"].as_array().unwrap().len(), 5);
    assert_eq!(
        done["reindexed"],
        serde_json::json!(["chunks_embedding_hnsw_idx", "chunks_content_tsv_idx"])
    );
    let out = ragdoll(
        &["worker"],
        &[
            ("DATABASE_URL", &db.url),
            ("RAGDOLL_DATABASE_SSL_MODE", "sometimes"),
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("RAGDOLL_DATABASE_SSL_MODE"),
        "{}",
        text(&out)
    );

    let out = ragdoll(
        &["worker"],
        &[
            ("DATABASE_URL", &db.url),
            ("RAGDOLL_EMBEDDING_DIMENSIONS", "1536"),
        ],
    );
    assert!(!out.status.success());
    let msg = text(&out);
    assert!(
        msg.contains("embedding dimension mismatch") && msg.contains("384") && msg.contains("1536"),
        "{msg}"
    );

    let out = ragdoll(
        &["worker"],
        &[("DATABASE_URL", &db.url), ("RAGDOLL_CHUNK_OVERLAP", "1000")],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("chunk overlap (1000) must be smaller than chunk size (1000)"),
        "{}",
        text(&out)
    );

    let out = ragdoll(
        &["worker", "--queues", "sidekiq"],
        &[("DATABASE_URL", &db.url)],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("unknown queue `sidekiq`"),
        "{}",
        text(&out)
    );
}

struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_wait_and_status_against_a_served_runtime() {
    let db = TestDb::create().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server_url = format!("http://127.0.0.1:{port}");
    let log_path = std::env::temp_dir().join(format!("ragdoll-cli-test-{port}.log"));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut server = Server(
        Command::new(env!("CARGO_BIN_EXE_ragdoll"))
            .args([
                "serve",
                "--with-workers",
                "--migrate",
                "--bind",
                &format!("127.0.0.1:{port}"),
            ])
            .env("DATABASE_URL", &db.url)
            .env("RAGDOLL_API_KEYS", "k1,sk-very-secret-2")
            .env("RAGDOLL_JOB_POLL_INTERVAL_MS", "100")
            .env("RAGDOLL_LOG_FORMAT", "json")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let http = ragdoll::http::client_builder().build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(format!("{server_url}/readyz")).send().await
            && r.status().is_success()
        {
            break;
        }
        assert!(Instant::now() < deadline, "server never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let docs = fixture("documents");
    let docs = docs.to_str().unwrap();
    let client_env = [
        ("RAGDOLL_SERVER", server_url.as_str()),
        ("RAGDOLL_API_KEY", "sk-very-secret-2"),
    ];

    let out = ragdoll(&["ingest", "--recursive", "--wait", docs], &client_env);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("uploaded 10 file(s): 10 new, 0 already stored, 0 failed"),
        "{}",
        text(&out)
    );

    let out = ragdoll(&["status"], &client_env);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("10 document(s): 10 processed, 0 failed"),
        "{}",
        text(&out)
    );

    // Again: all duplicates, still success.
    let out = ragdoll(&["ingest", "--recursive", docs], &client_env);
    assert!(out.status.success());
    assert!(
        text(&out).contains("0 new, 10 already stored"),
        "{}",
        text(&out)
    );

    // Invalid files: one FAILED line each, non-zero exit.
    let invalid = fixture("invalid");
    let out = ragdoll(
        &["ingest", "--recursive", "--wait", invalid.to_str().unwrap()],
        &client_env,
    );
    assert!(!out.status.success());
    let msg = text(&out);
    for needle in [
        "FAILED",
        "empty.txt: HTTP 400",
        "program.bin: HTTP 415",
        "truncated.pdf: extraction failed",
        "not-a-zip.docx: extraction failed",
        "not-an-image.png: extraction failed: cannot read image",
        "truncated.wav: extraction failed: cannot read audio: the wave file is truncated",
    ] {
        assert!(msg.contains(needle), "missing `{needle}` in:\n{msg}");
    }
    assert_eq!(msg.matches("FAILED").count(), 8, "{msg}");

    // A directory without --recursive, a missing path, a wrong key.
    let out = ragdoll(&["ingest", docs], &client_env);
    assert!(!out.status.success());
    assert!(text(&out).contains("is a directory (use --recursive)"));
    let out = ragdoll(
        &["status"],
        &[
            ("RAGDOLL_SERVER", server_url.as_str()),
            ("RAGDOLL_API_KEY", "nope"),
        ],
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("invalid API key"), "{}", text(&out));

    // Search and context from the command line.
    let out = ragdoll(
        &[
            "search",
            "pneumatic tyre",
            "--mode",
            "fulltext",
            "--limit",
            "3",
        ],
        &client_env,
    );
    assert!(out.status.success(), "{}", text(&out));
    let shown = text(&out);
    assert!(
        shown.contains("result(s), fulltext search") && shown.contains("bicycle-history"),
        "{shown}"
    );
    let out = ragdoll(&["search", "offshore wind", "--json"], &client_env);
    assert!(out.status.success());
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["mode"], "hybrid");
    assert_eq!(
        answer["results"][0]["title"],
        "Renewable Energy Quarterly Report"
    );
    let out = ragdoll(
        &["context", "sourdough starter", "--limit", "1"],
        &client_env,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("wild yeast"));
    let out = ragdoll(&["search", "x", "--limit", "0"], &client_env);
    assert!(!out.status.success());
    assert!(text(&out).contains("between 1 and 50"), "{}", text(&out));

    // The server's JSON log: one JSON object per line, request ids on request lines, and
    // neither API keys nor document content.
    let _ = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status();
    let _ = server.0.wait();
    let log = std::fs::read_to_string(&log_path).unwrap();
    let _ = std::fs::remove_file(&log_path);
    let mut with_request_id = 0;
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if v["span"]["request_id"]
            .as_str()
            .is_some_and(|id| id.len() == 36)
        {
            with_request_id += 1;
        }
    }
    assert!(
        with_request_id > 20,
        "request lines carry request ids ({with_request_id})"
    );
    for secret in ["sk-very-secret-2", "pneumatic", "wild yeast", "Dunlop"] {
        assert!(!log.contains(secret), "the log contains `{secret}`");
    }
}

//! The contract between operator and runtime: every container the operator renders (API,
//! workers, migration Job, maintenance, reindex and backup CronJobs) is run here with exactly its
//! command, arguments and environment — ConfigMap and Secret references resolved from the API
//! server, only the database pointed at the local test Postgres and listen ports made local —
//! using the real `ragdoll` binary, and `pg_dump`/`pg_restore` for backups. What the operator
//! writes must actually run.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, Secret};
use kube::Client;
use kube::api::{Api, ListParams};
use ragdoll_e2e::*;
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, PgPool};

fn pg_tool(args: &[&str]) -> String {
    let out = Command::new(repo_root().join("tests/env/pg.sh"))
        .args(args)
        .output()
        .expect("pg.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .lines()
        .last()
        .unwrap_or_default()
        .to_string()
}

async fn fresh_database(admin_url: &str, name: &str) -> String {
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(admin_url)
        .await
        .expect("admin");
    sqlx::query(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&admin)
    .await
    .expect("drop");
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .expect("create");
    admin.close().await;
    format!("{}/{name}", admin_url.rsplit_once('/').expect("url").0)
}

/// The container's environment with every reference resolved, as the kubelet would.
async fn resolve_env(client: &Client, ns: &str, c: &Container) -> BTreeMap<String, String> {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let mut env = BTreeMap::new();
    for from in c.env_from.clone().unwrap_or_default() {
        let name = from
            .config_map_ref
            .expect("only ConfigMap envFrom is rendered")
            .name;
        env.extend(
            cms.get(&name)
                .await
                .expect("envFrom ConfigMap")
                .data
                .unwrap_or_default(),
        );
    }
    for e in c.env.clone().unwrap_or_default() {
        let value = match (e.value, e.value_from) {
            (Some(v), _) => v,
            (None, Some(from)) => {
                let key = from.secret_key_ref.expect("only secretKeyRef is rendered");
                let s = secrets
                    .get(&key.name)
                    .await
                    .unwrap_or_else(|_| panic!("Secret {}", key.name));
                String::from_utf8(s.data.expect("data")[&key.key].0.clone()).expect("utf8")
            }
            (None, None) => String::new(),
        };
        env.insert(e.name, value);
    }
    env
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

/// Runs a rendered runtime container (image entrypoint `ragdoll`) with a clean environment plus
/// what the runtime image's Dockerfile sets (`ENV RAGDOLL_MODEL_DIR`, the model it carries).
fn ragdoll_command(args: &[String], env: &BTreeMap<String, String>) -> Command {
    let mut cmd = Command::new(workspace_bin("ragdoll"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RAGDOLL_MODEL_DIR", model_dir())
        .envs(env);
    cmd
}

fn localise(args: &[String], replacements: &[(&str, String)]) -> Vec<String> {
    args.iter()
        .map(|a| {
            replacements
                .iter()
                .fold(a.clone(), |acc, (from, to)| acc.replace(from, to))
        })
        .collect()
}

/// The first container of a pod template's spec.
fn first_container(pod: Option<PodSpec>) -> Container {
    pod.expect("a pod spec").containers.remove(0)
}

async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(pool)
        .await
        .expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rendered_container_runs_against_a_real_database() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, "e2e-contract").await;
    let op = InProcessOperator::start(&client, Some(&ns.name)).await;
    apply_yaml(&client, &ns.name, &example("minimal.yaml")).await;
    let kubelet = Kubelet::start(&client, &ns.name, MIGRATION_REPORT);
    wait_ready(&client, &ns.name, "ragdoll", Duration::from_secs(60)).await;
    drop(kubelet);

    let admin_url = pg_tool(&["up"])
        .trim_start_matches("DATABASE_URL=")
        .to_string();
    let db_url = fresh_database(&admin_url, "ragdoll_contract").await;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&db_url)
        .await
        .expect("connect");
    let point_at_test_db = |mut env: BTreeMap<String, String>| {
        assert!(
            env["DATABASE_URL"].contains(&format!("ragdoll-postgres.{}.svc:5432", ns.name)),
            "the rendered URL points at the managed database"
        );
        env.insert("DATABASE_URL".into(), db_url.clone());
        env
    };

    // 1. The migration Job: migrates and reports the schema version.
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns.name);
    let job = jobs
        .list(&ListParams::default().labels("app.kubernetes.io/component=migration"))
        .await
        .unwrap()
        .items
        .remove(0);
    let c = first_container(job.spec.unwrap().template.spec);
    assert!(c.image.as_deref().unwrap().starts_with("ragdoll/ragdoll:"));
    let report = std::env::temp_dir().join(format!("contract-report-{}", ns.name));
    let args = localise(
        &c.args.clone().unwrap(),
        &[("/dev/termination-log", report.display().to_string())],
    );
    let env = point_at_test_db(resolve_env(&client, &ns.name, &c).await);
    let out = ragdoll_command(&args, &env).output().unwrap();
    assert!(
        out.status.success(),
        "migrate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reported: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert!(reported["schema_version"].as_i64().unwrap() >= 2);
    assert_eq!(reported["embedding_dimensions"], 384);

    // 2. The API Deployment: serves /readyz and accepts a document with the generated key.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let api_port = free_port();
    let c = first_container(
        deployments
            .get("ragdoll-api")
            .await
            .unwrap()
            .spec
            .unwrap()
            .template
            .spec,
    );
    let args = localise(
        &c.args.clone().unwrap(),
        &[("0.0.0.0:8080", format!("127.0.0.1:{api_port}"))],
    );
    let env = point_at_test_db(resolve_env(&client, &ns.name, &c).await);
    let api_key = env["RAGDOLL_API_KEYS"].clone();
    assert!(api_key.starts_with("rdk_"), "the generated API key is used");
    let _api = Proc(
        ragdoll_command(&args, &env)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{api_port}");
    eventually(Duration::from_secs(30), "the API's /readyz", || async {
        http_get(&format!("{base}/readyz"))
            .await
            .is_some_and(|(c, _)| c == 200)
    })
    .await;

    // 3. Each worker Deployment claims its queue.
    let mut workers = Vec::new();
    for queue in ["processing", "embeddings", "analysis", "default"] {
        let c = first_container(
            deployments
                .get(&format!("ragdoll-worker-{queue}"))
                .await
                .unwrap()
                .spec
                .unwrap()
                .template
                .spec,
        );
        let port = free_port();
        let args = localise(
            &c.args.clone().unwrap(),
            &[("0.0.0.0:9090", format!("127.0.0.1:{port}"))],
        );
        let env = point_at_test_db(resolve_env(&client, &ns.name, &c).await);
        workers.push(Proc(
            ragdoll_command(&args, &env)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        ));
        let url = format!("http://127.0.0.1:{port}/readyz");
        eventually(Duration::from_secs(30), "a worker's /readyz", || {
            let u = url.clone();
            async move { http_get(&u).await.is_some_and(|(c, _)| c == 200) }
        })
        .await;
    }
    install_crypto();
    let http = reqwest::Client::new();
    let text =
        std::fs::read(repo_root().join("tests/fixtures/documents/bicycle-history.txt")).unwrap();
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(text).file_name("bicycle-history.txt"),
    );
    let resp = http
        .post(format!("{base}/v1/documents"))
        .bearer_auth(&api_key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    eventually(Duration::from_secs(60), "the document processed and analysed by the workers", || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM documents WHERE status = 'processed' AND analysis_status = 'completed' AND analysis_method = 'extractive'")
            .fetch_one(&pool)
            .await
            .is_ok_and(|n| n == 1)
    })
    .await;
    // Embedded by the default provider: the local model from the image, not the lexical hash.
    let models: Vec<String> = sqlx::query_scalar("SELECT DISTINCT embedding_model FROM chunks")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(
        models.len() == 1 && models[0].contains("MiniLM"),
        "{models:?}"
    );
    // The default queue has no pipeline jobs; a job of an unknown kind proves its worker claims it.
    sqlx::query("INSERT INTO jobs (queue, kind) VALUES ('default', 'contract_probe')")
        .execute(&pool)
        .await
        .unwrap();
    eventually(Duration::from_secs(30), "the default worker to claim its job", || async {
        sqlx::query_scalar::<_, String>("SELECT coalesce(last_error, '') FROM jobs WHERE kind = 'contract_probe' AND status = 'failed'")
            .fetch_optional(&pool)
            .await
            .ok()
            .flatten()
            .is_some_and(|e| e.contains("unknown job kind `contract_probe`"))
    })
    .await;
    drop(workers);

    // 4. Maintenance and reindex CronJobs.
    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), &ns.name);
    for name in ["ragdoll-maintenance", "ragdoll-reindex"] {
        let cj = cronjobs.get(name).await.unwrap();
        let c = first_container(cj.spec.unwrap().job_template.spec.unwrap().template.spec);
        let env = point_at_test_db(resolve_env(&client, &ns.name, &c).await);
        let out = ragdoll_command(&c.args.clone().unwrap(), &env)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if name == "ragdoll-maintenance" {
            assert_eq!(report["vacuumed"].as_array().unwrap().len(), 5);
        } else {
            assert_eq!(report["reindexed"].as_array().unwrap().len(), 2);
        }
    }

    // 5. The backup CronJob: its script with the real pg_dump; retention; the dump restores.
    let cj = cronjobs.get("ragdoll-backup").await.unwrap();
    let c = first_container(cj.spec.unwrap().job_template.spec.unwrap().template.spec);
    let command = c.command.clone().unwrap();
    assert_eq!(command[..2], ["/bin/sh".to_string(), "-c".to_string()]);
    let mut env = point_at_test_db(resolve_env(&client, &ns.name, &c).await);
    let dir = std::env::temp_dir().join(format!("contract-backups-{}", ns.name));
    std::fs::create_dir_all(&dir).unwrap();
    let stale = dir.join("ragdoll-20200101T000000Z.dump");
    std::fs::write(&stale, b"old").unwrap();
    assert!(
        Command::new("touch")
            .args(["-d", "40 days ago", stale.to_str().unwrap()])
            .status()
            .unwrap()
            .success()
    );
    env.insert("BACKUP_DIR".into(), dir.display().to_string());
    let pg_bin = PathBuf::from(pg_tool(&["bin"]));
    let path = format!(
        "{}:{}",
        pg_bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(&command[0])
        .args(&command[1..])
        .env_clear()
        .env("PATH", &path)
        .envs(&env)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "backup: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("backup written"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        !stale.exists(),
        "dumps older than retentionDays are deleted"
    );
    let dumps: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    assert_eq!(dumps.len(), 1, "{dumps:?}");
    let restored_url = fresh_database(&admin_url, "ragdoll_contract_restore").await;
    let out = Command::new(pg_bin.join("pg_restore"))
        .args([
            "--no-owner",
            "--exit-on-error",
            "-d",
            &restored_url,
            dumps[0].to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let restored = PgPoolOptions::new()
        .max_connections(1)
        .connect(&restored_url)
        .await
        .unwrap();
    for table in [
        "documents",
        "document_blobs",
        "contents",
        "chunks",
        "jobs",
        "ragdoll_meta",
        "_sqlx_migrations",
    ] {
        assert_eq!(
            count(&restored, table).await,
            count(&pool, table).await,
            "{table} after restore"
        );
    }
    // The restored database serves search: its vectors and indexes came back.
    let hits: i64 = sqlx::query_scalar("SELECT count(*) FROM chunks WHERE content_tsv @@ websearch_to_tsquery('english', 'pneumatic')")
        .fetch_one(&restored)
        .await
        .unwrap();
    assert!(hits >= 1);
    restored.close().await;
    pool.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&report);
    op.stop().await;
}

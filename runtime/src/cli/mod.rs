//! Command-line definitions and the long-running commands (`serve`, `worker`, `migrate`); the
//! client commands live in `ingest`.

mod ingest;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use ragdoll::app::{self, RuntimeSettings};
use ragdoll::config::LogFormat;
use ragdoll::db::schema;
use ragdoll::queue::Queue;

#[derive(Parser, Debug)]
#[command(
    name = "ragdoll",
    version,
    about = "Ragdoll runtime: document ingestion and retrieval on PostgreSQL + pgvector"
)]
pub struct Cli {
    /// Log format: text for terminals, json for production log pipelines.
    #[arg(long, env = "RAGDOLL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the HTTP API (and, with --with-workers, run all job queues in-process).
    Serve(ServeArgs),
    /// Run workers for some queues.
    Worker(WorkerArgs),
    /// Apply database migrations and pin the embedding dimension, then exit.
    Migrate(MigrateArgs),
    /// Switch to another embedding model or dimension: rebuild every chunk vector in the
    /// background (workers with the new settings do the work).
    Reembed(MigrateArgs),
    /// Database housekeeping: prune finished jobs and old searches; optionally VACUUM ANALYZE
    /// and REINDEX CONCURRENTLY the search indexes.
    Maintain(MaintainArgs),
    /// Upload files to a running server.
    Ingest(ingest::IngestArgs),
    /// Show the documents on a running server and their processing status.
    Status(ingest::StatusArgs),
    /// Search a running server.
    Search(ingest::SearchArgs),
    /// Print the prompt context a running server retrieves for a query.
    Context(ingest::ContextArgs),
}

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "RAGDOLL_BIND", default_value = "0.0.0.0:8080")]
    bind: SocketAddr,
    /// Also run workers for every queue in this process (development, small installs).
    #[arg(long, env = "RAGDOLL_WITH_WORKERS")]
    with_workers: bool,
    /// Apply migrations at start-up (development; production runs `ragdoll migrate` once).
    #[arg(long, env = "RAGDOLL_MIGRATE")]
    migrate: bool,
    /// Accepted API keys, comma-separated; clients send `Authorization: Bearer <key>`.
    #[arg(long, env = "RAGDOLL_API_KEYS", hide_env_values = true)]
    api_keys: Option<String>,
    /// Serve /v1 without authentication (local experiments only).
    #[arg(long)]
    insecure_no_auth: bool,
    #[command(flatten)]
    settings: RuntimeSettings,
}

#[derive(clap::Args, Debug)]
pub struct WorkerArgs {
    /// Queues to work on, comma-separated (processing, embeddings, analysis, default).
    #[arg(
        long,
        env = "RAGDOLL_WORKER_QUEUES",
        value_delimiter = ',',
        default_value = "processing,embeddings,analysis,default"
    )]
    queues: Vec<Queue>,
    /// Jobs per queue at once (default: embeddings 3, processing 2, analysis 1, default 1).
    #[arg(long, env = "RAGDOLL_WORKER_CONCURRENCY", value_parser = clap::value_parser!(u16).range(1..=256))]
    concurrency: Option<u16>,
    /// Apply migrations at start-up.
    #[arg(long, env = "RAGDOLL_MIGRATE")]
    migrate: bool,
    /// Serve /healthz, /readyz and /metrics for this worker on this address.
    #[arg(long, env = "RAGDOLL_METRICS_BIND")]
    metrics_bind: Option<SocketAddr>,
    #[command(flatten)]
    settings: RuntimeSettings,
}

#[derive(clap::Args, Debug)]
pub struct MigrateArgs {
    /// Also write {"schema_version", "embedding_dimensions"} as JSON to this file (the operator
    /// reads it from the Job pod's termination message).
    #[arg(long)]
    report: Option<std::path::PathBuf>,
    #[command(flatten)]
    settings: RuntimeSettings,
}

#[derive(clap::Args, Debug)]
pub struct MaintainArgs {
    /// VACUUM ANALYZE the documents, chunks, contents, jobs and searches tables.
    #[arg(long)]
    vacuum_analyze: bool,
    /// REINDEX INDEX CONCURRENTLY the vector and full-text indexes.
    #[arg(long)]
    reindex: bool,
    /// Delete succeeded jobs older than this many days.
    #[arg(long, env = "RAGDOLL_JOB_RETENTION_DAYS", default_value_t = 7)]
    job_retention_days: u32,
    #[command(flatten)]
    settings: RuntimeSettings,
}

pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("RAGDOLL_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
        LogFormat::Text => builder.init(),
    }
}

pub async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(a) => serve(a).await.map(|_| ExitCode::SUCCESS),
        Command::Worker(a) => worker(a).await.map(|_| ExitCode::SUCCESS),
        Command::Migrate(a) => migrate(a).await.map(|_| ExitCode::SUCCESS),
        Command::Maintain(a) => maintain(a).await.map(|_| ExitCode::SUCCESS),
        Command::Reembed(a) => reembed(a).await.map(|_| ExitCode::SUCCESS),
        Command::Ingest(a) => ingest::ingest(a).await,
        Command::Status(a) => ingest::status(a).await,
        Command::Search(a) => ingest::search(a).await,
        Command::Context(a) => ingest::context(a).await,
    }
}

async fn serve(a: ServeArgs) -> anyhow::Result<()> {
    let keys = a
        .api_keys
        .as_deref()
        .map(ragdoll::api::parse_api_keys)
        .unwrap_or_default();
    let keys = match (keys.is_empty(), a.insecure_no_auth) {
        (false, _) => Some(keys),
        (true, true) => {
            tracing::warn!("serving /v1 WITHOUT authentication (--insecure-no-auth)");
            None
        }
        (true, false) => bail!(
            "no API keys configured: set RAGDOLL_API_KEYS (comma-separated) or pass \
             --insecure-no-auth for a local experiment"
        ),
    };
    let pool = app::open_database(&a.settings, a.migrate).await?;
    let pipeline = Arc::new(app::build_pipeline(pool.clone(), &a.settings)?);
    let shutdown = app::shutdown_on_signals();
    let listener = tokio::net::TcpListener::bind(a.bind)
        .await
        .with_context(|| format!("cannot listen on {}", a.bind))?;
    tracing::info!(addr = %a.bind, with_workers = a.with_workers, "serving");
    let workers = a.with_workers.then(|| {
        let cfg = app::worker_config(&a.settings, &Queue::ALL, None);
        tokio::spawn(app::run_workers(pipeline.clone(), cfg, shutdown.clone()))
    });
    let (state, api_tasks) = app::start_api(pool.clone(), &a.settings, keys, shutdown.clone())?;
    let served = app::serve_http(listener, state, shutdown.clone()).await;
    shutdown.cancel();
    for t in api_tasks {
        t.await.context("API background task failed")?;
    }
    if let Some(w) = workers {
        w.await.context("worker task failed")?;
    }
    pool.close().await;
    served.context("HTTP server failed")
}

async fn worker(a: WorkerArgs) -> anyhow::Result<()> {
    let mut queues = a.queues.clone();
    queues.sort();
    queues.dedup();
    let pool = app::open_database(&a.settings, a.migrate).await?;
    let pipeline = Arc::new(app::build_pipeline(pool.clone(), &a.settings)?);
    let cfg = app::worker_config(&a.settings, &queues, a.concurrency.map(usize::from));
    let shutdown = app::shutdown_on_signals();
    let probes = match a.metrics_bind {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            tracing::info!(%addr, "serving worker probes and metrics");
            let router = ragdoll::api::health::worker_router(pool.clone());
            let sd = shutdown.clone();
            Some(tokio::spawn(async move {
                axum::serve(listener, router)
                    .with_graceful_shutdown(sd.cancelled_owned())
                    .await
            }))
        }
        None => None,
    };
    app::run_workers(pipeline, cfg, shutdown.clone()).await;
    shutdown.cancel();
    if let Some(p) = probes {
        p.await
            .context("probe server task failed")?
            .context("probe server failed")?;
    }
    pool.close().await;
    Ok(())
}

async fn migrate(a: MigrateArgs) -> anyhow::Result<()> {
    let pool = app::open_database(&a.settings, true).await?;
    let stored = schema::stored_vector_schema(&pool).await?;
    let version = schema::applied_version(&pool).await?.unwrap_or(0);
    let dimensions = stored.map_or(0, |s| s.dimensions);
    println!("database migrated: schema version {version}, embedding dimensions {dimensions}");
    if let Some(path) = &a.report {
        let report =
            serde_json::json!({"schema_version": version, "embedding_dimensions": dimensions});
        std::fs::write(path, report.to_string())
            .with_context(|| format!("cannot write the migration report to {}", path.display()))?;
    }
    pool.close().await;
    Ok(())
}

async fn reembed(a: MigrateArgs) -> anyhow::Result<()> {
    // The new provider must work before anything is cleared.
    ragdoll::embed::from_settings(&a.settings.embedding)?;
    let pool = ragdoll::db::connect(&a.settings.db, &a.settings.session()).await?;
    let r = schema::reembed(
        &pool,
        &a.settings.vector_schema(),
        a.settings.queue.max_attempts,
    )
    .await?;
    println!(
        "re-embedding {} document(s): {} ({} dimensions) -> {} ({} dimensions); workers with the new \
         settings rebuild the vectors in the background (GET /v1/jobs?queue=embeddings shows progress)",
        r.queued, r.from_model, r.from_dimensions, r.to_model, r.to_dimensions
    );
    pool.close().await;
    Ok(())
}

async fn maintain(a: MaintainArgs) -> anyhow::Result<()> {
    let pool = app::open_database(&a.settings, false).await?;
    let opts = ragdoll::maintenance::Options {
        vacuum_analyze: a.vacuum_analyze,
        reindex: a.reindex,
        job_retention_days: a.job_retention_days,
        search_retention_days: a.settings.search.retention_days,
    };
    let report = ragdoll::maintenance::run(&pool, &opts).await?;
    tracing::info!(?report, "maintenance finished");
    println!("{}", serde_json::to_string(&report)?);
    pool.close().await;
    Ok(())
}

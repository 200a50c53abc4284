//! `ragdoll ingest` (upload files over HTTP with a progress bar, optionally wait until each is
//! processed; one line per failure and a non-zero exit if any failed) and `ragdoll status`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};
use ragdoll::client::{Client, DocumentView};
use uuid::Uuid;

#[derive(clap::Args, Debug)]
pub struct ServerArgs {
    /// Base URL of the ragdoll server.
    #[arg(long, env = "RAGDOLL_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// API key (Authorization: Bearer).
    #[arg(long, env = "RAGDOLL_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
}

impl ServerArgs {
    fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::new(&self.server, self.api_key.clone())?)
    }
}

#[derive(clap::Args, Debug)]
pub struct IngestArgs {
    /// Files or directories to upload.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Descend into directories.
    #[arg(short, long)]
    recursive: bool,
    /// Wait until every document is processed (or failed).
    #[arg(long)]
    wait: bool,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 600)]
    wait_timeout: u64,
    /// Upload even when the same content is already stored.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArgs,
}

fn collect_files(paths: &[PathBuf], recursive: bool, failures: &mut Vec<String>) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            if !recursive {
                failures.push(format!("{}: is a directory (use --recursive)", p.display()));
                continue;
            }
            let mut found: Vec<PathBuf> = walkdir::WalkDir::new(p)
                .follow_links(true)
                .into_iter()
                .filter_map(|e| match e {
                    Ok(e) => Some(e),
                    Err(err) => {
                        failures.push(format!("{}: {err}", p.display()));
                        None
                    }
                })
                .filter(|e| e.file_type().is_file())
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .map(|e| e.into_path())
                .collect();
            found.sort();
            files.extend(found);
        } else if p.is_file() {
            files.push(p.clone());
        } else {
            failures.push(format!("{}: no such file or directory", p.display()));
        }
    }
    files
}

pub async fn ingest(a: IngestArgs) -> anyhow::Result<ExitCode> {
    let client = a.server.client()?;
    let mut failures = Vec::new();
    let files = collect_files(&a.paths, a.recursive, &mut failures);
    for f in &failures {
        eprintln!("FAILED {f}");
    }
    if files.is_empty() {
        bail!("no files to ingest");
    }
    let bar = ProgressBar::new(files.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut uploaded: Vec<(PathBuf, Uuid)> = Vec::new();
    let (mut new, mut duplicates) = (0usize, 0usize);
    for path in &files {
        bar.set_message(short(path));
        match client.upload(path, a.force).await {
            Ok(c) => {
                if c.duplicate {
                    duplicates += 1;
                } else {
                    new += 1;
                }
                uploaded.push((path.clone(), c.id));
            }
            Err(e) => {
                report(&bar, format!("FAILED {}: {e}", path.display()));
                failures.push(format!("{}: {e}", path.display()));
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    eprintln!(
        "uploaded {} file(s): {new} new, {duplicates} already stored, {} failed",
        files.len(),
        files.len() - new - duplicates
    );
    if a.wait && !uploaded.is_empty() {
        let failed = wait_for(&client, &uploaded, Duration::from_secs(a.wait_timeout)).await?;
        failures.extend(failed);
    }
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Prints above the progress bar; when stderr is not a terminal the bar is hidden and would
/// swallow the line, so it goes straight to stderr.
fn report(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

fn short(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Polls until every document is processed or failed; returns one line per failure.
async fn wait_for(
    client: &Client,
    docs: &[(PathBuf, Uuid)],
    timeout: Duration,
) -> anyhow::Result<Vec<String>> {
    let bar = ProgressBar::new(docs.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("processing {bar:40} {pos}/{len}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let deadline = Instant::now() + timeout;
    let mut pending: Vec<&(PathBuf, Uuid)> = docs.iter().collect();
    let mut failures = Vec::new();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for entry in pending {
            let (path, id) = entry;
            match client.document(*id).await {
                Ok(d) if d.status == "processed" => bar.inc(1),
                Ok(d) if d.status == "failed" => {
                    let line = format!("{}: {}", path.display(), d.error.unwrap_or_default());
                    report(&bar, format!("FAILED {line}"));
                    failures.push(line);
                    bar.inc(1);
                }
                Ok(_) => still.push(entry),
                Err(e) => {
                    report(&bar, format!("FAILED {}: {e}", path.display()));
                    failures.push(format!("{}: {e}", path.display()));
                    bar.inc(1);
                }
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            for (path, id) in pending {
                let line = format!(
                    "{}: still not processed after {}s (document {id})",
                    path.display(),
                    timeout.as_secs()
                );
                eprintln!("FAILED {line}");
                failures.push(line);
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bar.finish_and_clear();
    Ok(failures)
}

pub async fn status(a: StatusArgs) -> anyhow::Result<ExitCode> {
    let client = a.server.client()?;
    let docs = client.all_documents().await?;
    if a.json {
        let rows: Vec<serde_json::Value> = docs
            .iter()
            .map(|d| {
                serde_json::json!({
                    "id": d.id, "title": d.title, "location": d.location,
                    "document_type": d.document_type, "status": d.status, "error": d.error,
                    "chunk_count": d.chunk_count, "analysis_status": d.analysis_status,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    print_table(&docs);
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum ModeArg {
    Semantic,
    Fulltext,
    Hybrid,
}

impl ModeArg {
    fn as_str(self) -> &'static str {
        match self {
            ModeArg::Semantic => "semantic",
            ModeArg::Fulltext => "fulltext",
            ModeArg::Hybrid => "hybrid",
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct SearchArgs {
    /// What to look for.
    query: String,
    #[arg(long, value_enum, default_value_t = ModeArg::Hybrid)]
    mode: ModeArg,
    #[arg(long, default_value_t = 10)]
    limit: u32,
    /// Minimum cosine similarity (semantic and hybrid).
    #[arg(long, allow_negative_numbers = true)]
    threshold: Option<f32>,
    /// Only the best chunk of each document.
    #[arg(long)]
    group_by_document: bool,
    /// Print the server's JSON answer.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(clap::Args, Debug)]
pub struct ContextArgs {
    query: String,
    #[arg(long, default_value_t = 5)]
    limit: u32,
    #[arg(long, default_value_t = 4000)]
    max_chars: usize,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArgs,
}

pub async fn search(a: SearchArgs) -> anyhow::Result<ExitCode> {
    let mut body = serde_json::json!({
        "query": a.query, "mode": a.mode.as_str(), "limit": a.limit, "group_by_document": a.group_by_document,
    });
    if let Some(t) = a.threshold {
        body["threshold"] = t.into();
    }
    let answer = a.server.client()?.post_json("/v1/search", &body).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(ExitCode::SUCCESS);
    }
    let results = answer["results"].as_array().cloned().unwrap_or_default();
    println!(
        "{} result(s), {} search, {:.1} ms{}",
        results.len(),
        a.mode.as_str(),
        answer["took_ms"].as_f64().unwrap_or(0.0),
        if answer["cached"] == true {
            " (cached)"
        } else {
            ""
        }
    );
    for (i, r) in results.iter().enumerate() {
        let snippet: String = r["content"]
            .as_str()
            .unwrap_or("")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let snippet: String = snippet.chars().take(160).collect();
        println!(
            "\n{}. {} [{}] score {:.4}{}",
            i + 1,
            r["title"].as_str().unwrap_or(""),
            r["location"].as_str().unwrap_or(""),
            r["score"].as_f64().unwrap_or(0.0),
            r["similarity"]
                .as_f64()
                .map(|s| format!(", similarity {s:.3}"))
                .unwrap_or_default()
        );
        println!("   {snippet}");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn context(a: ContextArgs) -> anyhow::Result<ExitCode> {
    let body = serde_json::json!({"query": a.query, "limit": a.limit, "max_chars": a.max_chars});
    let answer = a.server.client()?.post_json("/v1/context", &body).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        println!("{}", answer["context"].as_str().unwrap_or(""));
        for s in answer["sources"].as_array().into_iter().flatten() {
            eprintln!(
                "source: {} ({}) chunk {}",
                s["title"].as_str().unwrap_or(""),
                s["location"].as_str().unwrap_or(""),
                s["chunk_index"]
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(docs: &[DocumentView]) {
    println!(
        "{:<36}  {:<9}  {:<10}  {:>6}  {:<9}  TITLE",
        "ID", "TYPE", "STATUS", "CHUNKS", "ANALYSIS"
    );
    for d in docs {
        let title: String = d.title.chars().take(40).collect();
        println!(
            "{:<36}  {:<9}  {:<10}  {:>6}  {:<9}  {title}",
            d.id, d.document_type, d.status, d.chunk_count, d.analysis_status
        );
        if let Some(err) = &d.error {
            println!("{:<36}  error: {err}", "");
        }
    }
    let count = |s: &str| docs.iter().filter(|d| d.status == s).count();
    println!(
        "\n{} document(s): {} processed, {} failed, {} pending, {} processing; {} chunks",
        docs.len(),
        count("processed"),
        count("failed"),
        count("pending"),
        count("processing"),
        docs.iter().map(|d| i64::from(d.chunk_count)).sum::<i64>()
    );
    // Why analysis was skipped or failed, once per distinct reason.
    let mut notes: Vec<(&str, usize)> = Vec::new();
    let unfinished = docs
        .iter()
        .filter(|d| d.analysis_status == "skipped" || d.analysis_status == "failed");
    for note in unfinished.filter_map(|d| d.analysis_note.as_deref()) {
        match notes.iter_mut().find(|(n, _)| *n == note) {
            Some((_, count)) => *count += 1,
            None => notes.push((note, 1)),
        }
    }
    for (note, count) in notes {
        println!("note ({count} document(s)): {note}");
    }
}

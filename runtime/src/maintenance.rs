//! Database housekeeping, run by `ragdoll maintain` from the operator's maintenance CronJobs:
//! VACUUM ANALYZE of the tables search and the queue depend on, REINDEX INDEX CONCURRENTLY of
//! the vector and full-text indexes (no table locks), and pruning of finished jobs and old
//! tracked searches. Statements that refuse transaction blocks go through the simple protocol.

use std::time::Instant;

use serde::Serialize;
use sqlx::PgPool;

pub const TABLES: [&str; 5] = ["documents", "chunks", "contents", "jobs", "searches"];
pub const INDEXES: [&str; 2] = ["chunks_embedding_hnsw_idx", "chunks_content_tsv_idx"];

#[derive(Clone, Debug)]
pub struct Options {
    pub vacuum_analyze: bool,
    pub reindex: bool,
    /// Succeeded jobs older than this many days are deleted (failed jobs are kept).
    pub job_retention_days: u32,
    /// Tracked searches older than this many days are deleted.
    pub search_retention_days: u32,
}

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Report {
    pub vacuumed: Vec<String>,
    pub reindexed: Vec<String>,
    pub jobs_pruned: u64,
    pub searches_pruned: u64,
    pub took_ms: u64,
}

pub async fn run(pool: &PgPool, opts: &Options) -> Result<Report, sqlx::Error> {
    let started = Instant::now();
    let mut report = Report::default();
    let r = sqlx::query(
        "DELETE FROM jobs WHERE status = 'succeeded' AND finished_at < now() - make_interval(days => $1)",
    )
    .bind(opts.job_retention_days as i32)
    .execute(pool)
    .await?;
    report.jobs_pruned = r.rows_affected();
    report.searches_pruned = crate::search::usage::prune(pool, opts.search_retention_days).await?;
    if opts.vacuum_analyze {
        for table in TABLES {
            // Constant identifiers only.
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("VACUUM (ANALYZE) {table}")))
                .execute(pool)
                .await?;
            report.vacuumed.push(table.to_string());
        }
    }
    if opts.reindex {
        for index in INDEXES {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "REINDEX INDEX CONCURRENTLY {index}"
            )))
            .execute(pool)
            .await?;
            report.reindexed.push(index.to_string());
        }
    }
    report.took_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

//! Usage analytics without write amplification: searches only bump in-memory counters of the
//! chunks they return (and, when tracking is on, queue a search record); a background task writes
//! them in batches — one UPDATE for all chunk counters and one INSERT for all searches per flush —
//! off the request path, and once more on shutdown. A failed flush keeps its data for the next.
//! The same task deletes tracked searches older than the retention period.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::metrics::metrics;

#[derive(Clone, Debug)]
pub struct SearchRecord {
    pub query: String,
    pub mode: &'static str,
    pub filters: Value,
    pub result_count: i32,
    pub top_score: Option<f64>,
    pub took_ms: f64,
    pub cached: bool,
}

#[derive(Default)]
struct Pending {
    /// chunk id → (times returned, last returned)
    chunks: HashMap<i64, (i32, DateTime<Utc>)>,
    searches: Vec<(SearchRecord, DateTime<Utc>)>,
}

pub struct UsageRecorder {
    track_searches: bool,
    pending: Mutex<Pending>,
}

/// What one flush wrote.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Flushed {
    pub chunks: usize,
    pub searches: usize,
}

impl UsageRecorder {
    pub fn new(track_searches: bool) -> Self {
        Self {
            track_searches,
            pending: Mutex::new(Pending::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        // A panic while holding this lock cannot leave the maps inconsistent; keep going.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn returned(&self, chunk_ids: impl Iterator<Item = i64>) {
        let now = Utc::now();
        let mut p = self.lock();
        for id in chunk_ids {
            let e = p.chunks.entry(id).or_insert((0, now));
            e.0 += 1;
            e.1 = now;
        }
    }

    /// Queues a search record when tracking is enabled (the record is built only then).
    pub fn searched(&self, record: impl FnOnce() -> SearchRecord) {
        if self.track_searches {
            let r = record();
            self.lock().searches.push((r, Utc::now()));
        }
    }

    /// Writes everything pending: one UPDATE and one INSERT, in one transaction.
    pub async fn flush(&self, pool: &PgPool) -> Result<Flushed, sqlx::Error> {
        let taken = std::mem::take(&mut *self.lock());
        if taken.chunks.is_empty() && taken.searches.is_empty() {
            return Ok(Flushed::default());
        }
        match write(pool, &taken).await {
            Ok(()) => {
                metrics().usage_flushes.with_label_values(&["ok"]).inc();
                Ok(Flushed {
                    chunks: taken.chunks.len(),
                    searches: taken.searches.len(),
                })
            }
            Err(e) => {
                metrics().usage_flushes.with_label_values(&["error"]).inc();
                self.restore(taken);
                Err(e)
            }
        }
    }

    fn restore(&self, taken: Pending) {
        let mut p = self.lock();
        for (id, (n, at)) in taken.chunks {
            let e = p.chunks.entry(id).or_insert((0, at));
            e.0 += n;
            e.1 = e.1.max(at);
        }
        let newer = std::mem::take(&mut p.searches);
        p.searches = taken.searches;
        p.searches.extend(newer);
    }

    /// Flushes every `interval` until `shutdown`, then once more; prunes old searches hourly.
    pub async fn run(
        &self,
        pool: PgPool,
        interval: Duration,
        retention_days: u32,
        shutdown: CancellationToken,
    ) {
        let mut since_prune = Duration::MAX;
        loop {
            let stopping = tokio::select! {
                _ = tokio::time::sleep(interval) => false,
                _ = shutdown.cancelled() => true,
            };
            if let Err(e) = self.flush(&pool).await {
                tracing::warn!(error = %e, "writing usage statistics failed; will retry");
            }
            if stopping {
                return;
            }
            since_prune = since_prune.saturating_add(interval);
            if self.track_searches && since_prune >= Duration::from_secs(3600) {
                since_prune = Duration::ZERO;
                match prune(&pool, retention_days).await {
                    Ok(n) if n > 0 => {
                        tracing::info!(deleted = n, retention_days, "pruned tracked searches")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "pruning tracked searches failed"),
                }
            }
        }
    }
}

async fn write(pool: &PgPool, p: &Pending) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    if !p.chunks.is_empty() {
        let mut ids = Vec::with_capacity(p.chunks.len());
        let mut counts = Vec::with_capacity(p.chunks.len());
        let mut times = Vec::with_capacity(p.chunks.len());
        for (id, (n, at)) in &p.chunks {
            ids.push(*id);
            counts.push(*n);
            times.push(*at);
        }
        sqlx::query(
            "UPDATE chunks c SET usage_count = c.usage_count + u.n, \
                 returned_at = greatest(c.returned_at, u.at) \
             FROM unnest($1::int8[], $2::int4[], $3::timestamptz[]) AS u(id, n, at) WHERE c.id = u.id",
        )
        .bind(&ids)
        .bind(&counts)
        .bind(&times)
        .execute(&mut *tx)
        .await?;
    }
    if !p.searches.is_empty() {
        let (mut q, mut m, mut f, mut n, mut top, mut took, mut cached, mut at) = (
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
        );
        for (r, t) in &p.searches {
            q.push(r.query.clone());
            m.push(r.mode.to_string());
            f.push(r.filters.clone());
            n.push(r.result_count);
            top.push(r.top_score);
            took.push(r.took_ms);
            cached.push(r.cached);
            at.push(*t);
        }
        sqlx::query(
            "INSERT INTO searches (query, mode, filters, result_count, top_score, took_ms, cached, created_at) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::int4[], $5::float8[], \
                                  $6::float8[], $7::bool[], $8::timestamptz[])",
        )
        .bind(&q)
        .bind(&m)
        .bind(&f)
        .bind(&n)
        .bind(&top)
        .bind(&took)
        .bind(&cached)
        .bind(&at)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// Deletes tracked searches older than `retention_days`.
pub async fn prune(pool: &PgPool, retention_days: u32) -> Result<u64, sqlx::Error> {
    let r =
        sqlx::query("DELETE FROM searches WHERE created_at < now() - make_interval(days => $1)")
            .bind(retention_days as i32)
            .execute(pool)
            .await?;
    Ok(r.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_accumulate_and_searches_are_only_kept_when_tracking() {
        let u = UsageRecorder::new(false);
        u.returned([1, 2, 1].into_iter());
        u.searched(|| panic!("not built when tracking is off"));
        let p = u.lock();
        assert_eq!(p.chunks[&1].0, 2);
        assert_eq!(p.chunks[&2].0, 1);
        assert!(p.searches.is_empty());
    }

    #[test]
    fn restore_merges_with_newer_counts() {
        let u = UsageRecorder::new(true);
        u.returned([7].into_iter());
        let taken = std::mem::take(&mut *u.lock());
        u.returned([7].into_iter());
        u.restore(taken);
        assert_eq!(u.lock().chunks[&7].0, 2);
    }
}

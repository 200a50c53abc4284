//! Search caches: query embeddings (LRU + TTL) and search results (TTL), both bounded, both
//! counted in metrics. Results are invalidated when documents change: a Postgres trigger
//! notifies `ragdoll_documents`, every API process listens (`listen_for_changes`) and bumps a
//! generation; a result computed under an older generation is never stored or served.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use moka::sync::Cache;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::SearchResponse;
use crate::metrics::metrics;

pub const CHANGES_CHANNEL: &str = "ragdoll_documents";

fn count(cache: &str, hit: bool) {
    metrics()
        .cache_requests
        .with_label_values(&[cache, if hit { "hit" } else { "miss" }])
        .inc();
}

pub struct QueryEmbeddingCache {
    inner: Option<Cache<String, Arc<Vec<f32>>>>,
}

impl QueryEmbeddingCache {
    pub fn new(max_entries: u64, ttl: Duration) -> Self {
        let inner = (max_entries > 0 && !ttl.is_zero()).then(|| {
            Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(ttl)
                .build()
        });
        Self { inner }
    }

    pub fn get(&self, key: &str) -> Option<Arc<Vec<f32>>> {
        let cache = self.inner.as_ref()?;
        let hit = cache.get(key);
        count("query_embedding", hit.is_some());
        hit
    }

    pub fn insert(&self, key: String, v: Vec<f32>) {
        if let Some(cache) = &self.inner {
            cache.insert(key, Arc::new(v));
            metrics()
                .cache_entries
                .with_label_values(&["query_embedding"])
                .set(cache.entry_count() as i64);
        }
    }
}

#[derive(Clone)]
struct Entry {
    generation: u64,
    response: Arc<SearchResponse>,
}

pub struct ResultCache {
    inner: Option<Cache<String, Entry>>,
    generation: AtomicU64,
}

impl ResultCache {
    pub fn new(max_entries: u64, ttl: Duration) -> Self {
        let inner = (max_entries > 0 && !ttl.is_zero()).then(|| {
            Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(ttl)
                .build()
        });
        Self {
            inner,
            generation: AtomicU64::new(0),
        }
    }

    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The current generation; pass it to `insert` for a result computed from now on.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    pub fn get(&self, key: &str) -> Option<SearchResponse> {
        let cache = self.inner.as_ref()?;
        let hit = cache
            .get(key)
            .filter(|e| e.generation == self.generation())
            .map(|e| e.response.as_ref().clone());
        count("search_result", hit.is_some());
        hit
    }

    /// Stores a result unless documents changed while it was computed.
    pub fn insert(&self, key: String, response: &SearchResponse, generation: u64) {
        let Some(cache) = &self.inner else { return };
        if generation != self.generation() {
            return;
        }
        cache.insert(
            key,
            Entry {
                generation,
                response: Arc::new(response.clone()),
            },
        );
        metrics()
            .cache_entries
            .with_label_values(&["search_result"])
            .set(cache.entry_count() as i64);
    }

    /// Forgets every cached result (documents changed).
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Some(cache) = &self.inner {
            cache.invalidate_all();
            metrics()
                .cache_entries
                .with_label_values(&["search_result"])
                .set(0);
        }
    }
}

/// Clears the result cache whenever documents or chunks change, in this or any other process,
/// and after every (re)connect of the listener, since changes may have been missed meanwhile.
pub async fn listen_for_changes(
    pool: PgPool,
    search: Arc<super::SearchService>,
    shutdown: CancellationToken,
) {
    crate::db::notify::listen(pool, CHANGES_CHANNEL, shutdown, |_| {
        search.results.invalidate()
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::Mode;

    fn response() -> SearchResponse {
        SearchResponse {
            results: vec![],
            total: 0,
            mode: Mode::Hybrid,
            took_ms: 1.0,
            cached: false,
        }
    }

    #[test]
    fn results_computed_before_an_invalidation_are_not_stored() {
        let c = ResultCache::new(10, Duration::from_secs(60));
        let g = c.generation();
        c.insert("a".into(), &response(), g);
        assert!(c.get("a").is_some());
        let g = c.generation();
        c.invalidate();
        assert!(c.get("a").is_none());
        c.insert("b".into(), &response(), g); // computed before the change
        assert!(c.get("b").is_none());
    }

    #[test]
    fn zero_ttl_disables() {
        let c = ResultCache::new(10, Duration::ZERO);
        c.insert("a".into(), &response(), c.generation());
        assert!(c.get("a").is_none());
        let q = QueryEmbeddingCache::new(0, Duration::from_secs(1));
        q.insert("k".into(), vec![1.0]);
        assert!(q.get("k").is_none());
    }
}

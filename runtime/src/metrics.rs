//! Prometheus metrics of the runtime, with the names of the production guide
//! (`ragdoll_search_duration_seconds`, `ragdoll_documents_processed_total`,
//! `ragdoll_embedding_generation_seconds`, `ragdoll_background_jobs_total`) plus queue depth,
//! HTTP requests and caches. One process-wide registry; `/metrics` renders it.

use std::sync::OnceLock;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    pub registry: Registry,
    pub search_duration: HistogramVec,
    pub documents_processed: IntCounterVec,
    pub embedding_generation: HistogramVec,
    pub background_jobs: IntCounterVec,
    pub queue_depth: IntGaugeVec,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub cache_requests: IntCounterVec,
    pub cache_entries: IntGaugeVec,
    pub usage_flushes: IntCounterVec,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn build() -> Result<Metrics, prometheus::Error> {
    let registry = Registry::new();
    let histogram =
        |name: &str, help: &str, labels: &[&str]| -> Result<HistogramVec, prometheus::Error> {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
                labels,
            )?;
            registry.register(Box::new(h.clone()))?;
            Ok(h)
        };
    let counter =
        |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
    let gauge =
        |name: &str, help: &str, labels: &[&str]| -> Result<IntGaugeVec, prometheus::Error> {
            let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
    Ok(Metrics {
        search_duration: histogram(
            "ragdoll_search_duration_seconds",
            "Time spent on search operations",
            &["query_type", "content_type"],
        )?,
        documents_processed: counter(
            "ragdoll_documents_processed_total",
            "Documents that finished processing, by outcome",
            &["document_type", "status"],
        )?,
        embedding_generation: histogram(
            "ragdoll_embedding_generation_seconds",
            "Time spent generating embeddings (one provider call)",
            &["model", "content_type"],
        )?,
        background_jobs: counter(
            "ragdoll_background_jobs_total",
            "Background job attempts by outcome (succeeded, retried, failed, released)",
            &["job_type", "status"],
        )?,
        queue_depth: gauge(
            "ragdoll_queue_depth",
            "Jobs per queue and status (sampled when /metrics is scraped)",
            &["queue", "status"],
        )?,
        http_requests: counter(
            "ragdoll_http_requests_total",
            "HTTP requests by route and status code",
            &["method", "route", "status"],
        )?,
        http_duration: histogram(
            "ragdoll_http_request_duration_seconds",
            "HTTP request latency by route",
            &["method", "route"],
        )?,
        cache_requests: counter(
            "ragdoll_cache_requests_total",
            "Cache lookups by cache and result (hit, miss)",
            &["cache", "result"],
        )?,
        cache_entries: gauge(
            "ragdoll_cache_entries",
            "Entries held per cache",
            &["cache"],
        )?,
        usage_flushes: counter(
            "ragdoll_usage_flushes_total",
            "Batched usage/search-tracking writes by outcome",
            &["status"],
        )?,
        registry,
    })
}

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    // Registration only fails on duplicate or malformed names, which are constants above.
    METRICS.get_or_init(|| build().expect("metric definitions are valid"))
}

/// Renders every metric in the Prometheus text format.
pub fn render() -> Result<String, prometheus::Error> {
    let mut buf = Vec::new();
    TextEncoder::new().encode(&metrics().registry.gather(), &mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guide_metric_names_are_exported() {
        let m = metrics();
        m.search_duration
            .with_label_values(&["semantic", "all"])
            .observe(0.01);
        m.documents_processed
            .with_label_values(&["pdf", "processed"])
            .inc();
        m.embedding_generation
            .with_label_values(&["hash-v1", "text"])
            .observe(0.001);
        m.background_jobs
            .with_label_values(&["embed_document", "succeeded"])
            .inc();
        let text = render().unwrap();
        for name in [
            "ragdoll_search_duration_seconds_bucket{content_type=\"all\",query_type=\"semantic\"",
            "ragdoll_documents_processed_total{document_type=\"pdf\",status=\"processed\"}",
            "ragdoll_embedding_generation_seconds_count{content_type=\"text\",model=\"hash-v1\"}",
            "ragdoll_background_jobs_total{job_type=\"embed_document\",status=\"succeeded\"}",
        ] {
            assert!(text.contains(name), "missing {name}");
        }
    }
}

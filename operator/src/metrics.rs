//! The operator's own observability: Prometheus metrics (reconciliations by result, their
//! duration, managed clusters, API writes by kind and verb, leadership) and the HTTP server for
//! `/metrics`, `/healthz` and `/readyz`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};
use tokio_util::sync::CancellationToken;

use crate::render::Kind;

pub struct Metrics {
    registry: Registry,
    pub reconciliations: IntCounterVec,
    pub reconcile_duration: Histogram,
    pub managed_clusters: IntGauge,
    pub api_writes: IntCounterVec,
    pub leader: IntGauge,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let reconciliations = IntCounterVec::new(
            Opts::new(
                "ragdoll_operator_reconciliations_total",
                "Reconciliations by result (ok, error)",
            ),
            &["result"],
        )?;
        let reconcile_duration = Histogram::with_opts(
            HistogramOpts::new(
                "ragdoll_operator_reconcile_duration_seconds",
                "Time per reconciliation",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )?;
        let managed_clusters = IntGauge::new(
            "ragdoll_operator_managed_clusters",
            "RagdollClusters watched",
        )?;
        let api_writes = IntCounterVec::new(
            Opts::new(
                "ragdoll_operator_api_writes_total",
                "Writes to the Kubernetes API by kind and verb",
            ),
            &["kind", "verb"],
        )?;
        let leader = IntGauge::new(
            "ragdoll_operator_leader",
            "1 while this replica holds the leader lease",
        )?;
        registry.register(Box::new(reconciliations.clone()))?;
        registry.register(Box::new(reconcile_duration.clone()))?;
        registry.register(Box::new(managed_clusters.clone()))?;
        registry.register(Box::new(api_writes.clone()))?;
        registry.register(Box::new(leader.clone()))?;
        Ok(Self {
            registry,
            reconciliations,
            reconcile_duration,
            managed_clusters,
            api_writes,
            leader,
        })
    }

    pub fn write(&self, kind: Kind, verb: &str) {
        self.api_writes
            .with_label_values(&[&format!("{kind:?}"), verb])
            .inc();
    }

    /// Writes of any kind so far (tests compare it before and after a quiet period).
    pub fn total_writes(&self) -> u64 {
        self.registry
            .gather()
            .iter()
            .filter(|f| f.name() == "ragdoll_operator_api_writes_total")
            .flat_map(|f| {
                f.get_metric()
                    .iter()
                    .map(|m| m.get_counter().get_value() as u64)
                    .collect::<Vec<_>>()
            })
            .sum()
    }

    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }
}

#[derive(Clone)]
struct ServerState {
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
}

/// Serves probes and metrics until `shutdown`. `ready` turns true once the controller runs (or
/// waits as a standby replica: standbys are healthy too).
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    async fn metrics_handler(State(s): State<ServerState>) -> Response {
        match s.metrics.render() {
            Ok(t) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], t).into_response(),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        }
    }
    async fn readyz(State(s): State<ServerState>) -> Response {
        if s.ready.load(Ordering::SeqCst) {
            (StatusCode::OK, "ready").into_response()
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, "starting").into_response()
        }
    }
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(ServerState { metrics, ready });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving operator metrics and probes");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

//! Running the operator: metrics server, leader election (wait as a standby, renew while
//! leading, stop if the lease is lost), and the kube-runtime Controller watching RagdollClusters
//! and every kind of child (labelled by this operator) with per-object backoff.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::controller::Controller;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Api, Client, Resource};
use ragdoll_crds::RagdollCluster;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::leader::LeaseLock;
use crate::metrics::{self, Metrics};
use crate::reconcile::{self, Context};
use crate::render::MANAGER;

#[derive(Clone, Debug)]
pub struct Options {
    /// Watch one namespace, or all when None.
    pub namespace: Option<String>,
    pub metrics_bind: SocketAddr,
    /// Lease namespace and name; None disables leader election (a single replica).
    pub lease: Option<(String, String)>,
    pub identity: String,
}

fn api<K>(client: &Client, ns: &Option<String>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs until `shutdown` (Ok) or until the leader lease is lost (Err, so the process restarts
/// as a standby).
pub async fn run(client: Client, opts: Options, shutdown: CancellationToken) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new()?);
    let ready = Arc::new(AtomicBool::new(false));
    let server = tokio::spawn(metrics::serve(
        opts.metrics_bind,
        metrics.clone(),
        ready.clone(),
        shutdown.clone(),
    ));

    let lock = opts.lease.as_ref().map(|(ns, name)| {
        LeaseLock::new(
            Api::<Lease>::namespaced(client.clone(), ns),
            name,
            &opts.identity,
            Duration::from_secs(15),
        )
    });
    if let Some(lock) = &lock {
        ready.store(true, Ordering::SeqCst); // a healthy standby
        tracing::info!(identity = %lock.identity(), "waiting for the leader lease");
        loop {
            match lock.try_acquire_or_renew().await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader election failed; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = shutdown.cancelled() => { server.abort(); return Ok(()); }
            }
        }
        tracing::info!(identity = %lock.identity(), "became the leader");
    }
    metrics.leader.set(1);

    // Stop reconciling the moment leadership cannot be confirmed.
    let stop = shutdown.child_token();
    let lost = Arc::new(AtomicBool::new(false));
    let renewer = lock.clone().map(|lock| {
        let (stop, lost) = (stop.clone(), lost.clone());
        tokio::spawn(async move {
            let mut last_ok = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(lock.renew_every()) => {}
                    _ = stop.cancelled() => return,
                }
                match lock.try_acquire_or_renew().await {
                    Ok(true) => last_ok = tokio::time::Instant::now(),
                    Ok(false) => {
                        tracing::error!("the leader lease was taken by another replica; stopping");
                        lost.store(true, Ordering::SeqCst);
                        stop.cancel();
                        return;
                    }
                    Err(e) if last_ok.elapsed() > Duration::from_secs(10) => {
                        tracing::error!(error = %e, "cannot renew the leader lease; stopping");
                        lost.store(true, Ordering::SeqCst);
                        stop.cancel();
                        return;
                    }
                    Err(e) => tracing::warn!(error = %e, "lease renewal failed; retrying"),
                }
            }
        })
    });

    let reporter = Reporter {
        controller: MANAGER.into(),
        instance: Some(opts.identity.clone()),
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        Recorder::new(client.clone(), reporter),
        metrics.clone(),
    ));
    let children =
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={MANAGER}"));
    let ns = &opts.namespace;
    let controller = Controller::new(
        api::<RagdollCluster>(&client, ns),
        watcher::Config::default(),
    )
    .owns(api::<Deployment>(&client, ns), children.clone())
    .owns(api::<StatefulSet>(&client, ns), children.clone())
    .owns(api::<Service>(&client, ns), children.clone())
    .owns(api::<ConfigMap>(&client, ns), children.clone())
    .owns(api::<Secret>(&client, ns), children.clone())
    .owns(api::<Job>(&client, ns), children.clone())
    .owns(api::<CronJob>(&client, ns), children.clone())
    .owns(api::<PodDisruptionBudget>(&client, ns), children.clone())
    .owns(
        api::<HorizontalPodAutoscaler>(&client, ns),
        children.clone(),
    )
    .owns(api::<NetworkPolicy>(&client, ns), children.clone())
    .owns(api::<PersistentVolumeClaim>(&client, ns), children);
    let store = controller.store();
    let gauge = metrics.clone();
    let gauge_task = tokio::spawn({
        let stop = stop.clone();
        async move {
            loop {
                gauge.managed_clusters.set(store.state().len() as i64);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    _ = stop.cancelled() => return,
                }
            }
        }
    });
    ready.store(true, Ordering::SeqCst);
    tracing::info!(namespace = ?opts.namespace, "reconciling RagdollClusters");
    controller
        .graceful_shutdown_on(stop.clone().cancelled_owned())
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "reconcile event");
            }
        })
        .await;
    stop.cancel();
    gauge_task.abort();
    if let Some(r) = renewer {
        let _ = r.await;
    }
    metrics.leader.set(0);
    if let Some(lock) = &lock
        && !lost.load(Ordering::SeqCst)
    {
        lock.release().await;
    }
    shutdown.cancel();
    let _ = server.await;
    if lost.load(Ordering::SeqCst) {
        anyhow::bail!("lost the leader lease");
    }
    Ok(())
}

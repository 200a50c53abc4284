//! One reconciliation of a RagdollCluster: observe its children, create the generated Secrets
//! once, read the referenced Secrets (for the config hash), learn the migration's outcome, apply
//! the desired children (API and workers only after the migration), delete orphans, then compute
//! the status and write it only if it changed, publishing Events on transitions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client, Resource, ResourceExt};
use ragdoll_crds::{Endpoints, LastBackup, RagdollCluster, RagdollClusterStatus, SecretKeyRef};
use rand::Rng;
use rand::distr::Alphanumeric;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::apply::{Applier, Outcome};
use crate::metrics::Metrics;
use crate::render::{self, Child, Ctx, Kind, database, jobs, runtime};
use crate::status::{self, Migration, Observed};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API error: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    NotConverged(String),
}

/// Shared by all reconciliations.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub applier: Applier,
    failures: Mutex<HashMap<String, u32>>,
    service_monitor: Mutex<Option<(Instant, bool)>>,
}

impl Context {
    pub fn new(client: Client, recorder: Recorder, metrics: Arc<Metrics>) -> Self {
        Self {
            applier: Applier::new(client.clone()),
            client,
            recorder,
            metrics,
            failures: Mutex::new(HashMap::new()),
            service_monitor: Mutex::new(None),
        }
    }

    /// Per-object exponential backoff: 2 s, 4 s, … up to 5 minutes.
    pub fn backoff(&self, uid: &str) -> Duration {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = f.entry(uid.to_string()).or_insert(0);
        *n = (*n + 1).min(16);
        Duration::from_secs(2u64.saturating_pow(*n).min(300))
    }

    fn succeeded(&self, uid: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(uid);
    }

    /// Whether the Prometheus Operator's ServiceMonitor CRD is installed (checked once a minute).
    async fn service_monitor_available(&self) -> bool {
        if let Ok(g) = self.service_monitor.lock()
            && let Some((at, v)) = *g
            && at.elapsed() < Duration::from_secs(60)
        {
            return v;
        }
        let available = match kube::discovery::group(&self.client, "monitoring.coreos.com").await {
            Ok(g) => g
                .recommended_resources()
                .iter()
                .any(|(ar, _)| ar.kind == "ServiceMonitor"),
            Err(_) => false,
        };
        if let Ok(mut g) = self.service_monitor.lock() {
            *g = Some((Instant::now(), available));
        }
        available
    }

    async fn event(&self, cluster: &RagdollCluster, type_: EventType, reason: &str, note: String) {
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &cluster.object_ref(&())).await {
            tracing::warn!(error = %e, "cannot publish event");
        }
    }
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

pub async fn reconcile(cluster: Arc<RagdollCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let timer = ctx.metrics.reconcile_duration.start_timer();
    let result = reconcile_cluster(&cluster, &ctx).await;
    if let Err(Error::Kube(e)) = &result {
        // Say so in the status: an empty or stale status would hide the problem.
        let msg = format!("reconciliation failed: {}", describe(e));
        if let Err(pe) = patch_status(&ctx, &cluster, status::failed(&cluster, &msg, now())).await {
            tracing::warn!(error = %pe, "cannot record the failure in the status");
        }
    }
    timer.observe_duration();
    let label = if result.is_ok() { "ok" } else { "error" };
    ctx.metrics
        .reconciliations
        .with_label_values(&[label])
        .inc();
    if result.is_ok() {
        ctx.succeeded(&cluster.uid().unwrap_or_default());
    }
    result
}

pub fn error_policy(cluster: Arc<RagdollCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff(&cluster.uid().unwrap_or_default());
    tracing::warn!(cluster = %cluster.name_any(), error = %error, retry_in_s = delay.as_secs(), "reconcile failed");
    Action::requeue(delay)
}

type Live = HashMap<(Kind, String), DynamicObject>;

/// Lists every child kind carrying this cluster's labels.
async fn observe(
    ctx: &Context,
    ns: &str,
    selector: &str,
    with_monitors: bool,
) -> Result<Live, kube::Error> {
    let mut live = HashMap::new();
    let lp = ListParams::default().labels(selector);
    for kind in Kind::ALL {
        if kind == Kind::ServiceMonitor && !with_monitors {
            continue;
        }
        let api: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), ns, &kind.api_resource());
        for obj in api.list(&lp).await?.items {
            live.insert((kind, obj.name_any()), obj);
        }
    }
    Ok(live)
}

fn typed<T: Resource + serde::de::DeserializeOwned>(obj: Option<&DynamicObject>) -> Option<T> {
    obj.and_then(|o| o.clone().try_parse::<T>().ok())
}

fn random_string(len: usize) -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// Generated Secrets: created when missing, never overwritten.
async fn ensure_secrets(
    ctx: &Context,
    r: &Ctx<'_>,
    live: &Live,
    cluster: &RagdollCluster,
) -> Result<(), kube::Error> {
    let exists = |name: &str| live.contains_key(&(Kind::Secret, name.to_string()));
    if r.managed() {
        let child = database::credentials(r, &random_string(32));
        if ctx
            .applier
            .create_if_missing(&ctx.metrics, &r.namespace, &child, exists(&child.name))
            .await?
        {
            ctx.event(
                cluster,
                EventType::Normal,
                "CredentialsGenerated",
                format!("generated database credentials in Secret {}", child.name),
            )
            .await;
        }
    }
    if cluster.spec.api.auth_secret_ref.is_none() {
        let child = runtime::api_keys_secret(r, &format!("rdk_{}", random_string(40)));
        if ctx
            .applier
            .create_if_missing(&ctx.metrics, &r.namespace, &child, exists(&child.name))
            .await?
        {
            ctx.event(
                cluster,
                EventType::Normal,
                "ApiKeyGenerated",
                format!("generated an API key in Secret {}", child.name),
            )
            .await;
        }
    }
    Ok(())
}

/// Digests of the referenced secret values (pods roll when they change), the external database
/// endpoint, and what is missing.
async fn read_secrets(
    ctx: &Context,
    r: &Ctx<'_>,
) -> Result<(String, Option<String>, Vec<String>), kube::Error> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &r.namespace);
    let mut refs: Vec<SecretKeyRef> = vec![r.database_url(), r.api_keys.clone()];
    refs.extend(r.cluster.spec.embeddings.api_key_secret_ref.clone());
    refs.extend(r.cluster.spec.llm.api_key_secret_ref.clone());
    let mut hasher = Sha256::new();
    let mut missing = Vec::new();
    let mut db_endpoint = None;
    for (i, key) in refs.iter().enumerate() {
        let value = api
            .get_opt(&key.name)
            .await?
            .and_then(|s| s.data)
            .and_then(|d| d.get(&key.key).cloned());
        match value {
            Some(bytes) => {
                hasher.update(key.name.as_bytes());
                hasher.update(&bytes.0);
                if i == 0 {
                    db_endpoint = endpoint_of(&String::from_utf8_lossy(&bytes.0));
                }
            }
            None => missing.push(format!("Secret {} has no key {}", key.name, key.key)),
        }
    }
    Ok((hex::encode(&hasher.finalize()[..8]), db_endpoint, missing))
}

/// host:port of a postgres:// URL, without credentials.
fn endpoint_of(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let host = rest.split(['/', '?']).next()?;
    (!host.is_empty()).then(|| {
        if host.contains(':') {
            host.to_string()
        } else {
            format!("{host}:5432")
        }
    })
}

/// The migration Job's outcome; on success, the schema version from its pod's termination message.
async fn migration(
    ctx: &Context,
    ns: &str,
    job: Option<&DynamicObject>,
) -> Result<Option<Migration>, kube::Error> {
    let Some(job) = typed::<Job>(job) else {
        return Ok(None);
    };
    let conditions = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let is = |t: &str| {
        conditions
            .iter()
            .any(|c| c.type_ == t && c.status == "True")
    };
    if is("Failed") {
        let message = conditions
            .iter()
            .find(|c| c.type_ == "Failed")
            .and_then(|c| c.message.clone())
            .unwrap_or_else(|| "the migration Job failed".into());
        return Ok(Some(Migration::Failed {
            message: format!("migration Job {}: {message}", job.name_any()),
        }));
    }
    if !is("Complete")
        && !is("SuccessCriteriaMet")
        && job.status.as_ref().and_then(|s| s.succeeded).unwrap_or(0) < 1
    {
        return Ok(Some(Migration::Running));
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let lp =
        ListParams::default().labels(&format!("batch.kubernetes.io/job-name={}", job.name_any()));
    let schema_version = pods.list(&lp).await?.items.iter().find_map(|p| {
        p.status
            .as_ref()?
            .container_statuses
            .as_ref()?
            .iter()
            .find_map(|cs| {
                let msg = cs.state.as_ref()?.terminated.as_ref()?.message.as_ref()?;
                serde_json::from_str::<serde_json::Value>(msg).ok()?["schema_version"].as_i64()
            })
    });
    Ok(Some(Migration::Succeeded { schema_version }))
}

/// The newest finished backup Job, else what the status already knew.
fn last_backup(live: &Live, r: &Ctx<'_>, previous: Option<&LastBackup>) -> Option<LastBackup> {
    let cron = r.child_name("backup");
    let mut finished: Vec<(Time, String, &'static str)> = live
        .iter()
        .filter(|((k, _), o)| {
            *k == Kind::Job
                && o.owner_references()
                    .iter()
                    .any(|o| o.kind == "CronJob" && o.name == cron)
        })
        .filter_map(|(_, o)| {
            let job: Job = o.clone().try_parse().ok()?;
            let s = job.status?;
            let conds = s.conditions.unwrap_or_default();
            let at = |t: &str| {
                conds
                    .iter()
                    .find(|c| c.type_ == t && c.status == "True")
                    .and_then(|c| c.last_transition_time.clone())
            };
            if let Some(t) = s
                .completion_time
                .clone()
                .or_else(|| at("Complete"))
                .filter(|_| s.succeeded.unwrap_or(0) > 0)
            {
                Some((t, job.metadata.name.unwrap_or_default(), "Succeeded"))
            } else {
                at("Failed").map(|t| (t, job.metadata.name.unwrap_or_default(), "Failed"))
            }
        })
        .collect();
    finished.sort_by_key(|f| f.0.0);
    match finished.pop() {
        Some((time, job, result)) => Some(LastBackup {
            time: Some(time),
            job: Some(job),
            result: result.into(),
        }),
        None => {
            // Jobs are pruned by the CronJob's history limit; the CronJob remembers the last success.
            let cronjob: Option<CronJob> = typed(live.get(&(Kind::CronJob, cron.clone())));
            match cronjob
                .and_then(|c| c.status)
                .and_then(|s| s.last_successful_time)
            {
                Some(t) if previous.is_none_or(|p| p.time.as_ref() != Some(&t)) => {
                    Some(LastBackup {
                        time: Some(t),
                        job: None,
                        result: "Succeeded".into(),
                    })
                }
                _ => previous.cloned(),
            }
        }
    }
}

fn owned_by(obj: &DynamicObject, uid: &str) -> bool {
    obj.owner_references()
        .iter()
        .any(|o| o.uid == uid && o.controller == Some(true))
}

async fn patch_status(
    ctx: &Context,
    cluster: &RagdollCluster,
    status: RagdollClusterStatus,
) -> Result<(), kube::Error> {
    if cluster.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<RagdollCluster> =
        Api::namespaced(ctx.client.clone(), &cluster.namespace().unwrap_or_default());
    api.patch_status(
        &cluster.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await?;
    ctx.metrics
        .api_writes
        .with_label_values(&["RagdollCluster", "status"])
        .inc();
    // Events for condition transitions worth a human's attention.
    let old = cluster.status.clone().unwrap_or_default().conditions;
    for c in &status.conditions {
        let before = old
            .iter()
            .find(|o| o.type_ == c.type_)
            .map(|o| o.status.as_str());
        if before == Some(c.status.as_str())
            || !matches!(
                c.type_.as_str(),
                "Ready" | "Degraded" | "MigrationsComplete" | "LastBackupSucceeded"
            )
        {
            continue;
        }
        let bad = (c.type_ == "Degraded" && c.status == "True")
            || (c.type_ != "Degraded" && c.status == "False" && before == Some("True"))
            || c.reason.contains("Failed");
        let type_ = if bad {
            EventType::Warning
        } else {
            EventType::Normal
        };
        ctx.event(
            cluster,
            type_,
            &c.reason,
            format!("{} is {}: {}", c.type_, c.status, c.message),
        )
        .await;
    }
    Ok(())
}

async fn reconcile_cluster(cluster: &RagdollCluster, ctx: &Context) -> Result<Action, Error> {
    if cluster.metadata.deletion_timestamp.is_some() {
        // Owner references cascade; retained volumes carry none.
        return Ok(Action::await_change());
    }
    if cluster.spec.paused {
        patch_status(ctx, cluster, status::paused(cluster, now())).await?;
        return Ok(Action::await_change());
    }
    let mut r = Ctx::new(cluster);
    let ns = r.namespace.clone();
    r.service_monitor_available =
        cluster.spec.monitoring.service_monitor && ctx.service_monitor_available().await;
    let live = observe(
        ctx,
        &ns,
        &r.instance_selector(),
        r.service_monitor_available,
    )
    .await?;
    ensure_secrets(ctx, &r, &live, cluster).await?;
    let (secret_digest, external_endpoint, mut problems) = read_secrets(ctx, &r).await?;
    r.config_hash = render::short_hash(&json!([runtime::config_data(&r), secret_digest]));

    let migration_name = jobs::migration_job_name(&r);
    let migration = migration(ctx, &ns, live.get(&(Kind::Job, migration_name.clone()))).await?;
    let migrated = matches!(migration, Some(Migration::Succeeded { .. }));
    let desired = render::desired(&r, migrated);

    let mut applied = 0usize;
    for child in &desired.children {
        match ctx
            .applier
            .apply(
                &ctx.metrics,
                &ns,
                child,
                live.get(&(child.kind, child.name.clone())),
            )
            .await
        {
            Ok(Outcome::Applied) => applied += 1,
            Ok(Outcome::Unchanged) => {}
            Err(e) => {
                let msg = format!(
                    "{:?} {} was rejected: {}",
                    child.kind,
                    child.name,
                    describe(&e)
                );
                ctx.event(cluster, EventType::Warning, "ApplyFailed", msg.clone())
                    .await;
                problems.push(msg);
            }
        }
        if child.kind == Kind::Job
            && child.name == migration_name
            && !live.contains_key(&(Kind::Job, migration_name.clone()))
        {
            ctx.event(
                cluster,
                EventType::Normal,
                "MigrationStarted",
                format!("started migration Job {migration_name}"),
            )
            .await;
        }
    }

    // Orphans: children of this cluster that the spec no longer asks for.
    let uid = cluster.uid().unwrap_or_default();
    for ((kind, name), obj) in &live {
        let keep = matches!(kind, Kind::Secret | Kind::PersistentVolumeClaim)
            || desired.get(*kind, name).is_some()
            || desired.held.contains(&(*kind, name.clone()))
            || !owned_by(obj, &uid)
            // Older migration Jobs stay until the current one succeeded.
            || (*kind == Kind::Job && !migrated);
        if !keep {
            ctx.applier.delete(&ctx.metrics, &ns, *kind, name).await?;
        }
    }

    let api_spec = &cluster.spec.api;
    let observed = Observed {
        managed_database: r.managed(),
        database: typed::<StatefulSet>(live.get(&(Kind::StatefulSet, r.child_name("postgres")))),
        api: typed::<Deployment>(live.get(&(Kind::Deployment, r.child_name("api")))),
        api_desired: api_spec
            .autoscaling
            .as_ref()
            .map_or(api_spec.replicas, |a| a.min_replicas),
        workers: cluster
            .spec
            .workers
            .iter()
            .map(|w| {
                let d =
                    typed::<Deployment>(live.get(&(Kind::Deployment, runtime::worker_name(&r, w))));
                (w.queue.as_str().to_string(), d, w.replicas)
            })
            .collect(),
        migration,
        last_backup: last_backup(
            &live,
            &r,
            cluster.status.as_ref().and_then(|s| s.last_backup.as_ref()),
        ),
        endpoints: Endpoints {
            api: Some(format!(
                "http://{}.{ns}.svc:{}",
                r.child_name("api"),
                api_spec.service.port
            )),
            database: if r.managed() {
                Some(format!(
                    "{}.{ns}.svc:{}",
                    r.child_name("postgres"),
                    database::PORT
                ))
            } else {
                external_endpoint
            },
        },
        problems: problems.clone(),
    };
    let status = status::compute(cluster, &observed, now());
    let ready = status
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    patch_status(ctx, cluster, status).await?;
    tracing::debug!(cluster = %cluster.name_any(), applied, ready, "reconciled");
    if !problems.is_empty() {
        return Err(Error::NotConverged(problems.join("; ")));
    }
    Ok(Action::requeue(if ready {
        Duration::from_secs(300)
    } else {
        Duration::from_secs(30)
    }))
}

/// The API server's message for a rejected request.
fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

/// Children for tests and tools that want to see what a cluster would get.
pub fn render_all(cluster: &RagdollCluster) -> Vec<Child> {
    let mut r = Ctx::new(cluster);
    r.service_monitor_available = true;
    render::desired(&r, true).children
}

#[cfg(test)]
mod tests {
    use super::endpoint_of;

    #[test]
    fn endpoints_hide_credentials() {
        assert_eq!(
            endpoint_of("postgres://u:p@db.example:6432/rag?sslmode=require").as_deref(),
            Some("db.example:6432")
        );
        assert_eq!(
            endpoint_of("postgresql://u:p%40x@db/rag").as_deref(),
            Some("db:5432")
        );
        assert_eq!(endpoint_of("not a url"), None);
    }
}

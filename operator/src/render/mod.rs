//! Desired state: pure functions from a `RagdollCluster` (plus a few observed facts) to the child
//! objects the operator applies. No I/O here; every builder is unit-tested on its output.
//!
//! Children are JSON objects (server-side apply sends JSON anyway) with their kind, so one apply
//! path serves every kind; e2e tests apply them with strict field validation, which rejects any
//! field the API server does not know.

pub mod database;
pub mod jobs;
pub mod network;
pub mod runtime;
pub mod tuning;

use std::collections::BTreeMap;

use kube::ResourceExt;
use kube::core::{ApiResource, GroupVersionKind};
use ragdoll_crds::{RagdollCluster, Resources, SecretKeyRef};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub const MANAGER: &str = "ragdoll-operator";
pub const HASH_ANNOTATION: &str = "ragdoll.dev/desired-hash";
pub const CONFIG_HASH_ANNOTATION: &str = "ragdoll.dev/config-hash";
/// Pods with this label may reach the managed database (see the NetworkPolicy).
pub const DB_CLIENT_LABEL: &str = "ragdoll.dev/database-client";
pub const QUEUE_LABEL: &str = "ragdoll.dev/queue";
/// Runtime image user (see the runtime Dockerfile).
pub const RUNTIME_UID: i64 = 65532;
/// The postgres user of the official PostgreSQL images.
pub const POSTGRES_UID: i64 = 999;
pub const API_PORT: i32 = 8080;
pub const WORKER_METRICS_PORT: i32 = 9090;

/// Kinds the operator manages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Secret,
    ConfigMap,
    Service,
    PersistentVolumeClaim,
    StatefulSet,
    Job,
    Deployment,
    PodDisruptionBudget,
    HorizontalPodAutoscaler,
    CronJob,
    NetworkPolicy,
    ServiceMonitor,
}

impl Kind {
    pub const ALL: [Kind; 12] = [
        Kind::Secret,
        Kind::ConfigMap,
        Kind::Service,
        Kind::PersistentVolumeClaim,
        Kind::StatefulSet,
        Kind::Job,
        Kind::Deployment,
        Kind::PodDisruptionBudget,
        Kind::HorizontalPodAutoscaler,
        Kind::CronJob,
        Kind::NetworkPolicy,
        Kind::ServiceMonitor,
    ];

    pub fn gvk(self) -> GroupVersionKind {
        let (g, v, k) = match self {
            Kind::Secret => ("", "v1", "Secret"),
            Kind::ConfigMap => ("", "v1", "ConfigMap"),
            Kind::Service => ("", "v1", "Service"),
            Kind::PersistentVolumeClaim => ("", "v1", "PersistentVolumeClaim"),
            Kind::StatefulSet => ("apps", "v1", "StatefulSet"),
            Kind::Deployment => ("apps", "v1", "Deployment"),
            Kind::Job => ("batch", "v1", "Job"),
            Kind::CronJob => ("batch", "v1", "CronJob"),
            Kind::PodDisruptionBudget => ("policy", "v1", "PodDisruptionBudget"),
            Kind::HorizontalPodAutoscaler => ("autoscaling", "v2", "HorizontalPodAutoscaler"),
            Kind::NetworkPolicy => ("networking.k8s.io", "v1", "NetworkPolicy"),
            Kind::ServiceMonitor => ("monitoring.coreos.com", "v1", "ServiceMonitor"),
        };
        GroupVersionKind::gvk(g, v, k)
    }

    pub fn api_resource(self) -> ApiResource {
        let plural = match self {
            Kind::Secret => "secrets",
            Kind::ConfigMap => "configmaps",
            Kind::Service => "services",
            Kind::PersistentVolumeClaim => "persistentvolumeclaims",
            Kind::StatefulSet => "statefulsets",
            Kind::Deployment => "deployments",
            Kind::Job => "jobs",
            Kind::CronJob => "cronjobs",
            Kind::PodDisruptionBudget => "poddisruptionbudgets",
            Kind::HorizontalPodAutoscaler => "horizontalpodautoscalers",
            Kind::NetworkPolicy => "networkpolicies",
            Kind::ServiceMonitor => "servicemonitors",
        };
        ApiResource::from_gvk_with_plural(&self.gvk(), plural)
    }

    /// Kinds whose spec edits bump `metadata.generation` (used to detect drift).
    pub fn has_generation(self) -> bool {
        !matches!(
            self,
            Kind::Secret | Kind::ConfigMap | Kind::Service | Kind::PersistentVolumeClaim
        )
    }

    fn api_version(self) -> String {
        self.gvk().api_version()
    }
}

/// One object the operator wants to exist, exactly like this.
#[derive(Clone, Debug, PartialEq)]
pub struct Child {
    pub kind: Kind,
    pub name: String,
    pub object: Value,
}

impl Child {
    /// Builds the object with apiVersion, kind and metadata (labels, owner reference), and
    /// stamps a hash of everything else so unchanged objects are recognised without a write.
    pub fn new(ctx: &Ctx, kind: Kind, name: String, component: &str, mut body: Value) -> Self {
        let mut meta = json!({
            "name": name,
            "namespace": ctx.namespace,
            "labels": ctx.labels(component),
        });
        if let Some(extra) = body.get("metadata").cloned() {
            merge(&mut meta, extra);
        }
        if ctx.owned(kind) {
            meta["ownerReferences"] = json!([ctx.owner_reference()]);
        }
        if let Some(obj) = body.as_object_mut() {
            obj.remove("metadata");
        }
        let mut object =
            json!({"apiVersion": kind.api_version(), "kind": kind.gvk().kind, "metadata": meta});
        merge(&mut object, body);
        let hash = short_hash(&object);
        object["metadata"]["annotations"][HASH_ANNOTATION] = Value::String(hash);
        Child { kind, name, object }
    }

    pub fn hash(&self) -> &str {
        self.object["metadata"]["annotations"][HASH_ANNOTATION]
            .as_str()
            .unwrap_or_default()
    }
}

/// Deep-merges `patch` into `base` (objects merged, everything else replaced).
fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p,
    }
}

/// First 16 hex digits of the SHA-256 of a value's canonical JSON.
pub fn short_hash(v: &Value) -> String {
    let bytes = serde_json::to_vec(v).unwrap_or_default();
    hex::encode(&Sha256::digest(&bytes)[..8])
}

/// What a render needs besides the spec: identity and a few observed facts.
#[derive(Clone, Debug)]
pub struct Ctx<'a> {
    pub cluster: &'a RagdollCluster,
    pub name: String,
    pub namespace: String,
    pub uid: String,
    /// Hash of the runtime configuration and the secret values it references; pods roll when it
    /// changes.
    pub config_hash: String,
    /// The Secret key that holds the accepted API keys (user-provided or generated).
    pub api_keys: SecretKeyRef,
    /// The ServiceMonitor CRD is installed.
    pub service_monitor_available: bool,
}

impl<'a> Ctx<'a> {
    pub fn new(cluster: &'a RagdollCluster) -> Self {
        let name = cluster.name_any();
        Ctx {
            namespace: cluster.namespace().unwrap_or_else(|| "default".into()),
            uid: cluster.metadata.uid.clone().unwrap_or_default(),
            api_keys: cluster
                .spec
                .api
                .auth_secret_ref
                .clone()
                .unwrap_or(SecretKeyRef {
                    name: format!("{name}-api-keys"),
                    key: "keys".into(),
                }),
            name,
            cluster,
            config_hash: String::new(),
            service_monitor_available: false,
        }
    }

    pub fn child_name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.name)
    }

    pub fn selector(&self, component: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".into(), "ragdoll".into()),
            ("app.kubernetes.io/instance".into(), self.name.clone()),
            ("app.kubernetes.io/component".into(), component.into()),
        ])
    }

    pub fn labels(&self, component: &str) -> BTreeMap<String, String> {
        let mut l = self.selector(component);
        l.insert("app.kubernetes.io/managed-by".into(), MANAGER.into());
        l.insert("app.kubernetes.io/part-of".into(), "ragdoll".into());
        l
    }

    /// Label selector of everything this operator made for this cluster.
    pub fn instance_selector(&self) -> String {
        format!(
            "app.kubernetes.io/instance={},app.kubernetes.io/managed-by={MANAGER}",
            self.name
        )
    }

    pub fn owner_reference(&self) -> Value {
        json!({
            "apiVersion": "ragdoll.dev/v1alpha1",
            "kind": "RagdollCluster",
            "name": self.name,
            "uid": self.uid,
            "controller": true,
            "blockOwnerDeletion": true,
        })
    }

    /// Data volumes outlive the cluster when `retainOnDelete` asks for it.
    fn owned(&self, kind: Kind) -> bool {
        kind != Kind::PersistentVolumeClaim || !self.retain_on_delete()
    }

    pub fn retain_on_delete(&self) -> bool {
        self.cluster
            .spec
            .database
            .managed
            .as_ref()
            .is_some_and(|m| m.retain_on_delete)
    }

    pub fn managed(&self) -> bool {
        self.cluster.spec.database.managed.is_some()
    }

    /// The Secret key holding the database URL.
    pub fn database_url(&self) -> SecretKeyRef {
        match &self.cluster.spec.database.external {
            Some(ext) => ext.secret_ref.clone(),
            None => SecretKeyRef {
                name: self.child_name("db-credentials"),
                key: "url".into(),
            },
        }
    }

    pub fn image_pull_secrets(&self) -> Value {
        json!(self.cluster.spec.runtime.image_pull_secrets)
    }
}

/// Restricted pod security for the runtime: non-root, RuntimeDefault seccomp.
pub fn pod_security(uid: i64) -> Value {
    json!({
        "runAsNonRoot": true,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

/// Restricted container security: no privilege escalation, read-only root, no capabilities.
pub fn container_security() -> Value {
    json!({
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "runAsNonRoot": true,
        "capabilities": {"drop": ["ALL"]},
    })
}

pub fn resources(r: &Resources) -> Value {
    json!({"requests": r.requests, "limits": r.limits})
}

pub fn secret_env(name: &str, key: &SecretKeyRef) -> Value {
    json!({"name": name, "valueFrom": {"secretKeyRef": {"name": key.name, "key": key.key}}})
}

/// Everything this cluster should have, except the Secrets the operator generates (those are
/// created once and never re-applied, see `reconcile::secrets`).
#[derive(Debug, Default)]
pub struct Desired {
    pub children: Vec<Child>,
    /// Deployments whose update waits for the current migration: neither created, updated nor
    /// deleted until it succeeds.
    pub held: Vec<(Kind, String)>,
}

impl Desired {
    pub fn get(&self, kind: Kind, name: &str) -> Option<&Child> {
        self.children
            .iter()
            .find(|c| c.kind == kind && c.name == name)
    }
}

/// The desired children. API and worker Deployments roll only after the migration of the current
/// spec succeeded (`migrated`).
pub fn desired(ctx: &Ctx, migrated: bool) -> Desired {
    let spec = &ctx.cluster.spec;
    let mut children = Vec::new();
    children.extend(database::config(ctx));
    children.extend(database::services(ctx));
    children.extend(database::statefulset(ctx));
    children.push(runtime::config_map(ctx));
    children.push(jobs::migration_job(ctx));
    let mut rollout = vec![runtime::api_deployment(ctx)];
    rollout.extend(
        spec.workers
            .iter()
            .map(|w| runtime::worker_deployment(ctx, w)),
    );
    let mut held = Vec::new();
    if migrated {
        children.extend(rollout);
    } else {
        held.extend(rollout.into_iter().map(|c| (c.kind, c.name)));
    }
    children.push(runtime::api_service(ctx));
    children.extend(runtime::api_pdb(ctx));
    children.extend(runtime::api_hpa(ctx));
    if spec.monitoring.service_monitor {
        children.push(runtime::worker_metrics_service(ctx));
        if ctx.service_monitor_available {
            children.push(runtime::service_monitor(ctx));
        }
    }
    children.extend(jobs::maintenance(ctx));
    children.extend(jobs::backup(ctx));
    children.extend(network::database_policy(ctx));
    Desired { children, held }
}

#[cfg(test)]
pub(crate) mod tests;

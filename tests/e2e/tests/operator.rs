//! The operator against a real kube-apiserver and kube-controller-manager: children with the
//! right specs, status to Ready, rollouts, self-healing, pause, deletion, restarts without
//! writes, leader election, and invalid specs rejected with readable messages.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Event, PersistentVolumeClaim, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use ragdoll_crds::RagdollCluster;
use ragdoll_e2e::*;
use serde_json::json;

const T: Duration = Duration::from_secs(60);

async fn setup(prefix: &str) -> (Client, TestNamespace) {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, prefix).await;
    (client, ns)
}

fn api<K>(client: &Client, ns: &str) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Api::namespaced(client.clone(), ns)
}

async fn exists<K>(client: &Client, ns: &str, name: &str) -> bool
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    api::<K>(client, ns)
        .get_opt(name)
        .await
        .ok()
        .flatten()
        .is_some()
}

fn assert_child_meta<K: kube::Resource>(obj: &K, cluster: &str) {
    let labels = obj.meta().labels.clone().unwrap_or_default();
    for key in ["name", "instance", "component", "managed-by", "part-of"] {
        assert!(
            labels.contains_key(&format!("app.kubernetes.io/{key}")),
            "{} lacks the {key} label",
            obj.meta().name.clone().unwrap_or_default()
        );
    }
    assert_eq!(labels["app.kubernetes.io/instance"], cluster);
    let owners = obj.meta().owner_references.clone().unwrap_or_default();
    assert_eq!(
        owners.len(),
        1,
        "{} has one owner",
        obj.meta().name.clone().unwrap_or_default()
    );
    assert_eq!(owners[0].kind, "RagdollCluster");
    assert_eq!(owners[0].name, cluster);
    assert_eq!(owners[0].controller, Some(true));
}

fn template_hash(d: &Deployment) -> String {
    d.spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get("ragdoll.dev/config-hash").cloned())
        .unwrap_or_default()
}

/// The children of the first pass (before the migration finished) that do not exist yet; the
/// operator applies them one after another, so a test waits for all of them.
async fn missing_first_pass_children(client: &Client, ns: &str) -> Vec<&'static str> {
    let mut missing = Vec::new();
    for (kind_ok, what) in [
        (
            exists::<ConfigMap>(client, ns, "ragdoll-postgres-config").await,
            "postgres config",
        ),
        (
            exists::<ConfigMap>(client, ns, "ragdoll-runtime-config").await,
            "runtime config",
        ),
        (
            exists::<Service>(client, ns, "ragdoll-postgres").await,
            "postgres service",
        ),
        (
            exists::<Service>(client, ns, "ragdoll-postgres-headless").await,
            "headless service",
        ),
        (
            exists::<Service>(client, ns, "ragdoll-api").await,
            "api service",
        ),
        (
            exists::<PodDisruptionBudget>(client, ns, "ragdoll-api").await,
            "pdb",
        ),
        (
            exists::<CronJob>(client, ns, "ragdoll-maintenance").await,
            "maintenance",
        ),
        (
            exists::<CronJob>(client, ns, "ragdoll-reindex").await,
            "reindex",
        ),
        (
            exists::<CronJob>(client, ns, "ragdoll-backup").await,
            "backup",
        ),
        (
            exists::<PersistentVolumeClaim>(client, ns, "ragdoll-backups").await,
            "backups volume",
        ),
        (
            exists::<NetworkPolicy>(client, ns, "ragdoll-database").await,
            "network policy",
        ),
        (
            exists::<Secret>(client, ns, "ragdoll-db-credentials").await,
            "credentials",
        ),
        (
            exists::<Secret>(client, ns, "ragdoll-api-keys").await,
            "api keys",
        ),
    ] {
        if !kind_ok {
            missing.push(what);
        }
    }
    missing
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minimal_cluster_converges_to_ready_and_then_writes_nothing() {
    let (client, ns) = setup("e2e-minimal").await;
    let op = InProcessOperator::start(&client, Some(&ns.name)).await;
    apply_yaml(&client, &ns.name, &example("minimal.yaml")).await;

    // Before the migration: the database, configuration, migration Job and the rest — no API or workers yet.
    eventually(T, "the migration Job", || async {
        api::<Job>(&client, &ns.name)
            .list(&ListParams::default().labels("app.kubernetes.io/component=migration"))
            .await
            .is_ok_and(|l| l.items.len() == 1)
    })
    .await;
    assert!(
        !exists::<Deployment>(&client, &ns.name, "ragdoll-api").await,
        "API waits for the migration"
    );
    let sts = api::<StatefulSet>(&client, &ns.name)
        .get("ragdoll-postgres")
        .await
        .unwrap();
    assert_child_meta(&sts, "ragdoll");
    let pg = &sts
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    assert_eq!(
        pg.image.as_deref(),
        Some(ragdoll_crds::DEFAULT_DATABASE_IMAGE)
    );
    let deadline = std::time::Instant::now() + T;
    loop {
        let missing = missing_first_pass_children(&client, &ns.name).await;
        if missing.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never created: {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let creds = api::<Secret>(&client, &ns.name)
        .get("ragdoll-db-credentials")
        .await
        .unwrap();
    let url = String::from_utf8(creds.data.unwrap()["url"].0.clone()).unwrap();
    assert!(
        url.starts_with("postgres://ragdoll:")
            && url.ends_with(&format!("@ragdoll-postgres.{}.svc:5432/ragdoll", ns.name)),
        "{url}"
    );

    // A kubelet stand-in: pods run, the migration Job's pod reports the schema version.
    let _kubelet = Kubelet::start(&client, &ns.name, MIGRATION_REPORT);
    let cluster = wait_ready(&client, &ns.name, "ragdoll", T).await;
    let status = cluster.status.clone().unwrap();
    assert_eq!(status.phase.as_deref(), Some("Ready"));
    assert_eq!(status.schema_version, Some(2));
    assert_eq!(status.workers_ready.as_deref(), Some("4/4"));
    assert_eq!(
        status.endpoints.as_ref().unwrap().api.as_deref(),
        Some(format!("http://ragdoll-api.{}.svc:8080", ns.name).as_str())
    );
    for c in [
        "DatabaseReady",
        "MigrationsComplete",
        "ApiReady",
        "WorkersReady",
        "Ready",
    ] {
        let (s, _, g) = condition(&cluster, c).unwrap();
        assert_eq!(
            (s.as_str(), g),
            ("True", cluster.metadata.generation),
            "{c}"
        );
    }
    assert_eq!(condition(&cluster, "Degraded").unwrap().0, "False");
    // Workers: one Deployment per queue with the guide's concurrency.
    for (queue, n) in [
        ("embeddings", "3"),
        ("processing", "2"),
        ("analysis", "1"),
        ("default", "1"),
    ] {
        let d = api::<Deployment>(&client, &ns.name)
            .get(&format!("ragdoll-worker-{queue}"))
            .await
            .unwrap();
        assert_child_meta(&d, "ragdoll");
        let args = d.spec.unwrap().template.spec.unwrap().containers[0]
            .args
            .clone()
            .unwrap();
        assert_eq!(args[..5], ["worker", "--queues", queue, "--concurrency", n]);
    }
    let api_dep = api::<Deployment>(&client, &ns.name)
        .get("ragdoll-api")
        .await
        .unwrap();
    assert_eq!(api_dep.spec.as_ref().unwrap().replicas, Some(2));
    // Events tell the story.
    let events: Api<Event> = api(&client, &ns.name);
    let reasons: Vec<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|e| e.involved_object.kind.as_deref() == Some("RagdollCluster"))
        .filter_map(|e| e.reason.clone())
        .collect();
    for r in [
        "CredentialsGenerated",
        "MigrationStarted",
        "Migrated",
        "Ready",
    ] {
        assert!(
            reasons.iter().any(|x| x == r),
            "no {r} event in {reasons:?}"
        );
    }

    // Steady state: nothing changes, nothing is written — even when a reconcile is triggered.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let writes = op.metric("ragdoll_operator_api_writes_total").await;
    let reconciles = op.metric("ragdoll_operator_reconciliations_total").await;
    let rdc: Api<RagdollCluster> = api(&client, &ns.name);
    rdc.patch(
        "ragdoll",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"poke": "1"}}})),
    )
    .await
    .unwrap();
    eventually(
        Duration::from_secs(10),
        "a reconcile after the poke",
        || async { op.metric("ragdoll_operator_reconciliations_total").await > reconciles },
    )
    .await;
    assert_eq!(
        op.metric("ragdoll_operator_api_writes_total").await,
        writes,
        "a second reconcile with no changes writes nothing"
    );
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_roll_out_deleted_children_return_and_pause_holds() {
    let (client, ns) = setup("e2e-changes").await;
    let op = InProcessOperator::start(&client, Some(&ns.name)).await;
    apply_yaml(&client, &ns.name, &example("minimal.yaml")).await;
    let _kubelet = Kubelet::start(&client, &ns.name, MIGRATION_REPORT);
    wait_ready(&client, &ns.name, "ragdoll", T).await;
    let deployments: Api<Deployment> = api(&client, &ns.name);
    let before = template_hash(&deployments.get("ragdoll-api").await.unwrap());
    let worker_before = template_hash(&deployments.get("ragdoll-worker-embeddings").await.unwrap());

    // Replicas and runtime configuration change: children follow, pods roll via the config hash.
    let rdc: Api<RagdollCluster> = api(&client, &ns.name);
    rdc.patch(
        "ragdoll",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"api": {"replicas": 3}, "ingestion": {"chunkSize": 800}}})),
    )
    .await
    .unwrap();
    eventually(T, "the API to scale and roll", || async {
        let d = deployments.get("ragdoll-api").await.unwrap();
        d.spec.as_ref().unwrap().replicas == Some(3) && template_hash(&d) != before
    })
    .await;
    let cm = api::<ConfigMap>(&client, &ns.name)
        .get("ragdoll-runtime-config")
        .await
        .unwrap();
    assert_eq!(cm.data.unwrap()["RAGDOLL_CHUNK_SIZE"], "800");
    assert_ne!(
        template_hash(&deployments.get("ragdoll-worker-embeddings").await.unwrap()),
        worker_before,
        "workers roll too"
    );
    let c = wait_ready(&client, &ns.name, "ragdoll", T).await;
    assert_eq!(c.status.unwrap().observed_generation, Some(2));

    // Rotating the API key Secret rolls the API as well.
    let before = template_hash(&deployments.get("ragdoll-api").await.unwrap());
    api::<Secret>(&client, &ns.name)
        .patch(
            "ragdoll-api-keys",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"keys": "rotated-key"}})),
        )
        .await
        .unwrap();
    rdc.patch(
        "ragdoll",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"rotate": "1"}}})),
    )
    .await
    .unwrap();
    eventually(T, "a roll after the key rotation", || async {
        template_hash(&deployments.get("ragdoll-api").await.unwrap()) != before
    })
    .await;

    // Deleted children come back within seconds.
    deployments
        .delete("ragdoll-api", &DeleteParams::default())
        .await
        .unwrap();
    api::<ConfigMap>(&client, &ns.name)
        .delete("ragdoll-runtime-config", &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        Duration::from_secs(15),
        "the deleted Deployment and ConfigMap to return",
        || async {
            exists::<Deployment>(&client, &ns.name, "ragdoll-api").await
                && exists::<ConfigMap>(&client, &ns.name, "ragdoll-runtime-config").await
        },
    )
    .await;
    // An edit of a child's spec is undone.
    deployments
        .patch(
            "ragdoll-api",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 9}})),
        )
        .await
        .unwrap();
    eventually(
        Duration::from_secs(15),
        "the edit to be reverted",
        || async {
            deployments
                .get("ragdoll-api")
                .await
                .unwrap()
                .spec
                .unwrap()
                .replicas
                == Some(3)
        },
    )
    .await;

    // Paused: spec changes wait; the status says so.
    rdc.patch(
        "ragdoll",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"paused": true}})),
    )
    .await
    .unwrap();
    eventually(T, "the Paused phase", || async {
        get_cluster(&client, &ns.name, "ragdoll")
            .await
            .status
            .and_then(|s| s.phase)
            == Some("Paused".into())
    })
    .await;
    rdc.patch(
        "ragdoll",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"api": {"replicas": 4}}})),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        deployments
            .get("ragdoll-api")
            .await
            .unwrap()
            .spec
            .unwrap()
            .replicas,
        Some(3),
        "paused: no change"
    );
    rdc.patch(
        "ragdoll",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"paused": false}})),
    )
    .await
    .unwrap();
    eventually(T, "the change after unpausing", || async {
        deployments
            .get("ragdoll-api")
            .await
            .unwrap()
            .spec
            .unwrap()
            .replicas
            == Some(4)
    })
    .await;
    wait_ready(&client, &ns.name, "ragdoll", T).await;

    // A removed worker queue loses its Deployment (orphan cleanup).
    rdc.patch(
        "ragdoll",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"workers": [
        {"queue": "embeddings"}, {"queue": "processing"}, {"queue": "analysis"}]}})),
    )
    .await
    .unwrap();
    eventually(T, "the default worker to be removed", || async {
        !exists::<Deployment>(&client, &ns.name, "ragdoll-worker-default").await
    })
    .await;
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_collects_children_and_keeps_retained_volumes() {
    let (client, ns) = setup("e2e-delete").await;
    let op = InProcessOperator::start(&client, Some(&ns.name)).await;
    let yaml = example("minimal.yaml").replace(
        "spec: {}",
        "spec:\n  database:\n    managed:\n      retainOnDelete: true",
    );
    apply_yaml(&client, &ns.name, &yaml).await;
    let _kubelet = Kubelet::start(&client, &ns.name, MIGRATION_REPORT);
    wait_ready(&client, &ns.name, "ragdoll", T).await;
    eventually(T, "the database volume", || async {
        exists::<PersistentVolumeClaim>(&client, &ns.name, "data-ragdoll-postgres-0").await
    })
    .await;
    let rdc: Api<RagdollCluster> = api(&client, &ns.name);
    rdc.delete("ragdoll", &DeleteParams::foreground())
        .await
        .unwrap();
    eventually(T, "garbage collection of the children", || async {
        !exists::<Deployment>(&client, &ns.name, "ragdoll-api").await
            && !exists::<StatefulSet>(&client, &ns.name, "ragdoll-postgres").await
            && !exists::<ConfigMap>(&client, &ns.name, "ragdoll-runtime-config").await
            && !exists::<CronJob>(&client, &ns.name, "ragdoll-backup").await
            && !exists::<Secret>(&client, &ns.name, "ragdoll-db-credentials").await
            && rdc.get_opt("ragdoll").await.ok().flatten().is_none()
    })
    .await;
    assert!(
        exists::<PersistentVolumeClaim>(&client, &ns.name, "ragdoll-backups").await,
        "retained backups"
    );
    assert!(
        exists::<PersistentVolumeClaim>(&client, &ns.name, "data-ragdoll-postgres-0").await,
        "retained data"
    );
    op.stop().await;

    // Without retainOnDelete the volumes go too.
    let (client, ns) = setup("e2e-delete-all").await;
    let op = InProcessOperator::start(&client, Some(&ns.name)).await;
    apply_yaml(&client, &ns.name, &example("minimal.yaml")).await;
    let _kubelet = Kubelet::start(&client, &ns.name, MIGRATION_REPORT);
    wait_ready(&client, &ns.name, "ragdoll", T).await;
    eventually(T, "the database volume", || async {
        exists::<PersistentVolumeClaim>(&client, &ns.name, "data-ragdoll-postgres-0").await
    })
    .await;
    api::<RagdollCluster>(&client, &ns.name)
        .delete("ragdoll", &DeleteParams::foreground())
        .await
        .unwrap();
    eventually(T, "the volumes to be collected", || async {
        !exists::<PersistentVolumeClaim>(&client, &ns.name, "ragdoll-backups").await
            && !exists::<PersistentVolumeClaim>(&client, &ns.name, "data-ragdoll-postgres-0").await
    })
    .await;
    op.stop().await;
}

async fn resource_versions(client: &Client, ns: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for kind in ragdoll_operator::render::Kind::ALL {
        if kind == ragdoll_operator::render::Kind::ServiceMonitor {
            continue;
        }
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), ns, &kind.api_resource());
        for o in api
            .list(&ListParams::default().labels("app.kubernetes.io/managed-by=ragdoll-operator"))
            .await
            .unwrap()
            .items
        {
            out.insert(
                format!("{kind:?}/{}", o.name_any()),
                o.resource_version().unwrap_or_default(),
            );
        }
    }
    let rdc: Api<RagdollCluster> = Api::namespaced(client.clone(), ns);
    for c in rdc.list(&ListParams::default()).await.unwrap().items {
        out.insert(
            format!("RagdollCluster/{}", c.name_any()),
            c.resource_version().unwrap_or_default(),
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_restart_writes_nothing_to_unchanged_objects() {
    let (client, ns) = setup("e2e-restart").await;
    let op = InProcessOperator::start(&client, Some(&ns.name)).await;
    apply_yaml(&client, &ns.name, &example("minimal.yaml")).await;
    let kubelet = Kubelet::start(&client, &ns.name, MIGRATION_REPORT);
    wait_ready(&client, &ns.name, "ragdoll", T).await;
    drop(kubelet);
    tokio::time::sleep(Duration::from_secs(2)).await;
    op.stop().await;
    let before = resource_versions(&client, &ns.name).await;
    let op = InProcessOperator::start(&client, Some(&ns.name)).await;
    eventually(
        Duration::from_secs(20),
        "the restarted operator to reconcile",
        || async { op.metric("ragdoll_operator_reconciliations_total").await >= 1.0 },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        op.metric("ragdoll_operator_api_writes_total").await,
        0.0,
        "no writes after a restart"
    );
    let after = resource_versions(&client, &ns.name).await;
    assert_eq!(before, after, "no object changed");
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_reconciles() {
    let (client, ns) = setup("e2e-leader").await;
    let lease = Some((ns.name.clone(), "ragdoll-operator-leader".to_string()));
    let a = InProcessOperator::start_as(client.clone(), Some(&ns.name), lease.clone()).await;
    eventually(Duration::from_secs(20), "A to lead", || async {
        a.metric("ragdoll_operator_leader").await == 1.0
    })
    .await;
    let b = InProcessOperator::start_as(client.clone(), Some(&ns.name), lease.clone()).await;
    apply_yaml(&client, &ns.name, &example("minimal.yaml")).await;
    eventually(T, "A to create the children", || async {
        exists::<ConfigMap>(&client, &ns.name, "ragdoll-runtime-config").await
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        b.metric("ragdoll_operator_leader").await,
        0.0,
        "B stands by"
    );
    assert_eq!(
        b.metric("ragdoll_operator_reconciliations_total").await,
        0.0,
        "B does not reconcile"
    );
    assert_eq!(
        b.metric("ragdoll_operator_api_writes_total").await,
        0.0,
        "B writes nothing"
    );
    // A stops (and releases the lease): B takes over and reconciles.
    a.stop().await;
    eventually(Duration::from_secs(20), "B to lead", || async {
        b.metric("ragdoll_operator_leader").await == 1.0
    })
    .await;
    let rdc: Api<RagdollCluster> = api(&client, &ns.name);
    rdc.patch(
        "ragdoll",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"maintenance": {"schedule": "15 3 * * *"}}})),
    )
    .await
    .unwrap();
    eventually(T, "B to apply the change", || async {
        api::<CronJob>(&client, &ns.name)
            .get("ragdoll-maintenance")
            .await
            .is_ok_and(|c| c.spec.unwrap().schedule == "15 3 * * *")
    })
    .await;
    let lease_obj: Api<k8s_openapi::api::coordination::v1::Lease> = api(&client, &ns.name);
    let holder = lease_obj
        .get("ragdoll-operator-leader")
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity
        .unwrap();
    assert!(holder.starts_with("e2e-"));
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_and_external_examples() {
    let (client, ns) = setup("e2e-examples").await;
    // The Prometheus Operator's CRD, so the ServiceMonitor can be created.
    let sm_crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
        "spec": {"group": "monitoring.coreos.com", "scope": "Namespaced",
            "names": {"plural": "servicemonitors", "singular": "servicemonitor", "kind": "ServiceMonitor", "listKind": "ServiceMonitorList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    });
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        "servicemonitors.monitoring.coreos.com",
        &PatchParams::apply("ragdoll-e2e").force(),
        &Patch::Apply(&sm_crd),
    )
    .await
    .unwrap();
    let op = InProcessOperator::start(&client, Some(&ns.name)).await;
    apply_yaml(&client, &ns.name, &example("production.yaml")).await;
    apply_yaml(&client, &ns.name, &example("external-db.yaml")).await;
    let _kubelet = Kubelet::start(&client, &ns.name, MIGRATION_REPORT);
    let prod = wait_ready(&client, &ns.name, "ragdoll-prod", Duration::from_secs(90)).await;
    assert_eq!(prod.status.unwrap().workers_ready.as_deref(), Some("8/8"));
    let hpa = api::<HorizontalPodAutoscaler>(&client, &ns.name)
        .get("ragdoll-prod-api")
        .await
        .unwrap();
    assert_eq!(hpa.spec.unwrap().max_replicas, 8);
    let sts = api::<StatefulSet>(&client, &ns.name)
        .get("ragdoll-prod-postgres")
        .await
        .unwrap();
    let pg = &sts
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    assert_eq!(
        pg.resources.as_ref().unwrap().limits.as_ref().unwrap()["memory"].0,
        "32Gi"
    );
    let conf = api::<ConfigMap>(&client, &ns.name)
        .get("ragdoll-prod-postgres-config")
        .await
        .unwrap()
        .data
        .unwrap()["postgresql.conf"]
        .clone();
    assert!(conf.contains("shared_buffers = 8192MB"), "{conf}");
    let sm: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns.name,
        &ragdoll_operator::render::Kind::ServiceMonitor.api_resource(),
    );
    eventually(T, "the ServiceMonitor", || async {
        sm.get_opt("ragdoll-prod-metrics")
            .await
            .ok()
            .flatten()
            .is_some()
    })
    .await;
    assert!(exists::<Service>(&client, &ns.name, "ragdoll-prod-workers").await);

    let ext = wait_ready(
        &client,
        &ns.name,
        "ragdoll-external",
        Duration::from_secs(90),
    )
    .await;
    let status = ext.status.unwrap();
    assert_eq!(
        status.endpoints.as_ref().unwrap().database.as_deref(),
        Some("postgres.databases.svc:5432")
    );
    assert_eq!(
        condition_of(&status, "DatabaseReady"),
        ("True".to_string(), "ExternalReachable".to_string())
    );
    assert!(!exists::<StatefulSet>(&client, &ns.name, "ragdoll-external-postgres").await);
    op.stop().await;
}

fn condition_of(s: &ragdoll_crds::RagdollClusterStatus, t: &str) -> (String, String) {
    let c = s.conditions.iter().find(|c| c.type_ == t).unwrap();
    (c.status.clone(), c.reason.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_secret_degrades_with_a_clear_message_and_recovers() {
    let (client, ns) = setup("e2e-secret").await;
    let op = InProcessOperator::start(&client, Some(&ns.name)).await;
    let yaml = "apiVersion: ragdoll.dev/v1alpha1\nkind: RagdollCluster\nmetadata:\n  name: rag\nspec:\n  embeddings:\n    provider: openai\n    apiKeySecretRef: {name: missing-openai, key: api-key}\n";
    apply_yaml(&client, &ns.name, yaml).await;
    eventually(T, "the Degraded condition", || async {
        let c = get_cluster(&client, &ns.name, "rag").await;
        condition(&c, "Degraded").is_some_and(|(s, _, _)| s == "True")
    })
    .await;
    let c = get_cluster(&client, &ns.name, "rag").await;
    let msg = c
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap()
        .message
        .clone();
    assert!(
        msg.contains("Secret missing-openai has no key api-key"),
        "{msg}"
    );
    assert_eq!(c.status.unwrap().phase.as_deref(), Some("Degraded"));
    let secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: missing-openai\nstringData:\n  api-key: sk-test\n";
    apply_yaml(&client, &ns.name, secret).await;
    let _kubelet = Kubelet::start(&client, &ns.name, MIGRATION_REPORT);
    wait_ready(&client, &ns.name, "rag", Duration::from_secs(120)).await;
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_outcome_is_reported() {
    let (client, ns) = setup("e2e-backup").await;
    let op = InProcessOperator::start(&client, Some(&ns.name)).await;
    apply_yaml(&client, &ns.name, &example("minimal.yaml")).await;
    let _kubelet = Kubelet::start(&client, &ns.name, MIGRATION_REPORT);
    wait_ready(&client, &ns.name, "ragdoll", T).await;
    // What `kubectl create job --from=cronjob/ragdoll-backup` does: a Job owned by the CronJob.
    let cron = api::<CronJob>(&client, &ns.name)
        .get("ragdoll-backup")
        .await
        .unwrap();
    let template = cron.spec.clone().unwrap().job_template;
    let job = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "ragdoll-backup-manual", "labels": template.metadata.as_ref().and_then(|m| m.labels.clone()),
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "ragdoll-backup", "uid": cron.uid().unwrap(), "controller": true}]},
        "spec": template.spec,
    });
    let job: Job = serde_json::from_value(job).unwrap();
    api::<Job>(&client, &ns.name)
        .create(&PostParams::default(), &job)
        .await
        .unwrap();
    eventually(T, "LastBackupSucceeded", || async {
        let c = get_cluster(&client, &ns.name, "ragdoll").await;
        condition(&c, "LastBackupSucceeded").is_some_and(|(s, _, _)| s == "True")
    })
    .await;
    let c = get_cluster(&client, &ns.name, "ragdoll").await;
    let last = c.status.unwrap().last_backup.unwrap();
    assert_eq!(
        (last.job.as_deref(), last.result.as_str()),
        (Some("ragdoll-backup-manual"), "Succeeded")
    );
    assert!(last.time.is_some());
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_is_reported_in_the_status() {
    let (client, ns) = setup("e2e-forbidden").await;
    // A ServiceAccount allowed everything the operator does here except creating Secrets.
    let everything = json!(["get", "list", "watch", "create", "patch", "delete"]);
    let rbac = format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: starved\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: starved\nrules:\n\
         - apiGroups: [ragdoll.dev]\n  resources: [ragdollclusters, ragdollclusters/status]\n  verbs: {everything}\n\
         - apiGroups: ['', apps, batch, policy, autoscaling, networking.k8s.io, events.k8s.io]\n  resources: [configmaps, services, persistentvolumeclaims, pods, deployments, statefulsets, jobs, cronjobs, poddisruptionbudgets, horizontalpodautoscalers, networkpolicies, events]\n  verbs: {everything}\n\
         - apiGroups: ['']\n  resources: [secrets]\n  verbs: [get, list, watch]\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: starved\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: starved}}\n\
         subjects: [{{kind: ServiceAccount, name: starved, namespace: {}}}]\n",
        ns.name
    );
    apply_yaml(&client, &ns.name, &rbac).await;
    let starved = impersonating(&format!("system:serviceaccount:{}:starved", ns.name)).await;
    let op = InProcessOperator::start_as(starved, Some(&ns.name), None).await;
    apply_yaml(&client, &ns.name, &example("minimal.yaml")).await;
    eventually(T, "a Degraded status naming the refusal", || async {
        let c = get_cluster(&client, &ns.name, "ragdoll").await;
        c.status.as_ref().is_some_and(|s| {
            s.phase.as_deref() == Some("Degraded")
                && s.conditions.iter().any(|c| {
                    c.type_ == "Degraded"
                        && c.status == "True"
                        && c.message.contains("secrets is forbidden")
                })
        })
    })
    .await;
    op.stop().await;
}

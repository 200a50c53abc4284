//! Builder tests: golden files of everything rendered for the three examples, and targeted
//! checks of the properties that matter (ownership, labels, security, gating, hashing).

use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use ragdoll_crds::RagdollCluster;
use serde::Deserialize;
use serde_json::{Value, json};

use super::*;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Loads the RagdollCluster from an example file (skipping other documents).
pub(crate) fn example(name: &str) -> RagdollCluster {
    let text = std::fs::read_to_string(root().join("manifests/examples").join(name)).unwrap();
    for doc in serde_norway::Deserializer::from_str(&text) {
        let v = Value::deserialize(doc).unwrap();
        if v["kind"] == "RagdollCluster" {
            let mut c: RagdollCluster = serde_json::from_value(v).unwrap();
            c.metadata.namespace = Some("rag".into());
            c.metadata.uid = Some("11111111-2222-3333-4444-555555555555".into());
            return c;
        }
    }
    panic!("no RagdollCluster in {name}");
}

fn ctx(c: &RagdollCluster) -> Ctx<'_> {
    let mut ctx = Ctx::new(c);
    ctx.config_hash = "cafe".into();
    ctx.service_monitor_available = true;
    ctx
}

fn kinds_and_names(d: &Desired) -> Vec<(Kind, String)> {
    let mut v: Vec<_> = d
        .children
        .iter()
        .map(|c| (c.kind, c.name.clone()))
        .collect();
    v.sort();
    v
}

/// Every rendered object must be a valid instance of its Kubernetes type.
fn typed_check(c: &Child) {
    let v = c.object.clone();
    let ok = match c.kind {
        Kind::Secret => serde_json::from_value::<Secret>(v).is_ok(),
        Kind::ConfigMap => serde_json::from_value::<ConfigMap>(v).is_ok(),
        Kind::Service => serde_json::from_value::<Service>(v).is_ok(),
        Kind::PersistentVolumeClaim => serde_json::from_value::<PersistentVolumeClaim>(v).is_ok(),
        Kind::StatefulSet => serde_json::from_value::<StatefulSet>(v).is_ok(),
        Kind::Deployment => serde_json::from_value::<Deployment>(v).is_ok(),
        Kind::Job => serde_json::from_value::<Job>(v).is_ok(),
        Kind::CronJob => serde_json::from_value::<CronJob>(v).is_ok(),
        Kind::PodDisruptionBudget => serde_json::from_value::<PodDisruptionBudget>(v).is_ok(),
        Kind::HorizontalPodAutoscaler => {
            serde_json::from_value::<HorizontalPodAutoscaler>(v).is_ok()
        }
        Kind::NetworkPolicy => serde_json::from_value::<NetworkPolicy>(v).is_ok(),
        Kind::ServiceMonitor => true,
    };
    assert!(
        ok,
        "{:?} {} does not deserialize as its type",
        c.kind, c.name
    );
}

#[test]
fn golden_files_of_the_examples() {
    let update = std::env::var("RAGDOLL_UPDATE_GENERATED").is_ok();
    for example_name in ["minimal.yaml", "production.yaml", "external-db.yaml"] {
        let cluster = example(example_name);
        let d = desired(&ctx(&cluster), true);
        let mut out = String::from("# Rendered by operator/src/render for manifests/examples/");
        out.push_str(example_name);
        out.push_str(
            " (RAGDOLL_UPDATE_GENERATED=1 cargo test -p ragdoll-operator golden rewrites it)\n",
        );
        for c in &d.children {
            typed_check(c);
            out.push_str("---\n");
            out.push_str(&serde_norway::to_string(&c.object).unwrap());
        }
        let path = root().join("operator/src/render/golden").join(example_name);
        if update {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &out).unwrap();
        } else {
            let have = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                have == out,
                "{} differs from the rendering: review the change, then rewrite it",
                path.display()
            );
        }
    }
}

#[test]
fn minimal_renders_every_child() {
    let c = example("minimal.yaml");
    let d = desired(&ctx(&c), true);
    let names = kinds_and_names(&d);
    let mut expected: Vec<(Kind, String)> = [
        (Kind::ConfigMap, "ragdoll-postgres-config"),
        (Kind::ConfigMap, "ragdoll-runtime-config"),
        (Kind::Service, "ragdoll-api"),
        (Kind::Service, "ragdoll-postgres"),
        (Kind::Service, "ragdoll-postgres-headless"),
        (Kind::PersistentVolumeClaim, "ragdoll-backups"),
        (Kind::StatefulSet, "ragdoll-postgres"),
        (Kind::Deployment, "ragdoll-api"),
        (Kind::Deployment, "ragdoll-worker-analysis"),
        (Kind::Deployment, "ragdoll-worker-default"),
        (Kind::Deployment, "ragdoll-worker-embeddings"),
        (Kind::Deployment, "ragdoll-worker-processing"),
        (Kind::PodDisruptionBudget, "ragdoll-api"),
        (Kind::CronJob, "ragdoll-backup"),
        (Kind::CronJob, "ragdoll-maintenance"),
        (Kind::CronJob, "ragdoll-reindex"),
        (Kind::NetworkPolicy, "ragdoll-database"),
    ]
    .into_iter()
    .map(|(k, n)| (k, n.to_string()))
    .collect();
    expected.push((Kind::Job, migration_job_name_of(&c)));
    expected.sort();
    assert_eq!(names, expected);
    let cfg = &d
        .get(Kind::ConfigMap, "ragdoll-runtime-config")
        .unwrap()
        .object["data"];
    assert_eq!(
        cfg["RAGDOLL_EMBEDDING_PROVIDER"], "local",
        "semantic search out of the box, from the model in the runtime image"
    );
    assert_eq!(cfg["RAGDOLL_LLM_PROVIDER"], "none");
    assert!(cfg.get("RAGDOLL_VISION_MODEL").is_none());
    for child in &d.children {
        let meta = &child.object["metadata"];
        assert_eq!(meta["namespace"], "rag");
        assert!(child.name.starts_with("ragdoll-"));
        for key in ["name", "instance", "component", "managed-by", "part-of"] {
            assert!(
                meta["labels"][format!("app.kubernetes.io/{key}")].is_string(),
                "{} lacks {key}",
                child.name
            );
        }
        assert_eq!(
            meta["ownerReferences"][0]["kind"], "RagdollCluster",
            "{}",
            child.name
        );
        assert_eq!(meta["ownerReferences"][0]["controller"], true);
        assert_eq!(child.hash().len(), 16);
    }
}

fn migration_job_name_of(c: &RagdollCluster) -> String {
    jobs::migration_job_name(&Ctx::new(c))
}

fn pod_specs(d: &Desired) -> Vec<(String, Value)> {
    d.children
        .iter()
        .filter_map(|c| {
            let o = &c.object;
            let pod = match c.kind {
                Kind::Deployment | Kind::StatefulSet | Kind::Job => {
                    o["spec"]["template"]["spec"].clone()
                }
                Kind::CronJob => o["spec"]["jobTemplate"]["spec"]["template"]["spec"].clone(),
                _ => return None,
            };
            Some((c.name.clone(), pod))
        })
        .collect()
}

#[test]
fn every_pod_is_restricted_and_sized() {
    let c = example("production.yaml");
    let d = desired(&ctx(&c), true);
    let pods = pod_specs(&d);
    assert!(pods.len() >= 9);
    for (name, pod) in pods {
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
            "{name}"
        );
        for container in pod["containers"].as_array().unwrap() {
            let sc = &container["securityContext"];
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
            assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{name}");
            assert!(
                container["resources"]["requests"].is_object(),
                "{name} has requests"
            );
        }
    }
}

#[test]
fn long_running_pods_have_probes_and_roll_with_the_config() {
    let c = example("minimal.yaml");
    let d = desired(&ctx(&c), true);
    for child in d
        .children
        .iter()
        .filter(|c| matches!(c.kind, Kind::Deployment | Kind::StatefulSet))
    {
        let tpl = &child.object["spec"]["template"];
        let container = &tpl["spec"]["containers"][0];
        assert!(container["readinessProbe"].is_object(), "{}", child.name);
        assert!(container["livenessProbe"].is_object(), "{}", child.name);
        assert!(
            tpl["metadata"]["annotations"][CONFIG_HASH_ANNOTATION].is_string(),
            "{}",
            child.name
        );
    }
    let api = d.get(Kind::Deployment, "ragdoll-api").unwrap();
    assert_eq!(
        api.object["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION],
        "cafe"
    );
    let pg = d.get(Kind::StatefulSet, "ragdoll-postgres").unwrap();
    assert_eq!(
        pg.object["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["exec"]["command"]
            [0],
        "pg_isready"
    );
}

#[test]
fn deployments_wait_for_the_migration() {
    let c = example("minimal.yaml");
    let d = desired(&ctx(&c), false);
    assert!(d.children.iter().all(|c| c.kind != Kind::Deployment));
    let mut held: Vec<&str> = d.held.iter().map(|(_, n)| n.as_str()).collect();
    held.sort();
    assert_eq!(
        held,
        [
            "ragdoll-api",
            "ragdoll-worker-analysis",
            "ragdoll-worker-default",
            "ragdoll-worker-embeddings",
            "ragdoll-worker-processing"
        ]
    );
    assert!(
        d.get(Kind::Job, &migration_job_name_of(&c)).is_some(),
        "the migration itself is not held"
    );
}

#[test]
fn migration_job_reports_and_is_named_by_what_the_schema_depends_on() {
    let c = example("minimal.yaml");
    let job = jobs::migration_job(&Ctx::new(&c));
    let container = &job.object["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["args"],
        json!(["migrate", "--report", "/dev/termination-log"])
    );
    assert_eq!(
        container["terminationMessagePolicy"],
        "FallbackToLogsOnError"
    );
    let mut other = c.clone();
    other.spec.api.replicas = 7;
    other.spec.workers[0].replicas = 3;
    assert_eq!(
        migration_job_name_of(&c),
        migration_job_name_of(&other),
        "scaling does not migrate"
    );
    other.spec.runtime.image = "ragdoll/ragdoll:9.9.9".into();
    assert_ne!(
        migration_job_name_of(&c),
        migration_job_name_of(&other),
        "a new image migrates"
    );
    let mut dims = c.clone();
    dims.spec.embeddings.dimensions = 768;
    assert_ne!(migration_job_name_of(&c), migration_job_name_of(&dims));
}

#[test]
fn workers_run_their_queue_with_the_guide_concurrency() {
    let c = example("minimal.yaml");
    let d = desired(&ctx(&c), true);
    for (queue, n) in [
        ("embeddings", "3"),
        ("processing", "2"),
        ("analysis", "1"),
        ("default", "1"),
    ] {
        let w = d
            .get(Kind::Deployment, &format!("ragdoll-worker-{queue}"))
            .unwrap();
        let container = &w.object["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            container["args"],
            json!([
                "worker",
                "--queues",
                queue,
                "--concurrency",
                n,
                "--metrics-bind",
                "0.0.0.0:9090"
            ])
        );
        assert_eq!(
            w.object["spec"]["selector"]["matchLabels"][QUEUE_LABEL],
            queue
        );
        assert_eq!(
            w.object["spec"]["template"]["metadata"]["labels"][DB_CLIENT_LABEL],
            "true"
        );
        let env = container["env"].as_array().unwrap();
        assert!(env.iter().any(|e| e["name"] == "DATABASE_URL"
            && e["valueFrom"]["secretKeyRef"]["name"] == "ragdoll-db-credentials"));
        assert!(
            !env.iter().any(|e| e["name"] == "RAGDOLL_API_KEYS"),
            "only the API gets the API keys"
        );
    }
}

#[test]
fn production_sizing_autoscaling_and_monitoring() {
    let c = example("production.yaml");
    let d = desired(&ctx(&c), true);
    let api = d.get(Kind::Deployment, "ragdoll-prod-api").unwrap();
    assert!(
        api.object["spec"].get("replicas").is_none(),
        "the HPA owns replicas"
    );
    let hpa = d
        .get(Kind::HorizontalPodAutoscaler, "ragdoll-prod-api")
        .unwrap();
    assert_eq!(hpa.object["spec"]["minReplicas"], 3);
    assert_eq!(hpa.object["spec"]["maxReplicas"], 8);
    let conf = d
        .get(Kind::ConfigMap, "ragdoll-prod-postgres-config")
        .unwrap()
        .object["data"]["postgresql.conf"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        conf.contains("shared_buffers = 8192MB") && conf.contains("effective_cache_size = 24576MB"),
        "{conf}"
    );
    assert!(
        conf.contains("max_connections = 300"),
        "parameters override the tuning"
    );
    let sts = d.get(Kind::StatefulSet, "ragdoll-prod-postgres").unwrap();
    assert_eq!(
        sts.object["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"],
        "Retain"
    );
    assert_eq!(
        sts.object["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"],
        "fast-ssd"
    );
    let backups = d
        .get(Kind::PersistentVolumeClaim, "ragdoll-prod-backups")
        .unwrap();
    assert!(
        backups.object["metadata"].get("ownerReferences").is_none(),
        "retained volumes are not owned"
    );
    assert!(
        d.get(Kind::ServiceMonitor, "ragdoll-prod-metrics")
            .is_some()
    );
    assert!(d.get(Kind::Service, "ragdoll-prod-workers").is_some());
    let cfg = &d
        .get(Kind::ConfigMap, "ragdoll-prod-runtime-config")
        .unwrap()
        .object["data"];
    assert_eq!(cfg["RAGDOLL_EMBEDDING_PROVIDER"], "openai");
    assert_eq!(cfg["RAGDOLL_EMBEDDING_DIMENSIONS"], "1536");
    assert_eq!(cfg["RAGDOLL_MAX_FILE_SIZE"], "104857600");
    assert_eq!(cfg["RAGDOLL_LLM_PROVIDER"], "openai");
    assert_eq!(cfg["RAGDOLL_SUMMARY_MODEL"], "gpt-4o-mini");
    assert_eq!(cfg["RAGDOLL_VISION_MODEL"], "gpt-4o-mini");
    assert_eq!(cfg["RAGDOLL_TRANSCRIPTION_MODEL"], "whisper-1");
    let env = api.object["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .clone();
    for key in ["RAGDOLL_EMBEDDING_API_KEY", "RAGDOLL_LLM_API_KEY"] {
        assert!(
            env.iter().any(|e| e["name"] == key
                && e["valueFrom"]["secretKeyRef"]["name"] == "openai"
                && e["valueFrom"]["secretKeyRef"]["key"] == "api-key"),
            "{key} from the Secret"
        );
    }
    assert!(
        !cfg.to_string().contains("replace-me"),
        "keys never land in the ConfigMap"
    );
    // Without the Prometheus Operator's CRD, no ServiceMonitor is rendered.
    let mut no_crd = ctx(&c);
    no_crd.service_monitor_available = false;
    assert!(
        desired(&no_crd, true)
            .get(Kind::ServiceMonitor, "ragdoll-prod-metrics")
            .is_none()
    );
}

#[test]
fn external_database_has_no_database_children() {
    let c = example("external-db.yaml");
    let d = desired(&ctx(&c), true);
    assert!(
        d.children
            .iter()
            .all(|c| c.kind != Kind::StatefulSet && c.kind != Kind::NetworkPolicy)
    );
    assert!(d.get(Kind::Service, "ragdoll-external-postgres").is_none());
    let api = d.get(Kind::Deployment, "ragdoll-external-api").unwrap();
    let env = &api.object["spec"]["template"]["spec"]["containers"][0]["env"];
    assert_eq!(
        env[0]["valueFrom"]["secretKeyRef"],
        json!({"name": "ragdoll-database", "key": "url"})
    );
    let cfg = &d
        .get(Kind::ConfigMap, "ragdoll-external-runtime-config")
        .unwrap()
        .object["data"];
    assert_eq!(cfg["RAGDOLL_DATABASE_SSL_MODE"], "require");
    let backup = d.get(Kind::CronJob, "ragdoll-external-backup").unwrap();
    assert_eq!(
        backup.object["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"],
        ragdoll_crds::DEFAULT_DATABASE_IMAGE
    );
}

#[test]
fn network_policy_admits_only_this_clusters_clients() {
    let c = example("minimal.yaml");
    let d = desired(&ctx(&c), true);
    let np = d.get(Kind::NetworkPolicy, "ragdoll-database").unwrap();
    assert_eq!(
        np.object["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"],
        json!({"app.kubernetes.io/instance": "ragdoll", DB_CLIENT_LABEL: "true"})
    );
    assert_eq!(np.object["spec"]["ingress"][0]["ports"][0]["port"], 5432);
    let mut off = c.clone();
    off.spec.network_policy = false;
    assert!(
        desired(&ctx(&off), true)
            .get(Kind::NetworkPolicy, "ragdoll-database")
            .is_none()
    );
}

#[test]
fn maintenance_and_backup_schedules() {
    let mut c = example("minimal.yaml");
    c.spec.maintenance.reindex = "Never".into();
    c.spec.maintenance.vacuum_analyze = false;
    c.spec.backup.enabled = false;
    let d = desired(&ctx(&c), true);
    assert!(d.get(Kind::CronJob, "ragdoll-reindex").is_none());
    assert!(d.get(Kind::CronJob, "ragdoll-backup").is_none());
    let m = d.get(Kind::CronJob, "ragdoll-maintenance").unwrap();
    assert_eq!(
        m.object["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"],
        json!(["maintain"])
    );
    c.spec.maintenance.reindex = "30 1 * * 6".into();
    let d = desired(&ctx(&c), true);
    assert_eq!(
        d.get(Kind::CronJob, "ragdoll-reindex").unwrap().object["spec"]["schedule"],
        "30 1 * * 6"
    );
}

#[test]
fn hashes_change_with_content_only() {
    let c = example("minimal.yaml");
    let a = desired(&ctx(&c), true);
    let b = desired(&ctx(&c), true);
    assert_eq!(a.children, b.children, "rendering is deterministic");
    let mut changed = c.clone();
    changed.spec.api.replicas = 5;
    let d = desired(&ctx(&changed), true);
    assert_ne!(
        a.get(Kind::Deployment, "ragdoll-api").unwrap().hash(),
        d.get(Kind::Deployment, "ragdoll-api").unwrap().hash()
    );
    assert_eq!(
        a.get(Kind::Service, "ragdoll-api").unwrap().hash(),
        d.get(Kind::Service, "ragdoll-api").unwrap().hash()
    );
}

//! The end-to-end harness: a real kube-apiserver (tests/controlplane/up.sh, started once), a
//! namespace per test, the CRD installed from the Rust types, the operator in-process or as a
//! process, and a stand-in for the kubelet that marks pods ready (or job pods succeeded) the way
//! a kubelet would — there is no kubelet in this control plane.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, CustomResourceExt, ResourceExt};
use ragdoll_crds::RagdollCluster;
use ragdoll_operator::controller::{self, Options};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn script_output(script: &str) -> String {
    let out = Command::new(repo_root().join(script))
        .output()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    assert!(
        out.status.success(),
        "{script} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The control-plane binaries (etcd, kube-apiserver, kubectl, helm …), built on first use.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        PathBuf::from(
            script_output("tests/controlplane/build.sh")
                .lines()
                .last()
                .unwrap_or_default(),
        )
    })
}

/// The local embedding model the runtime image carries (its Dockerfile sets RAGDOLL_MODEL_DIR),
/// fetched on first use by tests/env/models.sh, which reuses a verified cached copy.
pub fn model_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = script_output("tests/env/models.sh");
        PathBuf::from(
            out.lines()
                .find_map(|l| l.strip_prefix("RAGDOLL_MODEL_DIR="))
                .expect("models.sh prints RAGDOLL_MODEL_DIR"),
        )
    })
}

/// Path of the admin kubeconfig of the running test control plane (started on first use).
pub fn kubeconfig() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let _ = bin_dir();
        let out = script_output("tests/controlplane/up.sh");
        let line = out
            .lines()
            .find_map(|l| l.strip_prefix("export KUBECONFIG="))
            .expect("up.sh prints KUBECONFIG");
        PathBuf::from(line)
    })
}

/// Binaries of this workspace (`make test` builds them before the tests run).
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (make test does)",
        path.display()
    );
    path
}

pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub async fn client() -> Client {
    install_crypto();
    let kc = Kubeconfig::read_from(kubeconfig()).expect("read kubeconfig");
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig");
    Client::try_from(config).expect("client")
}

/// A client that acts as `user` (impersonation), e.g. a ServiceAccount.
pub async fn impersonating(user: &str) -> Client {
    install_crypto();
    let kc = Kubeconfig::read_from(kubeconfig()).expect("read kubeconfig");
    let mut config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig");
    config.auth_info.impersonate = Some(user.to_string());
    Client::try_from(config).expect("client")
}

/// Installs (or updates) the CRD generated from the Rust types and waits until it is served.
pub async fn install_crd(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = RagdollCluster::crd();
    let pp = PatchParams::apply("ragdoll-e2e").force();
    api.patch(&crd.name_any(), &pp, &Patch::Apply(&crd))
        .await
        .expect("apply CRD");
    let rdc: Api<RagdollCluster> = Api::all(client.clone());
    eventually(Duration::from_secs(20), "the CRD to be served", || async {
        rdc.list(&ListParams::default().limit(1)).await.is_ok()
    })
    .await;
}

/// A namespace of its own, deleted when dropped.
pub struct TestNamespace {
    pub name: String,
    client: Client,
}

impl TestNamespace {
    pub async fn new(client: &Client, prefix: &str) -> Self {
        let name = format!("{prefix}-{:x}", rand::random::<u32>());
        let api: Api<Namespace> = Api::all(client.clone());
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name}})).expect("namespace");
        api.create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        // Pods need the default ServiceAccount, which the controller-manager creates.
        let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(client.clone(), &name);
        eventually(
            Duration::from_secs(30),
            "the default ServiceAccount",
            || async { sa.get_opt("default").await.ok().flatten().is_some() },
        )
        .await;
        TestNamespace {
            name,
            client: client.clone(),
        }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let (client, name) = (self.client.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let api: Api<Namespace> = Api::all(client);
                api.delete(&name, &DeleteParams::background()).await.ok()
            })
        })
        .join();
    }
}

/// Polls `check` until it holds, or panics naming `what`.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The operator running in this process, watching one namespace.
pub struct InProcessOperator {
    pub shutdown: CancellationToken,
    pub metrics_url: String,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl InProcessOperator {
    pub async fn start(client: &Client, namespace: Option<&str>) -> Self {
        Self::start_as(client.clone(), namespace, None).await
    }

    pub async fn start_as(
        client: Client,
        namespace: Option<&str>,
        lease: Option<(String, String)>,
    ) -> Self {
        let port = free_port();
        let shutdown = CancellationToken::new();
        let opts = Options {
            namespace: namespace.map(String::from),
            metrics_bind: format!("127.0.0.1:{port}").parse().expect("addr"),
            lease,
            identity: format!("e2e-{port}"),
        };
        let task = tokio::spawn(controller::run(client, opts, shutdown.clone()));
        let metrics_url = format!("http://127.0.0.1:{port}/metrics");
        let op = InProcessOperator {
            shutdown,
            metrics_url,
            task,
        };
        op.wait_ready().await;
        op
    }

    async fn wait_ready(&self) {
        let url = self.metrics_url.replace("/metrics", "/readyz");
        eventually(Duration::from_secs(20), "the operator to be ready", || {
            let url = url.clone();
            async move { http_get(&url).await.is_some_and(|(code, _)| code == 200) }
        })
        .await;
    }

    pub async fn metric(&self, name: &str) -> f64 {
        metric_sum(&self.metrics_url, name).await
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub async fn http_get(url: &str) -> Option<(u16, String)> {
    install_crypto();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .ok()?;
    let resp = client.get(url).send().await.ok()?;
    let code = resp.status().as_u16();
    Some((code, resp.text().await.unwrap_or_default()))
}

/// Sum of all samples of a metric family from a Prometheus endpoint.
pub async fn metric_sum(url: &str, name: &str) -> f64 {
    let Some((_, text)) = http_get(url).await else {
        return f64::NAN;
    };
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter(|l| l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Applies YAML documents (server-side apply) into `namespace`.
pub async fn apply_yaml(client: &Client, namespace: &str, yaml: &str) {
    let discovery = kube::discovery::Discovery::new(client.clone())
        .run()
        .await
        .expect("discovery");
    for doc in serde_norway::Deserializer::from_str(yaml) {
        let v: Value = serde::Deserialize::deserialize(doc).expect("yaml");
        if v.is_null() {
            continue;
        }
        let obj: DynamicObject = serde_json::from_value(v.clone()).expect("object");
        let gvk = kube::core::GroupVersionKind::try_from(obj.types.as_ref().expect("types"))
            .expect("gvk");
        let (ar, _) = discovery.resolve_gvk(&gvk).expect("known kind");
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &ar);
        api.patch(
            &obj.name_any(),
            &PatchParams::apply("ragdoll-e2e").force(),
            &Patch::Apply(&v),
        )
        .await
        .expect("apply");
    }
}

pub fn example(name: &str) -> String {
    std::fs::read_to_string(repo_root().join("manifests/examples").join(name)).expect("example")
}

/// What a kubelet would report: running pods become Ready; pods of Jobs succeed, their container
/// terminating with `job_message` (e.g. the migration report).
pub async fn simulate_kubelet(client: &Client, namespace: &str, job_message: &str) -> usize {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut changed = 0;
    let Ok(list) = pods.list(&ListParams::default()).await else {
        return 0;
    };
    for pod in list.items {
        let name = pod.name_any();
        let status = pod.status.clone().unwrap_or_default();
        let is_job = pod.labels().contains_key("batch.kubernetes.io/job-name");
        let containers: Vec<String> = pod
            .spec
            .as_ref()
            .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
            .unwrap_or_default();
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let patch = if is_job {
            if status.phase.as_deref() == Some("Succeeded") {
                continue;
            }
            json!({"status": {
                "phase": "Succeeded",
                "conditions": [{"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": now}],
                "containerStatuses": containers.iter().map(|c| json!({
                    "name": c, "ready": false, "restartCount": 0, "image": "x", "imageID": "", "started": false,
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed", "message": job_message,
                                              "startedAt": now, "finishedAt": now}},
                })).collect::<Vec<_>>(),
            }})
        } else {
            let ready = status
                .conditions
                .as_ref()
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if ready {
                continue;
            }
            json!({"status": {
                "phase": "Running",
                "startTime": now,
                "conditions": [
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                    {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                    {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                    {"type": "Ready", "status": "True", "lastTransitionTime": now},
                ],
                "containerStatuses": containers.iter().map(|c| json!({
                    "name": c, "ready": true, "started": true, "restartCount": 0, "image": "x", "imageID": "",
                    "state": {"running": {"startedAt": now}},
                })).collect::<Vec<_>>(),
            }})
        };
        if pods
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .is_ok()
        {
            changed += 1;
        }
    }
    changed
}

/// Runs the kubelet stand-in every 300 ms until dropped.
pub struct Kubelet {
    stop: CancellationToken,
}

impl Kubelet {
    pub fn start(client: &Client, namespace: &str, job_message: &str) -> Self {
        let stop = CancellationToken::new();
        let (c, ns, msg, s) = (
            client.clone(),
            namespace.to_string(),
            job_message.to_string(),
            stop.clone(),
        );
        tokio::spawn(async move {
            while !s.is_cancelled() {
                simulate_kubelet(&c, &ns, &msg).await;
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(300)) => {}
                    _ = s.cancelled() => return,
                }
            }
        });
        Kubelet { stop }
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub const MIGRATION_REPORT: &str = r#"{"schema_version":2,"embedding_dimensions":384}"#;

pub async fn get_cluster(client: &Client, ns: &str, name: &str) -> RagdollCluster {
    Api::<RagdollCluster>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .expect("get RagdollCluster")
}

pub fn condition(c: &RagdollCluster, type_: &str) -> Option<(String, String, Option<i64>)> {
    c.status
        .as_ref()?
        .conditions
        .iter()
        .find(|x| x.type_ == type_)
        .map(|x| (x.status.clone(), x.reason.clone(), x.observed_generation))
}

pub async fn wait_ready(
    client: &Client,
    ns: &str,
    name: &str,
    timeout: Duration,
) -> RagdollCluster {
    let deadline = Instant::now() + timeout;
    loop {
        let c = get_cluster(client, ns, name).await;
        let generation = c.metadata.generation;
        let ready = condition(&c, "Ready").is_some_and(|(s, _, g)| s == "True" && g == generation);
        if ready && c.status.as_ref().and_then(|s| s.observed_generation) == generation {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "{ns}/{name} not Ready after {timeout:?}: {:#?}",
            c.status
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub type Shared<T> = Arc<T>;

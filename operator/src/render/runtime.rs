//! The runtime: its configuration (a ConfigMap of `RAGDOLL_*` variables), the generated API-keys
//! Secret, the API Deployment with its Service, PodDisruptionBudget and optional autoscaler, one
//! worker Deployment per queue, and the metrics Service and ServiceMonitor.

use std::collections::BTreeMap;

use ragdoll_crds::{Resources, WorkerSpec};
use serde_json::{Value, json};

use super::{
    API_PORT, CONFIG_HASH_ANNOTATION, Child, Ctx, DB_CLIENT_LABEL, Kind, QUEUE_LABEL, RUNTIME_UID,
    WORKER_METRICS_PORT, container_security, pod_security, resources, secret_env,
};

/// The runtime's environment, from the spec (secrets are referenced separately).
pub fn config_data(ctx: &Ctx) -> BTreeMap<String, String> {
    let s = &ctx.cluster.spec;
    let mut d = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        d.insert(k.to_string(), v);
    };
    set("RAGDOLL_LOG_FORMAT", "json".into());
    set(
        "RAGDOLL_EMBEDDING_PROVIDER",
        s.embeddings.provider.as_str().into(),
    );
    set(
        "RAGDOLL_EMBEDDING_DIMENSIONS",
        s.embeddings.dimensions.to_string(),
    );
    if let Some(m) = &s.embeddings.model {
        set("RAGDOLL_EMBEDDING_MODEL", m.clone());
    }
    if let Some(u) = &s.embeddings.base_url {
        set("RAGDOLL_EMBEDDING_BASE_URL", u.clone());
    }
    set("RAGDOLL_LLM_PROVIDER", s.llm.provider.as_str().into());
    let llm_settings = [
        ("RAGDOLL_LLM_BASE_URL", &s.llm.base_url),
        ("RAGDOLL_SUMMARY_MODEL", &s.llm.summary_model),
        ("RAGDOLL_KEYWORDS_MODEL", &s.llm.keywords_model),
        ("RAGDOLL_VISION_MODEL", &s.llm.vision_model),
        ("RAGDOLL_TRANSCRIPTION_MODEL", &s.llm.transcription_model),
    ];
    for (key, value) in llm_settings {
        if let Some(v) = value {
            set(key, v.clone());
        }
    }
    set("RAGDOLL_CHUNK_SIZE", s.ingestion.chunk_size.to_string());
    set(
        "RAGDOLL_CHUNK_OVERLAP",
        s.ingestion.chunk_overlap.to_string(),
    );
    if let Some(bytes) = s.ingestion.max_file_size.to_f64() {
        set("RAGDOLL_MAX_FILE_SIZE", format!("{}", bytes.round() as u64));
    }
    if !s.ingestion.allowed_file_types.is_empty() {
        let types: Vec<String> = s
            .ingestion
            .allowed_file_types
            .iter()
            .map(|t| {
                serde_json::to_value(t)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default()
            })
            .collect();
        set("RAGDOLL_ALLOWED_FILE_TYPES", types.join(","));
    }
    set(
        "RAGDOLL_SIMILARITY_THRESHOLD",
        s.search.similarity_threshold.to_string(),
    );
    set(
        "RAGDOLL_SEARCH_MAX_RESULTS",
        s.search.max_results.to_string(),
    );
    set(
        "RAGDOLL_SEARCH_CACHE_TTL_SECS",
        s.search.cache_ttl_seconds.to_string(),
    );
    set("RAGDOLL_HNSW_M", s.search.index.m.to_string());
    set(
        "RAGDOLL_HNSW_EF_CONSTRUCTION",
        s.search.index.ef_construction.to_string(),
    );
    set(
        "RAGDOLL_HNSW_EF_SEARCH",
        s.search.index.ef_search.to_string(),
    );
    let ssl_mode = s.database.external.as_ref().and_then(|e| e.ssl_mode);
    if let Some(v) = ssl_mode
        .and_then(|m| serde_json::to_value(m).ok())
        .and_then(|v| v.as_str().map(String::from))
    {
        set("RAGDOLL_DATABASE_SSL_MODE", v);
    }
    d
}

pub fn config_map(ctx: &Ctx) -> Child {
    Child::new(
        ctx,
        Kind::ConfigMap,
        ctx.child_name("runtime-config"),
        "config",
        json!({"data": config_data(ctx)}),
    )
}

/// The generated API-keys Secret. Applied only when it does not exist yet.
pub fn api_keys_secret(ctx: &Ctx, key: &str) -> Child {
    Child::new(
        ctx,
        Kind::Secret,
        ctx.api_keys.name.clone(),
        "api",
        json!({"type": "Opaque", "stringData": {ctx.api_keys.key.clone(): key}}),
    )
}

/// Environment every runtime container gets: the database URL and the provider keys.
pub fn env(ctx: &Ctx) -> Vec<Value> {
    let spec = &ctx.cluster.spec;
    let mut env = vec![secret_env("DATABASE_URL", &ctx.database_url())];
    if let Some(k) = &spec.embeddings.api_key_secret_ref {
        env.push(secret_env("RAGDOLL_EMBEDDING_API_KEY", k));
    }
    if let Some(k) = &spec.llm.api_key_secret_ref {
        env.push(secret_env("RAGDOLL_LLM_API_KEY", k));
    }
    env
}

pub fn env_from(ctx: &Ctx) -> Value {
    json!([{"configMapRef": {"name": ctx.child_name("runtime-config")}}])
}

fn pod_labels(ctx: &Ctx, component: &str) -> BTreeMap<String, String> {
    let mut l = ctx.labels(component);
    l.insert(DB_CLIENT_LABEL.into(), "true".into());
    l
}

/// A runtime container running `args`.
pub fn container(ctx: &Ctx, name: &str, args: Value, env: Vec<Value>, res: &Resources) -> Value {
    json!({
        "name": name,
        "image": ctx.cluster.spec.runtime.image,
        "imagePullPolicy": ctx.cluster.spec.runtime.image_pull_policy,
        "args": args,
        "env": env,
        "envFrom": env_from(ctx),
        "resources": resources(res),
        "securityContext": container_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    })
}

fn pod_spec(ctx: &Ctx, container: Value, grace: i64) -> Value {
    json!({
        "securityContext": pod_security(RUNTIME_UID),
        "imagePullSecrets": ctx.image_pull_secrets(),
        "terminationGracePeriodSeconds": grace,
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    })
}

fn probes(port: &str) -> Value {
    json!({
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": port}, "periodSeconds": 5, "timeoutSeconds": 3},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": port}, "initialDelaySeconds": 10,
                          "periodSeconds": 10, "timeoutSeconds": 3, "failureThreshold": 6},
    })
}

fn merge_into(target: &mut Value, extra: Value) {
    if let (Some(t), Value::Object(e)) = (target.as_object_mut(), extra) {
        t.extend(e);
    }
}

fn template_metadata(ctx: &Ctx, component: &str, metrics_port: i32) -> Value {
    json!({
        "labels": pod_labels(ctx, component),
        "annotations": {
            CONFIG_HASH_ANNOTATION: ctx.config_hash,
            "prometheus.io/scrape": "true",
            "prometheus.io/port": metrics_port.to_string(),
            "prometheus.io/path": "/metrics",
        },
    })
}

pub fn api_deployment(ctx: &Ctx) -> Child {
    let api = &ctx.cluster.spec.api;
    let mut env = env(ctx);
    env.push(secret_env("RAGDOLL_API_KEYS", &ctx.api_keys));
    let mut c = container(
        ctx,
        "api",
        json!(["serve", "--bind", format!("0.0.0.0:{API_PORT}")]),
        env,
        &api.resources,
    );
    merge_into(&mut c, probes("http"));
    c["ports"] = json!([{"name": "http", "containerPort": API_PORT, "protocol": "TCP"}]);
    let mut pod = pod_spec(ctx, c, 30);
    pod["topologySpreadConstraints"] = json!([{
        "maxSkew": 1,
        "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": ctx.selector("api")},
    }]);
    let mut spec = json!({
        "selector": {"matchLabels": ctx.selector("api")},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "template": {"metadata": template_metadata(ctx, "api", API_PORT), "spec": pod},
    });
    // With an autoscaler the replica count is the HPA's to set.
    if api.autoscaling.is_none() {
        spec["replicas"] = json!(api.replicas);
    }
    Child::new(
        ctx,
        Kind::Deployment,
        ctx.child_name("api"),
        "api",
        json!({"spec": spec}),
    )
}

pub fn api_service(ctx: &Ctx) -> Child {
    let svc = &ctx.cluster.spec.api.service;
    Child::new(
        ctx,
        Kind::Service,
        ctx.child_name("api"),
        "api",
        json!({
            "metadata": {"labels": {"ragdoll.dev/metrics": "true"}},
            "spec": {
                "type": svc.type_,
                "selector": ctx.selector("api"),
                "ports": [{"name": "http", "port": svc.port, "targetPort": "http", "protocol": "TCP"}],
            }
        }),
    )
}

pub fn api_pdb(ctx: &Ctx) -> Option<Child> {
    ctx.cluster.spec.api.pdb.then(|| {
        Child::new(
            ctx,
            Kind::PodDisruptionBudget,
            ctx.child_name("api"),
            "api",
            json!({"spec": {"maxUnavailable": 1, "selector": {"matchLabels": ctx.selector("api")}}}),
        )
    })
}

pub fn api_hpa(ctx: &Ctx) -> Option<Child> {
    let a = ctx.cluster.spec.api.autoscaling.as_ref()?;
    Some(Child::new(
        ctx,
        Kind::HorizontalPodAutoscaler,
        ctx.child_name("api"),
        "api",
        json!({"spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": ctx.child_name("api")},
            "minReplicas": a.min_replicas,
            "maxReplicas": a.max_replicas,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": a.target_cpu_utilization}}}],
        }}),
    ))
}

fn default_worker_resources() -> Resources {
    Resources::new(
        &[("cpu", "250m"), ("memory", "256Mi")],
        &[("memory", "1Gi")],
    )
}

pub fn worker_name(ctx: &Ctx, w: &WorkerSpec) -> String {
    ctx.child_name(&format!("worker-{}", w.queue.as_str()))
}

pub fn worker_deployment(ctx: &Ctx, w: &WorkerSpec) -> Child {
    let q = w.queue.as_str();
    let concurrency = w
        .concurrency
        .unwrap_or_else(|| w.queue.default_concurrency());
    let args = json!([
        "worker",
        "--queues",
        q,
        "--concurrency",
        concurrency.to_string(),
        "--metrics-bind",
        format!("0.0.0.0:{WORKER_METRICS_PORT}"),
    ]);
    let res = w.resources.clone().unwrap_or_else(default_worker_resources);
    let mut c = container(ctx, "worker", args, env(ctx), &res);
    merge_into(&mut c, probes("metrics"));
    c["ports"] =
        json!([{"name": "metrics", "containerPort": WORKER_METRICS_PORT, "protocol": "TCP"}]);
    let mut selector = ctx.selector("worker");
    selector.insert(QUEUE_LABEL.into(), q.into());
    let mut meta = template_metadata(ctx, "worker", WORKER_METRICS_PORT);
    meta["labels"][QUEUE_LABEL] = json!(q);
    let name = worker_name(ctx, w);
    let mut child = Child::new(
        ctx,
        Kind::Deployment,
        name,
        "worker",
        json!({
            "metadata": {"labels": {QUEUE_LABEL: q}},
            "spec": {
                "replicas": w.replicas,
                "selector": {"matchLabels": selector},
                "template": {"metadata": meta, "spec": pod_spec(ctx, c, 30)},
            }
        }),
    );
    child.object["metadata"]["labels"][QUEUE_LABEL] = json!(q);
    child
}

/// A Service over the workers' metrics ports, for the ServiceMonitor.
pub fn worker_metrics_service(ctx: &Ctx) -> Child {
    Child::new(
        ctx,
        Kind::Service,
        ctx.child_name("workers"),
        "worker",
        json!({
            "metadata": {"labels": {"ragdoll.dev/metrics": "true"}},
            "spec": {
                "clusterIP": "None",
                "selector": ctx.selector("worker"),
                "ports": [{"name": "metrics", "port": WORKER_METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"}],
            }
        }),
    )
}

pub fn service_monitor(ctx: &Ctx) -> Child {
    Child::new(
        ctx,
        Kind::ServiceMonitor,
        ctx.child_name("metrics"),
        "monitoring",
        json!({"spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/instance": ctx.name, "ragdoll.dev/metrics": "true"}},
            "endpoints": [
                {"port": "http", "path": "/metrics", "interval": "30s"},
                {"port": "metrics", "path": "/metrics", "interval": "30s"},
            ],
        }}),
    )
}

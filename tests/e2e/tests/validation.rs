//! Invalid RagdollCluster specs are rejected by the API server itself (OpenAPI schema and CEL
//! rules of the generated CRD), each with a message a user can act on.

use kube::api::{Api, Patch, PatchParams, PostParams};
use ragdoll_crds::RagdollCluster;
use ragdoll_e2e::*;
use serde_json::{Value, json};

fn cluster(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "ragdoll.dev/v1alpha1", "kind": "RagdollCluster", "metadata": {"name": name}, "spec": spec})
}

/// Server-side apply with strict field validation, like `kubectl apply --server-side`.
async fn create(api: &Api<RagdollCluster>, body: Value) -> Result<(), String> {
    let name = body["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut pp = PatchParams::apply("ragdoll-e2e");
    pp.field_validation = Some(kube::api::ValidationDirective::Strict);
    match api.patch(&name, &pp, &Patch::Apply(&body)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) => Err(e.message),
        Err(e) => Err(e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_specs_are_rejected_with_readable_messages() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, "e2e-validation").await;
    let api: Api<RagdollCluster> = Api::namespaced(client.clone(), &ns.name);
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "overlap",
            json!({"ingestion": {"chunkSize": 500, "chunkOverlap": 500}}),
            "ingestion.chunkOverlap must be smaller than ingestion.chunkSize",
        ),
        (
            "replicas",
            json!({"api": {"replicas": -1}}),
            "should be greater than or equal to 0",
        ),
        (
            "worker-replicas",
            json!({"workers": [{"queue": "embeddings", "replicas": -2}]}),
            "should be greater than or equal to 0",
        ),
        (
            "cron",
            json!({"maintenance": {"schedule": "every night"}}),
            "maintenance.schedule must be a cron schedule",
        ),
        (
            "backup-cron",
            json!({"backup": {"schedule": "0 2 * *"}}),
            "backup.schedule must be a cron schedule",
        ),
        (
            "reindex",
            json!({"maintenance": {"reindex": "Sometimes"}}),
            "maintenance.reindex must be Never, Weekly or a cron schedule",
        ),
        (
            "both-db",
            json!({"database": {"managed": {}, "external": {"secretRef": {"name": "x", "key": "url"}}}}),
            "database: set exactly one of managed or external",
        ),
        (
            "no-db",
            json!({"database": {}}),
            "database: set exactly one of managed or external",
        ),
        (
            "queue",
            json!({"workers": [{"queue": "sidekiq"}]}),
            "Unsupported value: \"sidekiq\"",
        ),
        (
            "dup-queue",
            json!({"workers": [{"queue": "embeddings"}, {"queue": "embeddings"}]}),
            "duplicate entries for key [queue=\"embeddings\"]",
        ),
        (
            "dims-low",
            json!({"embeddings": {"provider": "hash", "dimensions": 0}}),
            "should be greater than or equal to 1",
        ),
        (
            "dims-high",
            json!({"embeddings": {"provider": "hash", "dimensions": 20000}}),
            "should be less than or equal to 16000",
        ),
        (
            "provider",
            json!({"embeddings": {"provider": "magic"}}),
            "Unsupported value: \"magic\"",
        ),
        (
            "local-dims",
            json!({"embeddings": {"dimensions": 1536}}),
            "embeddings.provider local (all-MiniLM-L6-v2) makes 384-dimensional vectors",
        ),
        (
            "vision-without-llm",
            json!({"llm": {"visionModel": "gpt-4o-mini"}}),
            "llm.visionModel, llm.transcriptionModel and llm.apiKeySecretRef need llm.provider: openai",
        ),
        (
            "llm-provider",
            json!({"llm": {"provider": "sidekiq-gpt"}}),
            "Unsupported value: \"sidekiq-gpt\"",
        ),
        (
            "threshold",
            json!({"search": {"similarityThreshold": 1.5}}),
            "should be less than or equal to 1",
        ),
        (
            "hpa",
            json!({"api": {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}}),
            "api.autoscaling.minReplicas must not exceed maxReplicas",
        ),
        (
            "param",
            json!({"database": {"managed": {"parameters": {"Work Mem": "1"}}}}),
            "keys must be PostgreSQL setting names",
        ),
        (
            "unknown",
            json!({"colour": "red"}),
            ".spec.colour: field not declared in schema",
        ),
        (
            "quantity",
            json!({"api": {"resources": {"limits": {"memory": "lots"}}}}),
            "should match",
        ),
    ];
    for (name, spec, needle) in cases {
        let err = create(&api, cluster(&format!("bad-{name}"), spec.clone()))
            .await
            .expect_err(name);
        assert!(
            err.contains(needle),
            "{name}: expected `{needle}` in:\n{err}"
        );
    }
    // The same duplicate through a plain create (kubectl create) meets the CEL rule's message.
    let dup: RagdollCluster = serde_json::from_value(cluster(
        "bad-dup-post",
        json!({"workers": [{"queue": "default"}, {"queue": "default"}]}),
    ))
    .unwrap();
    let err = match api.create(&PostParams::default(), &dup).await {
        Err(kube::Error::Api(e)) => e.message,
        other => panic!("duplicate queues accepted: {other:?}"),
    };
    assert!(
        err.contains("workers: each queue may appear only once") || err.contains("Duplicate value"),
        "{err}"
    );
    // A valid cluster is accepted; its dimensions are immutable afterwards.
    create(
        &api,
        cluster(
            "good",
            json!({"embeddings": {"provider": "openai", "dimensions": 768}}),
        ),
    )
    .await
    .expect("valid spec");
    let err = create(
        &api,
        cluster(
            "good",
            json!({"embeddings": {"provider": "openai", "dimensions": 1024}}),
        ),
    )
    .await
    .expect_err("immutable");
    assert!(err.contains("embeddings.dimensions is immutable"), "{err}");
    // Other fields stay editable.
    create(
        &api,
        cluster(
            "good",
            json!({"embeddings": {"provider": "openai", "dimensions": 768}, "api": {"replicas": 4}}),
        ),
    )
    .await
    .expect("editable");
    // Defaults are filled in by the API server.
    let stored = api.get("good").await.unwrap();
    assert_eq!(stored.spec.ingestion.chunk_size, 1000);
    assert_eq!(stored.spec.workers.len(), 4);
    assert!(stored.spec.database.managed.is_some());
}

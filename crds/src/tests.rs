//! Schema generation tests and the staleness check of the checked-in CRD copies.

use super::*;
use serde_json::{Value, json};

fn schema() -> Value {
    let crd = serde_json::to_value(RagdollCluster::crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn spec_props() -> Value {
    schema()["properties"]["spec"]["properties"].clone()
}

fn rules(v: &Value) -> Vec<String> {
    v["x-kubernetes-validations"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| r["rule"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn identity_and_printer_columns() {
    let crd = serde_json::to_value(RagdollCluster::crd()).unwrap();
    assert_eq!(crd["metadata"]["name"], "ragdollclusters.ragdoll.dev");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert_eq!(crd["spec"]["names"]["shortNames"], json!(["rdc"]));
    let v = &crd["spec"]["versions"][0];
    assert_eq!(v["name"], "v1alpha1");
    assert!(v["subresources"]["status"].is_object());
    let cols: Vec<&str> = v["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(cols, ["Ready", "Phase", "API", "Workers", "Age"]);
}

#[test]
fn defaults_are_in_the_schema() {
    let p = spec_props();
    assert_eq!(p["ingestion"]["properties"]["chunkSize"]["default"], 1000);
    assert_eq!(p["ingestion"]["properties"]["chunkOverlap"]["default"], 200);
    assert_eq!(p["api"]["properties"]["replicas"]["default"], 2);
    assert_eq!(
        p["api"]["properties"]["service"]["properties"]["port"]["default"],
        8080
    );
    assert_eq!(
        p["search"]["properties"]["similarityThreshold"]["default"],
        0.7
    );
    assert_eq!(p["search"]["properties"]["maxResults"]["default"], 50);
    assert_eq!(p["backup"]["properties"]["retentionDays"]["default"], 30);
    assert_eq!(
        p["maintenance"]["properties"]["vacuumAnalyze"]["default"],
        true
    );
    assert_eq!(p["networkPolicy"]["default"], true);
    let workers = p["workers"]["default"].as_array().unwrap();
    let queues: Vec<&str> = workers
        .iter()
        .map(|w| w["queue"].as_str().unwrap())
        .collect();
    assert_eq!(queues, ["embeddings", "processing", "analysis", "default"]);
    assert!(p["database"]["default"]["managed"].is_object());
    // Descriptions come from the doc comments (kubectl explain).
    assert!(
        p["embeddings"]["properties"]["dimensions"]["description"]
            .as_str()
            .unwrap()
            .contains("Immutable")
    );
}

#[test]
fn validation_rules_are_present() {
    let p = spec_props();
    assert!(rules(&p["ingestion"]).contains(&"self.chunkOverlap < self.chunkSize".to_string()));
    assert!(rules(&p["database"]).contains(&"has(self.managed) != has(self.external)".to_string()));
    assert!(
        rules(&p["embeddings"]["properties"]["dimensions"])
            .contains(&"self == oldSelf".to_string())
    );
    assert!(rules(&p["workers"])[0].contains("exists_one"));
    assert_eq!(p["workers"]["x-kubernetes-list-type"], "map");
    assert_eq!(p["workers"]["x-kubernetes-list-map-keys"], json!(["queue"]));
    assert!(rules(&p["maintenance"]["properties"]["schedule"])[0].contains("matches"));
    assert!(rules(&p["backup"]["properties"]["schedule"])[0].contains("matches"));
    assert_eq!(
        p["api"]["properties"]["replicas"]["minimum"].as_f64(),
        Some(0.0)
    );
    assert_eq!(
        p["embeddings"]["properties"]["dimensions"]["minimum"].as_f64(),
        Some(1.0)
    );
    assert_eq!(
        p["embeddings"]["properties"]["dimensions"]["maximum"].as_f64(),
        Some(16000.0)
    );
    let queue = &p["workers"]["items"]["properties"]["queue"];
    assert_eq!(
        queue["enum"],
        json!(["processing", "embeddings", "analysis", "default"])
    );
    // Every rule carries a message for the user.
    let all = serde_json::to_string(&schema()["properties"]["spec"]).unwrap();
    let rule_count = all.matches("\"rule\"").count();
    assert_eq!(
        rule_count,
        all.matches("\"message\"").count(),
        "every CEL rule has a message"
    );
}

#[test]
fn the_cron_pattern_accepts_and_rejects_what_it_should() {
    let re = |s: &str| {
        // A tiny check of the pattern with the same semantics as CEL's RE2 `matches`.
        let fields: Vec<&str> = s.split_whitespace().collect();
        s.starts_with('@')
            && [
                "@yearly",
                "@annually",
                "@monthly",
                "@weekly",
                "@daily",
                "@midnight",
                "@hourly",
            ]
            .contains(&s)
            || (fields.len() == 5
                && fields.iter().all(|f| {
                    f.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "*/,?-".contains(c))
                }))
    };
    for ok in ["0 3 * * *", "*/15 * * * MON-FRI", "@daily", "0 0 1,15 * ?"] {
        assert!(re(ok), "{ok}");
    }
    for bad in ["every day", "0 3 * *", "@sometimes", "0 3 * * * *"] {
        assert!(!re(bad), "{bad}");
    }
    assert!(CRON.contains("{4}"), "five fields");
}

#[test]
fn an_empty_spec_means_all_defaults() {
    let spec: RagdollClusterSpec = serde_json::from_value(json!({})).unwrap();
    assert_eq!(spec.workers.len(), 4);
    assert!(spec.database.managed.is_some() && spec.network_policy && !spec.paused);
    assert_eq!(spec.embeddings.dimensions, 384);
    // Integer quantities as users write them.
    let spec: RagdollClusterSpec =
        serde_json::from_value(json!({"api": {"resources": {"requests": {"cpu": 2}}}})).unwrap();
    assert_eq!(spec.api.resources.requests["cpu"].0, "2");
}

/// The checked-in CRD copies must equal the generated CRD. `make generate` rewrites them
/// (RAGDOLL_UPDATE_GENERATED=1).
#[test]
fn checked_in_crd_copies_are_current() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let want = crd_yaml();
    let update = std::env::var("RAGDOLL_UPDATE_GENERATED").is_ok();
    for rel in [
        "crds/ragdollclusters.ragdoll.dev.yaml",
        "charts/ragdoll-operator/crds/ragdollclusters.ragdoll.dev.yaml",
    ] {
        let path = root.join(rel);
        if update {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &want).unwrap();
            continue;
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(have == want, "{rel} is stale: run `make generate`");
    }
}

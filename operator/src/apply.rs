//! Writing children: server-side apply with one field manager (forced), skipped when the live
//! object already carries the desired hash and nobody changed it since this process applied it
//! (generation, or resourceVersion for kinds without one). Steady state therefore issues no
//! writes, an operator restart none to unchanged objects, and drift (edits, deletions) is undone.
//! Every write is counted in `ragdoll_operator_api_writes_total`.

use std::collections::HashMap;
use std::sync::Mutex;

use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams, ValidationDirective};
use kube::{Api, Client, ResourceExt};

use crate::metrics::Metrics;
use crate::render::{Child, HASH_ANNOTATION, Kind, MANAGER};

/// What this process last wrote for an object.
#[derive(Clone, Debug, PartialEq)]
struct Applied {
    uid: String,
    hash: String,
    generation: Option<i64>,
    resource_version: Option<String>,
}

pub struct Applier {
    client: Client,
    applied: Mutex<HashMap<(Kind, String, String), Applied>>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Unchanged,
    Applied,
}

impl Applier {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            applied: Mutex::new(HashMap::new()),
        }
    }

    fn api(&self, kind: Kind, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), namespace, &kind.api_resource())
    }

    fn record(&self, kind: Kind, ns: &str, name: &str, obj: &DynamicObject, hash: &str) {
        if let Ok(mut map) = self.applied.lock() {
            map.insert(
                (kind, ns.to_string(), name.to_string()),
                Applied {
                    uid: obj.uid().unwrap_or_default(),
                    hash: hash.to_string(),
                    generation: obj.metadata.generation,
                    resource_version: obj.resource_version(),
                },
            );
        }
    }

    /// True when `live` is what we would apply and has not been touched since.
    fn unchanged(&self, child: &Child, ns: &str, live: &DynamicObject) -> bool {
        if live.annotations().get(HASH_ANNOTATION).map(String::as_str) != Some(child.hash()) {
            return false;
        }
        let key = (child.kind, ns.to_string(), child.name.clone());
        let Ok(map) = self.applied.lock() else {
            return false;
        };
        match map.get(&key) {
            // A fresh process trusts the hash: an operator restart writes nothing.
            None => true,
            Some(a) if a.uid != live.uid().unwrap_or_default() => false,
            Some(a) if child.kind.has_generation() => a.generation == live.metadata.generation,
            Some(a) => a.resource_version == live.resource_version(),
        }
    }

    /// Applies `child` unless `live` shows it is already in place.
    pub async fn apply(
        &self,
        metrics: &Metrics,
        ns: &str,
        child: &Child,
        live: Option<&DynamicObject>,
    ) -> Result<Outcome, kube::Error> {
        if live.is_some_and(|l| self.unchanged(child, ns, l)) {
            if let Some(l) = live {
                // Remember the live state so later drift is noticed.
                let key = (child.kind, ns.to_string(), child.name.clone());
                let known = self
                    .applied
                    .lock()
                    .map(|m| m.contains_key(&key))
                    .unwrap_or(true);
                if !known {
                    self.record(child.kind, ns, &child.name, l, child.hash());
                }
            }
            return Ok(Outcome::Unchanged);
        }
        let mut params = PatchParams::apply(MANAGER).force();
        params.field_validation = Some(ValidationDirective::Strict);
        let obj = self
            .api(child.kind, ns)
            .patch(&child.name, &params, &Patch::Apply(&child.object))
            .await?;
        metrics.write(child.kind, "apply");
        tracing::info!(kind = ?child.kind, name = %child.name, "applied");
        self.record(child.kind, ns, &child.name, &obj, child.hash());
        Ok(Outcome::Applied)
    }

    /// Creates `child` only if it does not exist (generated Secrets: never overwritten).
    pub async fn create_if_missing(
        &self,
        metrics: &Metrics,
        ns: &str,
        child: &Child,
        exists: bool,
    ) -> Result<bool, kube::Error> {
        if exists {
            return Ok(false);
        }
        let obj: DynamicObject =
            serde_json::from_value(child.object.clone()).map_err(kube::Error::SerdeError)?;
        match self
            .api(child.kind, ns)
            .create(
                &PostParams {
                    field_manager: Some(MANAGER.into()),
                    ..Default::default()
                },
                &obj,
            )
            .await
        {
            Ok(_) => {
                metrics.write(child.kind, "create");
                tracing::info!(kind = ?child.kind, name = %child.name, "created");
                Ok(true)
            }
            // Someone (another reconcile) created it first: it exists, which is all we want.
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub async fn delete(
        &self,
        metrics: &Metrics,
        ns: &str,
        kind: Kind,
        name: &str,
    ) -> Result<(), kube::Error> {
        let dp = DeleteParams::background();
        match self.api(kind, ns).delete(name, &dp).await {
            Ok(_) => {
                metrics.write(kind, "delete");
                tracing::info!(kind = ?kind, name, "deleted orphan");
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
        if let Ok(mut map) = self.applied.lock() {
            map.remove(&(kind, ns.to_string(), name.to_string()));
        }
        Ok(())
    }
}

//! ragdoll-operator: reconciles `RagdollCluster` resources into a running Ragdoll.
//!
//! `render` builds the desired children (pure); `reconcile` observes, applies, and reports status;
//! `controller` wires watches, backoff and leader election; `metrics` serves probes and metrics.

pub mod render;

//! ragdoll-operator: reconciles `RagdollCluster` resources into a running Ragdoll.
//!
//! `render` builds the desired children (pure) and `status` computes the reported state (pure);
//! `reconcile` observes, applies through `apply` and writes status; `controller` wires watches,
//! backoff and leader election (`leader`); `metrics` serves probes and metrics.

pub mod apply;
pub mod controller;
pub mod leader;
pub mod metrics;
pub mod reconcile;
pub mod render;
pub mod status;

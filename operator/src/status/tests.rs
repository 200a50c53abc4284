//! Status computation from child states.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, StatefulSet, StatefulSetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use ragdoll_crds::{Endpoints, LastBackup, RagdollCluster, RagdollClusterSpec};

use super::*;

fn t(secs: i64) -> Time {
    Time(Timestamp::from_second(1_800_000_000 + secs).unwrap())
}

fn cluster(generation: i64) -> RagdollCluster {
    let mut c = RagdollCluster::new("rag", RagdollClusterSpec::default());
    c.metadata.generation = Some(generation);
    c
}

fn deployment(ready: i32, generation: i64) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            generation: Some(generation),
            ..Default::default()
        },
        status: Some(DeploymentStatus {
            ready_replicas: Some(ready),
            updated_replicas: Some(ready),
            observed_generation: Some(generation),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn statefulset(ready: i32) -> StatefulSet {
    StatefulSet {
        status: Some(StatefulSetStatus {
            ready_replicas: Some(ready),
            replicas: 1,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn all_ready() -> Observed {
    Observed {
        managed_database: true,
        database: Some(statefulset(1)),
        api: Some(deployment(2, 1)),
        api_desired: 2,
        workers: ["embeddings", "processing", "analysis", "default"]
            .iter()
            .map(|q| (q.to_string(), Some(deployment(1, 1)), 1))
            .collect(),
        migration: Some(Migration::Succeeded {
            schema_version: Some(2),
        }),
        last_backup: None,
        endpoints: Endpoints {
            api: Some("http://rag-api.ns.svc:8080".into()),
            database: Some("rag-postgres.ns.svc:5432".into()),
        },
        problems: vec![],
    }
}

fn condition<'a>(s: &'a RagdollClusterStatus, t: &str) -> &'a Condition {
    s.conditions
        .iter()
        .find(|c| c.type_ == t)
        .unwrap_or_else(|| panic!("no {t} condition"))
}

#[test]
fn a_new_cluster_is_pending_and_progressing() {
    let s = compute(
        &cluster(1),
        &Observed {
            managed_database: true,
            ..Default::default()
        },
        t(0),
    );
    assert_eq!(s.phase.as_deref(), Some("Pending"));
    assert_eq!(condition(&s, "Ready").status, "False");
    assert_eq!(condition(&s, "Progressing").status, "True");
    assert_eq!(condition(&s, "Progressing").reason, "Migrating");
    assert_eq!(
        condition(&s, "ApiReady").message,
        "waiting for the migration before rolling out"
    );
    assert_eq!(s.observed_generation, Some(1));
}

#[test]
fn everything_ready() {
    let s = compute(&cluster(3), &all_ready(), t(0));
    assert_eq!(s.phase.as_deref(), Some("Ready"));
    for c in [
        "Ready",
        "DatabaseReady",
        "MigrationsComplete",
        "ApiReady",
        "WorkersReady",
    ] {
        assert_eq!(condition(&s, c).status, "True", "{c}");
        assert_eq!(condition(&s, c).observed_generation, Some(3));
    }
    assert_eq!(condition(&s, "Progressing").status, "False");
    assert_eq!(condition(&s, "Degraded").status, "False");
    assert_eq!(condition(&s, "LastBackupSucceeded").status, "Unknown");
    assert_eq!(s.workers_ready.as_deref(), Some("4/4"));
    assert_eq!(s.schema_version, Some(2));
    assert_eq!(
        s.endpoints.as_ref().unwrap().api.as_deref(),
        Some("http://rag-api.ns.svc:8080")
    );
}

#[test]
fn unchanged_observations_give_an_identical_status() {
    let mut c = cluster(1);
    let first = compute(&c, &all_ready(), t(0));
    c.status = Some(first.clone());
    let second = compute(&c, &all_ready(), t(100));
    assert_eq!(
        first, second,
        "lastTransitionTime only moves on a transition"
    );
    // A transition stamps the new time on that condition only.
    let mut o = all_ready();
    o.api = Some(deployment(1, 1));
    let third = compute(&c, &o, t(200));
    assert_eq!(condition(&third, "ApiReady").last_transition_time, t(200));
    assert_eq!(
        condition(&third, "DatabaseReady").last_transition_time,
        t(0)
    );
    assert_eq!(third.phase.as_deref(), Some("Provisioning"));
}

#[test]
fn a_rollout_in_progress_is_not_ready() {
    let mut o = all_ready();
    let mut d = deployment(2, 2);
    d.status.as_mut().unwrap().observed_generation = Some(1); // controller has not seen the new spec
    o.api = Some(d);
    let s = compute(&cluster(1), &o, t(0));
    assert_eq!(condition(&s, "ApiReady").status, "False");
    assert_eq!(condition(&s, "Progressing").reason, "RollingOut");
}

#[test]
fn failures_degrade() {
    let mut o = all_ready();
    o.migration = Some(Migration::Failed {
        message: "Job has reached the specified backoff limit".into(),
    });
    let s = compute(&cluster(1), &o, t(0));
    assert_eq!(s.phase.as_deref(), Some("Degraded"));
    assert_eq!(condition(&s, "Degraded").status, "True");
    assert!(
        condition(&s, "Degraded")
            .message
            .contains("the migration failed")
    );
    assert_eq!(
        condition(&s, "MigrationsComplete").reason,
        "MigrationFailed"
    );
    assert_eq!(condition(&s, "Ready").reason, "Degraded");
    assert_eq!(condition(&s, "Progressing").status, "False");

    let mut o = all_ready();
    o.problems.push("secret openai not found".into());
    let s = compute(&cluster(1), &o, t(0));
    assert!(
        condition(&s, "Degraded")
            .message
            .contains("secret openai not found")
    );
}

#[test]
fn backups_are_reported_without_affecting_readiness() {
    let mut o = all_ready();
    o.last_backup = Some(LastBackup {
        time: Some(t(5)),
        job: Some("rag-backup-1".into()),
        result: "Failed".into(),
    });
    let s = compute(&cluster(1), &o, t(0));
    assert_eq!(condition(&s, "LastBackupSucceeded").status, "False");
    assert_eq!(condition(&s, "Ready").status, "True");
    assert_eq!(
        s.last_backup.as_ref().unwrap().job.as_deref(),
        Some("rag-backup-1")
    );
}

#[test]
fn external_databases_are_known_through_the_migration() {
    let mut o = all_ready();
    o.managed_database = false;
    o.database = None;
    o.migration = Some(Migration::Running);
    let s = compute(&cluster(1), &o, t(0));
    assert_eq!(condition(&s, "DatabaseReady").status, "Unknown");
    o.migration = Some(Migration::Succeeded {
        schema_version: Some(2),
    });
    let s = compute(&cluster(1), &o, t(0));
    assert_eq!(condition(&s, "DatabaseReady").status, "True");
    assert_eq!(s.phase.as_deref(), Some("Ready"));
}

#[test]
fn paused_keeps_the_rest() {
    let mut c = cluster(4);
    c.status = Some(compute(&c, &all_ready(), t(0)));
    let s = paused(&c, t(10));
    assert_eq!(s.phase.as_deref(), Some("Paused"));
    assert_eq!(condition(&s, "Progressing").reason, "Paused");
    assert_eq!(condition(&s, "Ready").status, "True");
    assert_eq!(s.observed_generation, Some(4));
}

#[test]
fn reconcile_errors_are_reported() {
    let mut c = cluster(2);
    c.status = Some(compute(&c, &all_ready(), t(0)));
    let s = failed(&c, "reconciliation failed: secrets is forbidden", t(5));
    assert_eq!(s.phase.as_deref(), Some("Degraded"));
    assert_eq!(condition(&s, "Degraded").status, "True");
    assert_eq!(condition(&s, "Ready").reason, "ReconcileError");
    assert!(condition(&s, "Ready").message.contains("forbidden"));
    assert_eq!(
        condition(&s, "DatabaseReady").status,
        "True",
        "what was known stays"
    );
    // The same failure again changes nothing (no status write loop).
    c.status = Some(s.clone());
    assert_eq!(
        failed(&c, "reconciliation failed: secrets is forbidden", t(9)),
        s
    );
}

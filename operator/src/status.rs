//! Status from observation: conditions (`Ready`, `Progressing`, `Degraded` and one per component),
//! phase, endpoints, worker counts, last backup and schema version — computed purely from what
//! the children report, keeping each condition's lastTransitionTime while its status holds, so an
//! unchanged world yields an identical status and no write.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use ragdoll_crds::{Endpoints, LastBackup, RagdollCluster, RagdollClusterStatus, WorkerStatus};

/// What the current migration Job reports.
#[derive(Clone, Debug, PartialEq)]
pub enum Migration {
    /// Not created yet, or not finished.
    Running,
    Succeeded {
        schema_version: Option<i64>,
    },
    Failed {
        message: String,
    },
}

/// Everything status is computed from.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub managed_database: bool,
    pub database: Option<StatefulSet>,
    pub api: Option<Deployment>,
    pub api_desired: i32,
    /// Per queue: the Deployment (if it exists) and its desired replicas.
    pub workers: Vec<(String, Option<Deployment>, i32)>,
    pub migration: Option<Migration>,
    pub last_backup: Option<LastBackup>,
    pub endpoints: Endpoints,
    /// Problems that stop the cluster from converging (missing secrets, rejected applies).
    pub problems: Vec<String>,
}

const TRUE: &str = "True";
const FALSE: &str = "False";
const UNKNOWN: &str = "Unknown";

fn ready_deployment(d: Option<&Deployment>, desired: i32) -> (i32, bool) {
    let Some(d) = d else { return (0, false) };
    let status = d.status.clone().unwrap_or_default();
    let ready = status.ready_replicas.unwrap_or(0);
    let updated = status.updated_replicas.unwrap_or(0);
    let current_generation =
        status.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0);
    (
        ready,
        current_generation && ready >= desired && updated >= desired,
    )
}

fn progress_deadline_exceeded(d: Option<&Deployment>) -> Option<String> {
    d?.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find_map(|c| {
            (c.type_ == "Progressing"
                && c.status == FALSE
                && c.reason.as_deref() == Some("ProgressDeadlineExceeded"))
            .then(|| c.message.clone().unwrap_or_default())
        })
}

struct Cond {
    type_: &'static str,
    status: &'static str,
    reason: &'static str,
    message: String,
}

fn cond(
    type_: &'static str,
    ok: bool,
    reason_ok: &'static str,
    reason_not: &'static str,
    message: String,
) -> Cond {
    Cond {
        type_,
        status: if ok { TRUE } else { FALSE },
        reason: if ok { reason_ok } else { reason_not },
        message,
    }
}

/// Computes the status; `previous` supplies lastTransitionTimes, `now` stamps real transitions.
pub fn compute(cluster: &RagdollCluster, o: &Observed, now: Time) -> RagdollClusterStatus {
    let generation = cluster.metadata.generation;
    let previous = cluster.status.clone().unwrap_or_default();
    let mut conds: Vec<Cond> = Vec::new();

    // Database
    let db = if o.managed_database {
        let ready = o
            .database
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0);
        cond(
            "DatabaseReady",
            ready >= 1,
            "Ready",
            "NotReady",
            format!("{ready}/1 database pods ready"),
        )
    } else {
        match &o.migration {
            Some(Migration::Succeeded { .. }) => Cond {
                type_: "DatabaseReady",
                status: TRUE,
                reason: "ExternalReachable",
                message: "the external database accepted the migration".into(),
            },
            _ => Cond {
                type_: "DatabaseReady",
                status: UNKNOWN,
                reason: "External",
                message: "the external database is not probed by the operator; the migration Job shows whether it is reachable".into(),
            },
        }
    };
    let db_ready = db.status == TRUE;
    conds.push(db);

    // Migrations
    let (migrated, migration_failed, schema_version) = match &o.migration {
        Some(Migration::Succeeded { schema_version }) => {
            conds.push(Cond {
                type_: "MigrationsComplete",
                status: TRUE,
                reason: "Migrated",
                message: schema_version.map_or_else(
                    || "migrations applied".into(),
                    |v| format!("schema version {v}"),
                ),
            });
            (true, false, *schema_version)
        }
        Some(Migration::Failed { message }) => {
            conds.push(Cond {
                type_: "MigrationsComplete",
                status: FALSE,
                reason: "MigrationFailed",
                message: message.clone(),
            });
            (false, true, previous.schema_version)
        }
        _ => {
            conds.push(Cond {
                type_: "MigrationsComplete",
                status: FALSE,
                reason: "Migrating",
                message: "the migration Job has not finished".into(),
            });
            (false, false, previous.schema_version)
        }
    };

    // API
    let (api_ready_pods, api_ok) = ready_deployment(o.api.as_ref(), o.api_desired);
    let api_msg = if o.api.is_none() && !migrated {
        "waiting for the migration before rolling out".to_string()
    } else {
        format!("{api_ready_pods}/{} API pods ready", o.api_desired)
    };
    conds.push(cond(
        "ApiReady",
        api_ok,
        "Ready",
        if o.api.is_none() {
            "NotCreated"
        } else {
            "NotReady"
        },
        api_msg,
    ));

    // Workers
    let mut workers = Vec::new();
    let (mut ready_total, mut desired_total, mut all_ok) = (0, 0, true);
    for (queue, d, desired) in &o.workers {
        let (ready, ok) = ready_deployment(d.as_ref(), *desired);
        all_ok &= ok;
        ready_total += ready;
        desired_total += desired;
        workers.push(WorkerStatus {
            queue: queue.clone(),
            ready,
            desired: *desired,
        });
    }
    conds.push(cond(
        "WorkersReady",
        all_ok,
        "Ready",
        "NotReady",
        format!("{ready_total}/{desired_total} worker pods ready"),
    ));

    // Backups
    conds.push(match &o.last_backup {
        None => Cond {
            type_: "LastBackupSucceeded",
            status: UNKNOWN,
            reason: "NoBackupYet",
            message: "no backup has run yet".into(),
        },
        Some(b) if b.result == "Succeeded" => Cond {
            type_: "LastBackupSucceeded",
            status: TRUE,
            reason: "BackupSucceeded",
            message: format!("backup {} succeeded", b.job.clone().unwrap_or_default()),
        },
        Some(b) => Cond {
            type_: "LastBackupSucceeded",
            status: FALSE,
            reason: "BackupFailed",
            message: format!("backup {} failed", b.job.clone().unwrap_or_default()),
        },
    });

    // Summary conditions
    let mut problems = o.problems.clone();
    if migration_failed {
        problems.push("the migration failed".into());
    }
    for (name, d) in std::iter::once(("api", o.api.as_ref()))
        .chain(o.workers.iter().map(|(q, d, _)| (q.as_str(), d.as_ref())))
    {
        if let Some(m) = progress_deadline_exceeded(d) {
            problems.push(format!("{name}: {m}"));
        }
    }
    let ready = db_ready && migrated && api_ok && all_ok;
    let degraded = !problems.is_empty();
    let waiting: Vec<&str> = conds
        .iter()
        .filter(|c| {
            c.status != TRUE
                && c.type_ != "LastBackupSucceeded"
                && !(c.type_ == "DatabaseReady" && !o.managed_database && migrated)
        })
        .map(|c| c.type_)
        .collect();
    conds.push(cond(
        "Ready",
        ready,
        "Ready",
        if degraded { "Degraded" } else { "NotReady" },
        if ready {
            "all components are ready".into()
        } else {
            format!("waiting for: {}", waiting.join(", "))
        },
    ));
    conds.push(Cond {
        type_: "Progressing",
        status: if !ready && !degraded { TRUE } else { FALSE },
        reason: if ready {
            "Reconciled"
        } else if degraded {
            "Stalled"
        } else if !migrated {
            "Migrating"
        } else {
            "RollingOut"
        },
        message: if ready {
            "the cluster matches its spec".into()
        } else {
            format!("waiting for: {}", waiting.join(", "))
        },
    });
    conds.push(Cond {
        type_: "Degraded",
        status: if degraded { TRUE } else { FALSE },
        reason: if degraded {
            "ComponentFailure"
        } else {
            "AsExpected"
        },
        message: if degraded {
            problems.join("; ")
        } else {
            "no component reports a failure".into()
        },
    });

    let phase = if degraded {
        "Degraded"
    } else if ready {
        "Ready"
    } else if o.database.is_some() || o.api.is_some() || o.migration.is_some() {
        "Provisioning"
    } else {
        "Pending"
    };
    RagdollClusterStatus {
        phase: Some(phase.into()),
        observed_generation: generation,
        conditions: conds
            .into_iter()
            .map(|c| to_condition(c, generation, &previous.conditions, &now))
            .collect(),
        endpoints: Some(o.endpoints.clone()),
        workers_ready: Some(format!("{ready_total}/{desired_total}")),
        workers,
        last_backup: o.last_backup.clone(),
        schema_version,
    }
}

fn to_condition(c: Cond, generation: Option<i64>, previous: &[Condition], now: &Time) -> Condition {
    let last = previous
        .iter()
        .find(|p| p.type_ == c.type_ && p.status == c.status)
        .map_or_else(|| now.clone(), |p| p.last_transition_time.clone());
    Condition {
        type_: c.type_.into(),
        status: c.status.into(),
        reason: c.reason.into(),
        message: c.message,
        observed_generation: generation,
        last_transition_time: last,
    }
}

/// The status after a reconciliation that could not run to the end (e.g. the API refused a
/// request): what was known stays, Ready and Degraded say why.
pub fn failed(cluster: &RagdollCluster, message: &str, now: Time) -> RagdollClusterStatus {
    let mut s = cluster.status.clone().unwrap_or_default();
    let previous = s.conditions.clone();
    s.phase = Some("Degraded".into());
    s.observed_generation = cluster.metadata.generation;
    s.conditions
        .retain(|c| c.type_ != "Ready" && c.type_ != "Degraded" && c.type_ != "Progressing");
    for (type_, status) in [("Ready", FALSE), ("Progressing", FALSE), ("Degraded", TRUE)] {
        s.conditions.push(to_condition(
            Cond {
                type_,
                status,
                reason: "ReconcileError",
                message: message.to_string(),
            },
            cluster.metadata.generation,
            &previous,
            &now,
        ));
    }
    s
}

/// The status of a paused cluster: everything else as it was, and a Paused phase.
pub fn paused(cluster: &RagdollCluster, now: Time) -> RagdollClusterStatus {
    let mut s = cluster.status.clone().unwrap_or_default();
    s.phase = Some("Paused".into());
    s.observed_generation = cluster.metadata.generation;
    let previous = s.conditions.clone();
    s.conditions.retain(|c| c.type_ != "Progressing");
    s.conditions.push(to_condition(
        Cond {
            type_: "Progressing",
            status: FALSE,
            reason: "Paused",
            message: "reconciliation is paused (spec.paused)".into(),
        },
        cluster.metadata.generation,
        &previous,
        &now,
    ));
    s
}

#[cfg(test)]
mod tests;

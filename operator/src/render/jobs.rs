//! Batch work: the migration Job (named by a hash of what the schema depends on, so a new image
//! or schema setting runs it again), the maintenance and reindex CronJobs (`ragdoll maintain`),
//! and the pg_dump backup CronJob with its volume and retention.

use serde_json::{Value, json};

use super::{
    Child, Ctx, Kind, POSTGRES_UID, RUNTIME_UID, container_security, pod_security, runtime,
    short_hash,
};
use ragdoll_crds::{DEFAULT_DATABASE_IMAGE, Resources};

/// Where `ragdoll migrate` reports the schema version (read back from the pod's status).
pub const TERMINATION_LOG: &str = "/dev/termination-log";

/// Hash of everything the migration result depends on.
pub fn migration_hash(ctx: &Ctx) -> String {
    let s = &ctx.cluster.spec;
    short_hash(&json!([
        s.runtime.image,
        s.embeddings.dimensions,
        s.embeddings.provider,
        s.embeddings.model,
        s.search.index.m,
        s.search.index.ef_construction,
    ]))[..10]
        .to_string()
}

pub fn migration_job_name(ctx: &Ctx) -> String {
    ctx.child_name(&format!("migrate-{}", migration_hash(ctx)))
}

fn job_resources() -> Resources {
    Resources::new(
        &[("cpu", "100m"), ("memory", "128Mi")],
        &[("memory", "512Mi")],
    )
}

fn job_pod(ctx: &Ctx, component: &str, container: Value, uid: i64, volumes: Value) -> Value {
    let mut labels = ctx.labels(component);
    labels.insert(super::DB_CLIENT_LABEL.into(), "true".into());
    json!({
        "metadata": {"labels": labels},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": pod_security(uid),
            "imagePullSecrets": ctx.image_pull_secrets(),
            "containers": [container],
            "volumes": volumes,
        }
    })
}

pub fn migration_job(ctx: &Ctx) -> Child {
    let mut c = runtime::container(
        ctx,
        "migrate",
        json!(["migrate", "--report", TERMINATION_LOG]),
        runtime::env(ctx),
        &job_resources(),
    );
    c["terminationMessagePath"] = json!(TERMINATION_LOG);
    c["terminationMessagePolicy"] = json!("FallbackToLogsOnError");
    Child::new(
        ctx,
        Kind::Job,
        migration_job_name(ctx),
        "migration",
        json!({
            "metadata": {"annotations": {"ragdoll.dev/migration-hash": migration_hash(ctx)}},
            "spec": {
                "backoffLimit": 6,
                "activeDeadlineSeconds": 3600,
                "template": job_pod(ctx, "migration", c, RUNTIME_UID, json!([{"name": "tmp", "emptyDir": {}}])),
            }
        }),
    )
}

fn cron_job(
    ctx: &Ctx,
    name: &str,
    component: &str,
    schedule: &str,
    suspend: bool,
    pod: Value,
    backoff: i32,
) -> Child {
    Child::new(
        ctx,
        Kind::CronJob,
        ctx.child_name(name),
        component,
        json!({"spec": {
            "schedule": schedule,
            "timeZone": "Etc/UTC",
            "suspend": suspend,
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 3600,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {"metadata": {"labels": ctx.labels(component)}, "spec": {"backoffLimit": backoff, "template": pod}},
        }}),
    )
}

fn maintain(ctx: &Ctx, name: &str, schedule: &str, args: Value) -> Child {
    let m = &ctx.cluster.spec.maintenance;
    let c = runtime::container(ctx, "maintain", args, runtime::env(ctx), &job_resources());
    let pod = job_pod(
        ctx,
        "maintenance",
        c,
        RUNTIME_UID,
        json!([{"name": "tmp", "emptyDir": {}}]),
    );
    cron_job(ctx, name, "maintenance", schedule, m.suspend, pod, 2)
}

/// `-maintenance` (VACUUM ANALYZE and housekeeping) and `-reindex` (unless Never).
pub fn maintenance(ctx: &Ctx) -> Vec<Child> {
    let m = &ctx.cluster.spec.maintenance;
    let mut args = vec!["maintain".to_string()];
    if m.vacuum_analyze {
        args.push("--vacuum-analyze".into());
    }
    let mut out = vec![maintain(ctx, "maintenance", &m.schedule, json!(args))];
    let reindex = match m.reindex.as_str() {
        "Never" => None,
        "Weekly" => Some("0 4 * * 0"),
        cron => Some(cron),
    };
    if let Some(schedule) = reindex {
        out.push(maintain(
            ctx,
            "reindex",
            schedule,
            json!(["maintain", "--reindex"]),
        ));
    }
    out
}

/// The backup script: dump to a temporary name, rename when complete, then delete dumps older
/// than the retention. `BACKUP_DIR` and `RETENTION_DAYS` come from the environment.
pub const BACKUP_SCRIPT: &str = r#"set -eu
dir="${BACKUP_DIR:-/backups}"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
tmp="$dir/.ragdoll-$stamp.dump.partial"
pg_dump --format=custom --compress=6 --no-owner --no-privileges --file="$tmp" "$DATABASE_URL"
mv "$tmp" "$dir/ragdoll-$stamp.dump"
echo "backup written: $dir/ragdoll-$stamp.dump ($(wc -c < "$dir/ragdoll-$stamp.dump") bytes)"
find "$dir" -maxdepth 1 -type f -name 'ragdoll-*.dump' -mtime +"$RETENTION_DAYS" -print -delete
find "$dir" -maxdepth 1 -type f -name '.ragdoll-*.partial' -mmin +120 -delete
"#;

pub fn backup(ctx: &Ctx) -> Vec<Child> {
    let b = &ctx.cluster.spec.backup;
    if !b.enabled {
        return Vec::new();
    }
    let image = ctx
        .cluster
        .spec
        .database
        .managed
        .as_ref()
        .map_or(DEFAULT_DATABASE_IMAGE.to_string(), |m| m.image.clone());
    let mut env = vec![super::secret_env("DATABASE_URL", &ctx.database_url())];
    env.push(json!({"name": "BACKUP_DIR", "value": "/backups"}));
    env.push(json!({"name": "RETENTION_DAYS", "value": b.retention_days.to_string()}));
    let c = json!({
        "name": "backup",
        "image": image,
        "imagePullPolicy": ctx.cluster.spec.runtime.image_pull_policy,
        "command": ["/bin/sh", "-c", BACKUP_SCRIPT],
        "env": env,
        "resources": super::resources(&job_resources()),
        "securityContext": container_security(),
        "volumeMounts": [{"name": "backups", "mountPath": "/backups"}, {"name": "tmp", "mountPath": "/tmp"}],
    });
    let volumes = json!([
        {"name": "backups", "persistentVolumeClaim": {"claimName": ctx.child_name("backups")}},
        {"name": "tmp", "emptyDir": {}},
    ]);
    let pod = job_pod(ctx, "backup", c, POSTGRES_UID, volumes);
    let mut claim = json!({"spec": {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": b.storage.size}},
    }});
    if let Some(class) = &b.storage.storage_class_name {
        claim["spec"]["storageClassName"] = json!(class);
    }
    vec![
        Child::new(
            ctx,
            Kind::PersistentVolumeClaim,
            ctx.child_name("backups"),
            "backup",
            claim,
        ),
        cron_job(ctx, "backup", "backup", &b.schedule, b.suspend, pod, 1),
    ]
}

//! The managed database: the credentials Secret (rendered once, never overwritten), the tuned
//! postgresql.conf ConfigMap, the PostgreSQL + pgvector StatefulSet, its client Service and its
//! headless Service.

use serde_json::json;

use super::{Child, Ctx, Kind, POSTGRES_UID, container_security, pod_security, resources, tuning};

pub const PORT: i32 = 5432;
pub const USER: &str = "ragdoll";
pub const DATABASE: &str = "ragdoll";

/// The credentials Secret with a fresh password. Applied only when it does not exist yet.
pub fn credentials(ctx: &Ctx, password: &str) -> Child {
    let host = format!("{}.{}.svc", ctx.child_name("postgres"), ctx.namespace);
    Child::new(
        ctx,
        Kind::Secret,
        ctx.child_name("db-credentials"),
        "database",
        json!({
            "type": "Opaque",
            "stringData": {
                "username": USER,
                "password": password,
                "database": DATABASE,
                "host": host,
                "port": PORT.to_string(),
                "url": format!("postgres://{USER}:{password}@{host}:{PORT}/{DATABASE}"),
            }
        }),
    )
}

pub fn config(ctx: &Ctx) -> Option<Child> {
    let m = ctx.cluster.spec.database.managed.as_ref()?;
    Some(Child::new(
        ctx,
        Kind::ConfigMap,
        ctx.child_name("postgres-config"),
        "database",
        json!({"data": {"postgresql.conf": tuning::postgresql_conf(&m.resources, &m.parameters)}}),
    ))
}

pub fn services(ctx: &Ctx) -> Vec<Child> {
    if !ctx.managed() {
        return Vec::new();
    }
    let selector = ctx.selector("database");
    let port =
        json!([{"name": "postgres", "port": PORT, "targetPort": "postgres", "protocol": "TCP"}]);
    vec![
        Child::new(
            ctx,
            Kind::Service,
            ctx.child_name("postgres"),
            "database",
            json!({"spec": {"type": "ClusterIP", "selector": selector, "ports": port}}),
        ),
        Child::new(
            ctx,
            Kind::Service,
            ctx.child_name("postgres-headless"),
            "database",
            json!({"spec": {"clusterIP": "None", "selector": selector, "ports": port,
                            "publishNotReadyAddresses": true}}),
        ),
    ]
}

pub fn statefulset(ctx: &Ctx) -> Option<Child> {
    let m = ctx.cluster.spec.database.managed.as_ref()?;
    let creds = ctx.child_name("db-credentials");
    let env_from_secret = |name: &str, key: &str| json!({"name": name, "valueFrom": {"secretKeyRef": {"name": creds, "key": key}}});
    let pg_isready = json!([
        "pg_isready",
        "-h",
        "127.0.0.1",
        "-p",
        PORT.to_string(),
        "-U",
        USER,
        "-d",
        DATABASE
    ]);
    let mut claim = json!({
        "metadata": {"name": "data", "labels": ctx.selector("database")},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": m.storage.size}},
        }
    });
    if let Some(class) = &m.storage.storage_class_name {
        claim["spec"]["storageClassName"] = json!(class);
    }
    let retention = if m.retain_on_delete {
        "Retain"
    } else {
        "Delete"
    };
    Some(Child::new(
        ctx,
        Kind::StatefulSet,
        ctx.child_name("postgres"),
        "database",
        json!({"spec": {
            "serviceName": ctx.child_name("postgres-headless"),
            "replicas": 1,
            "selector": {"matchLabels": ctx.selector("database")},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": retention, "whenScaled": "Retain"},
            "volumeClaimTemplates": [claim],
            "template": {
                "metadata": {
                    "labels": ctx.labels("database"),
                    "annotations": {super::CONFIG_HASH_ANNOTATION: super::short_hash(&json!([m.resources, m.parameters]))},
                },
                "spec": {
                    "securityContext": pod_security(POSTGRES_UID),
                    "imagePullSecrets": ctx.image_pull_secrets(),
                    "terminationGracePeriodSeconds": 60,
                    "containers": [{
                        "name": "postgres",
                        "image": m.image,
                        "imagePullPolicy": ctx.cluster.spec.runtime.image_pull_policy,
                        "args": ["-c", "config_file=/etc/postgresql/postgresql.conf"],
                        "env": [
                            env_from_secret("POSTGRES_USER", "username"),
                            env_from_secret("POSTGRES_PASSWORD", "password"),
                            env_from_secret("POSTGRES_DB", "database"),
                        ],
                        "ports": [{"name": "postgres", "containerPort": PORT, "protocol": "TCP"}],
                        "resources": resources(&m.resources),
                        "securityContext": container_security(),
                        "readinessProbe": {"exec": {"command": pg_isready}, "periodSeconds": 5, "timeoutSeconds": 3},
                        "livenessProbe": {"exec": {"command": pg_isready}, "initialDelaySeconds": 30,
                                          "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 6},
                        "volumeMounts": [
                            {"name": "data", "mountPath": "/var/lib/postgresql"},
                            {"name": "config", "mountPath": "/etc/postgresql", "readOnly": true},
                            {"name": "run", "mountPath": "/var/run/postgresql"},
                            {"name": "tmp", "mountPath": "/tmp"},
                        ],
                    }],
                    "volumes": [
                        {"name": "config", "configMap": {"name": ctx.child_name("postgres-config")}},
                        {"name": "run", "emptyDir": {}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                }
            }
        }}),
    ))
}

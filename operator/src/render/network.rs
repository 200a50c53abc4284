//! Network isolation: the managed database accepts connections only from this cluster's API,
//! workers and jobs (pods labelled as database clients of this instance).

use serde_json::json;

use super::{Child, Ctx, DB_CLIENT_LABEL, Kind, database};

pub fn database_policy(ctx: &Ctx) -> Option<Child> {
    if !ctx.cluster.spec.network_policy || !ctx.managed() {
        return None;
    }
    Some(Child::new(
        ctx,
        Kind::NetworkPolicy,
        ctx.child_name("database"),
        "database",
        json!({"spec": {
            "podSelector": {"matchLabels": ctx.selector("database")},
            "policyTypes": ["Ingress"],
            "ingress": [{
                "from": [{"podSelector": {"matchLabels": {
                    "app.kubernetes.io/instance": ctx.name,
                    DB_CLIENT_LABEL: "true",
                }}}],
                "ports": [{"protocol": "TCP", "port": database::PORT}],
            }],
        }}),
    ))
}

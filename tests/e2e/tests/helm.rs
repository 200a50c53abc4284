//! The Helm chart and the install manifests: lint, values schema, server-side dry run of the
//! rendered objects, `manifests/install.yaml` generated from the chart, and `helm install`
//! followed by the operator running with the chart's ServiceAccount permissions (impersonation)
//! — proof that its RBAC is sufficient — in cluster-wide and namespaced modes.

use std::process::{Command, Output};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ListParams};
use ragdoll_crds::RagdollCluster;
use ragdoll_e2e::*;

fn tool(name: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(bin_dir().join(name));
    cmd.args(args).env("KUBECONFIG", kubeconfig()).env(
        "HELM_CACHE_HOME",
        std::env::temp_dir().join("ragdoll-helm-cache"),
    );
    if let Some(input) = stdin {
        use std::io::Write;
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("spawn");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write");
        return child.wait_with_output().expect("wait");
    }
    cmd.output().expect("run tool")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn chart() -> String {
    repo_root()
        .join("charts/ragdoll-operator")
        .display()
        .to_string()
}

/// The install manifest: the namespace, the CRD, and the chart rendered for `ragdoll-system`.
fn render_install() -> String {
    let out = tool(
        "helm",
        &[
            "template",
            "ragdoll-operator",
            &chart(),
            "--namespace",
            "ragdoll-system",
            "--include-crds",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    format!(
        "# Generated from charts/ragdoll-operator by `make generate`; do not edit.\n# kubectl apply --server-side -f manifests/install.yaml\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: ragdoll-system\n{}",
        String::from_utf8_lossy(&out.stdout)
    )
}

#[test]
fn chart_lints_and_its_values_are_validated() {
    let out = tool("helm", &["lint", "--strict", &chart()], None);
    assert!(out.status.success(), "{}", text(&out));
    for (set, needle) in [
        ("replicaCount=-1", "minimum"),
        ("colour=red", "additional properties"),
        ("logFormat=xml", "logFormat"),
    ] {
        let out = tool("helm", &["template", "x", &chart(), "--set", set], None);
        assert!(!out.status.success(), "--set {set} was accepted");
        assert!(text(&out).contains(needle), "--set {set}: {}", text(&out));
    }
    // Namespaced mode: a Role instead of a ClusterRole, and the operator watches one namespace.
    let out = tool(
        "helm",
        &[
            "template",
            "x",
            &chart(),
            "--namespace",
            "team-a",
            "--set",
            "namespaced=true",
        ],
        None,
    );
    let rendered = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{}", text(&out));
    assert!(!rendered.contains("kind: ClusterRole"), "{rendered}");
    assert!(rendered.contains("- --namespace=team-a"));
}

#[test]
fn install_manifest_is_generated_from_the_chart() {
    let want = render_install();
    let path = repo_root().join("manifests/install.yaml");
    if std::env::var("RAGDOLL_UPDATE_GENERATED").is_ok() {
        std::fs::write(&path, &want).expect("write install.yaml");
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "manifests/install.yaml is stale: run `make generate`"
    );
    assert!(have.contains("kind: CustomResourceDefinition") && have.contains("kind: Deployment"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendered_objects_pass_a_server_side_dry_run() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, "e2e-dryrun").await;
    let out = tool(
        "helm",
        &[
            "template",
            "dry",
            &chart(),
            "--namespace",
            &ns.name,
            "--set",
            "metrics.serviceMonitor.enabled=false,networkPolicy.enabled=true",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    let manifest = String::from_utf8_lossy(&out.stdout).to_string();
    let out = tool(
        "kubectl",
        &[
            "apply",
            "--server-side",
            "--dry-run=server",
            "--field-manager=e2e",
            "-f",
            "-",
        ],
        Some(&manifest),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out)
            .contains("deployment.apps/dry-ragdoll-operator serverside-applied (server dry run)"),
        "{}",
        text(&out)
    );
}

async fn helm_install(release: &str, namespace: &str, extra: &[&str]) {
    let chart = chart();
    let mut args = vec![
        "install",
        release,
        &chart,
        "--namespace",
        namespace,
        "--create-namespace",
        "--set",
        "replicaCount=0",
        "--wait=false",
    ];
    args.extend_from_slice(extra);
    let out = tool("helm", &args, None);
    assert!(out.status.success(), "{}", text(&out));
}

fn helm_uninstall(release: &str, namespace: &str) {
    let _ = tool(
        "helm",
        &["uninstall", release, "--namespace", namespace],
        None,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_charts_rbac_is_enough_to_reconcile_a_cluster() {
    let admin = client().await;
    install_crd(&admin).await;
    let system = TestNamespace::new(&admin, "e2e-helm").await;
    let release = format!("rop-{:x}", rand::random::<u16>());
    helm_install(&release, &system.name, &[]).await;
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &system.name);
    assert!(
        deployments
            .get(&format!("{release}-ragdoll-operator"))
            .await
            .is_ok()
    );

    // The operator, acting as the chart's ServiceAccount, reconciles a cluster elsewhere.
    let sa = format!(
        "system:serviceaccount:{}:{release}-ragdoll-operator",
        system.name
    );
    let as_operator = impersonating(&sa).await;
    let apps = TestNamespace::new(&admin, "e2e-helm-apps").await;
    let op = InProcessOperator::start_as(
        as_operator,
        None,
        Some((system.name.clone(), "ragdoll-operator-leader".into())),
    )
    .await;
    apply_yaml(&admin, &apps.name, &example("minimal.yaml")).await;
    let _kubelet = Kubelet::start(&admin, &apps.name, MIGRATION_REPORT);
    wait_ready(&admin, &apps.name, "ragdoll", Duration::from_secs(90)).await;
    assert!(op.metric("ragdoll_operator_api_writes_total").await > 10.0);
    op.stop().await;
    helm_uninstall(&release, &system.name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespaced_install_works_in_its_namespace_and_sees_nothing_else() {
    let admin = client().await;
    install_crd(&admin).await;
    let team = TestNamespace::new(&admin, "e2e-team").await;
    let release = format!("rop-{:x}", rand::random::<u16>());
    helm_install(&release, &team.name, &["--set", "namespaced=true"]).await;
    let as_operator = impersonating(&format!(
        "system:serviceaccount:{}:{release}-ragdoll-operator",
        team.name
    ))
    .await;
    // Least privilege: nothing outside its namespace.
    let elsewhere: Api<RagdollCluster> = Api::namespaced(as_operator.clone(), "default");
    match elsewhere.list(&ListParams::default()).await {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 403),
        other => panic!("a namespaced operator can list another namespace: {other:?}"),
    }
    let op = InProcessOperator::start_as(
        as_operator,
        Some(&team.name),
        Some((team.name.clone(), "ragdoll-operator-leader".into())),
    )
    .await;
    apply_yaml(&admin, &team.name, &example("minimal.yaml")).await;
    let _kubelet = Kubelet::start(&admin, &team.name, MIGRATION_REPORT);
    wait_ready(&admin, &team.name, "ragdoll", Duration::from_secs(90)).await;
    op.stop().await;
    helm_uninstall(&release, &team.name);
}

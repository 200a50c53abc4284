//! `ragdoll-operator`: print the CRD, or run the controller against the current kubeconfig (or
//! the in-cluster service account).

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use ragdoll_operator::controller::{self, Options};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "ragdoll-operator",
    version,
    about = "Kubernetes operator for Ragdoll (RagdollCluster)"
)]
struct Cli {
    #[arg(long, env = "RAGDOLL_OPERATOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(ValueEnum, Clone, Copy)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Print the RagdollCluster CustomResourceDefinition as YAML.
    Crd,
    /// Reconcile RagdollClusters.
    Run(RunArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// Watch only this namespace (all namespaces when absent).
    #[arg(long, env = "RAGDOLL_OPERATOR_NAMESPACE")]
    namespace: Option<String>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(
        long,
        env = "RAGDOLL_OPERATOR_METRICS_BIND",
        default_value = "0.0.0.0:8080"
    )]
    metrics_bind: SocketAddr,
    /// Run without leader election (only safe with a single replica).
    #[arg(long)]
    no_leader_election: bool,
    /// Namespace of the leader Lease (default: the pod's namespace, else `default`).
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    #[arg(long, default_value = "ragdoll-operator-leader")]
    lease_name: String,
    /// This replica's identity in the Lease (default: the pod name, else a random one).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn,kube_runtime=warn"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => b.json().flatten_event(true).init(),
        LogFormat::Text => b.init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", ragdoll_crds::crd_yaml());
            ExitCode::SUCCESS
        }
        Command::Run(args) => {
            init_logging(cli.log_format);
            let _ = rustls::crypto::ring::default_provider().install_default();
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(run(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "operator stopped");
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let client = kube::Client::try_default().await?;
    let identity = args.identity.unwrap_or_else(|| {
        let suffix = uuid_like();
        format!("ragdoll-operator-{suffix}")
    });
    let lease = (!args.no_leader_election).then(|| {
        (
            args.lease_namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            args.lease_name.clone(),
        )
    });
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        token.cancel();
    });
    controller::run(
        client,
        Options {
            namespace: args.namespace,
            metrics_bind: args.metrics_bind,
            lease,
            identity,
        },
        shutdown,
    )
    .await
}

fn uuid_like() -> String {
    use rand::Rng;
    (0..8)
        .map(|_| format!("{:x}", rand::rng().random_range(0..16u8)))
        .collect()
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    {
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
        return;
    }
    let _ = ctrl_c.await;
}

//! The `RagdollCluster` custom resource (`ragdoll.dev/v1alpha1`): its spec with defaults and
//! OpenAPI/CEL validation (readable messages from the API server), its status, and the CRD
//! YAML generated from these types — the one source of truth for every checked-in copy.

pub mod quantity;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::core::{Message, Rule};
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use quantity::Quantity;

/// Default runtime image of this release.
pub const DEFAULT_RUNTIME_IMAGE: &str = concat!("ragdoll/ragdoll:", env!("CARGO_PKG_VERSION"));
/// Default database image: PostgreSQL 18 with pgvector.
pub const DEFAULT_DATABASE_IMAGE: &str = "pgvector/pgvector:pg18";

const CRON: &str = "^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|([0-9A-Za-z*/,?-]+ +){4}[0-9A-Za-z*/,?-]+)$";

fn cron_rule(field: &str) -> Rule {
    Rule::new(format!("self.matches('{CRON}')")).message(Message::Message(format!(
        "{field} must be a cron schedule such as \"0 3 * * *\" or @daily"
    )))
}

/// A Ragdoll deployment: PostgreSQL with pgvector (managed or external), the HTTP API, workers
/// per job queue, migrations, maintenance, backups, network policies and monitoring.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "ragdoll.dev",
    version = "v1alpha1",
    kind = "RagdollCluster",
    plural = "ragdollclusters",
    shortname = "rdc",
    category = "ragdoll",
    namespaced,
    status = "RagdollClusterStatus",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"API","type":"string","jsonPath":".status.endpoints.api"}"#,
    printcolumn = r#"{"name":"Workers","type":"string","jsonPath":".status.workersReady"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RagdollClusterSpec {
    /// The Ragdoll runtime image run by the API, the workers and the jobs.
    #[serde(default)]
    pub runtime: RuntimeSpec,
    /// Where the data lives: a PostgreSQL + pgvector StatefulSet run by the operator
    /// (`managed`), or an existing database (`external`).
    #[serde(default)]
    pub database: DatabaseSpec,
    /// How chunks and queries are embedded.
    #[serde(default)]
    pub embeddings: EmbeddingsSpec,
    /// The language model that writes summaries and keywords (optional).
    #[serde(default)]
    pub llm: LlmSpec,
    /// How documents are accepted and chunked.
    #[serde(default)]
    pub ingestion: IngestionSpec,
    /// Search defaults and the vector index.
    #[serde(default)]
    pub search: SearchSpec,
    /// The HTTP API Deployment.
    #[serde(default)]
    pub api: ApiSpec,
    /// One worker Deployment per job queue. Default: embeddings (concurrency 3), processing (2),
    /// analysis (1) and default (1), one replica each.
    #[serde(default = "default_workers")]
    #[schemars(length(max = 4))]
    #[x_kube(
        merge_strategy = kube::core::ListMerge::Map(vec!["queue".into()]),
        validation = Rule::new("self.all(w, self.exists_one(x, x.queue == w.queue))")
            .message("workers: each queue may appear only once")
    )]
    pub workers: Vec<WorkerSpec>,
    /// Scheduled VACUUM ANALYZE and REINDEX CONCURRENTLY of the search indexes.
    #[serde(default)]
    pub maintenance: MaintenanceSpec,
    /// Scheduled logical backups (pg_dump) with retention.
    #[serde(default)]
    pub backup: BackupSpec,
    /// Prometheus monitoring.
    #[serde(default)]
    pub monitoring: MonitoringSpec,
    /// Restrict database access to this cluster's API, workers and jobs with a NetworkPolicy.
    #[serde(default = "yes")]
    pub network_policy: bool,
    /// Stop reconciling this cluster (children are left as they are).
    #[serde(default)]
    pub paused: bool,
}

fn yes() -> bool {
    true
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeSpec {
    /// Container image of the `ragdoll` runtime.
    #[serde(default = "default_runtime_image")]
    pub image: String,
    #[serde(default)]
    pub image_pull_policy: PullPolicy,
    /// Secrets for pulling the runtime and database images.
    #[serde(default)]
    pub image_pull_secrets: Vec<LocalObjectReference>,
}

impl Default for RuntimeSpec {
    fn default() -> Self {
        Self {
            image: default_runtime_image(),
            image_pull_policy: PullPolicy::default(),
            image_pull_secrets: Vec::new(),
        }
    }
}

fn default_runtime_image() -> String {
    DEFAULT_RUNTIME_IMAGE.into()
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Default, JsonSchema)]
pub enum PullPolicy {
    #[default]
    IfNotPresent,
    Always,
    Never,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct LocalObjectReference {
    pub name: String,
}

/// A key of a Secret in the cluster's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct SecretKeyRef {
    /// Secret name.
    pub name: String,
    /// Key in the Secret.
    pub key: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.managed) != has(self.external)")
    .message("database: set exactly one of managed or external"))]
pub struct DatabaseSpec {
    /// A PostgreSQL + pgvector StatefulSet run by the operator, tuned from its resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<ManagedDatabase>,
    /// An existing PostgreSQL (with the vector extension available).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalDatabase>,
}

impl Default for DatabaseSpec {
    fn default() -> Self {
        Self {
            managed: Some(ManagedDatabase::default()),
            external: None,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedDatabase {
    /// PostgreSQL image with pgvector.
    #[serde(default = "default_database_image")]
    pub image: String,
    /// The data volume.
    #[serde(default = "default_database_storage")]
    pub storage: StorageSpec,
    /// CPU and memory; shared_buffers (25%), effective_cache_size (75%), work_mem and
    /// maintenance_work_mem are derived from the memory limit (or request).
    #[serde(default = "default_database_resources")]
    pub resources: Resources,
    /// postgresql.conf settings that override the tuned defaults.
    #[serde(default)]
    #[schemars(extend("maxProperties" = 100))]
    #[x_kube(validation = Rule::new("self.all(k, k.matches('^[a-z][a-z0-9_.]*$'))")
        .message("database.managed.parameters: keys must be PostgreSQL setting names such as work_mem"))]
    pub parameters: BTreeMap<String, String>,
    /// Keep the data (and backup) volumes when the RagdollCluster is deleted.
    #[serde(default)]
    pub retain_on_delete: bool,
}

impl Default for ManagedDatabase {
    fn default() -> Self {
        Self {
            image: default_database_image(),
            storage: default_database_storage(),
            resources: default_database_resources(),
            parameters: BTreeMap::new(),
            retain_on_delete: false,
        }
    }
}

fn default_database_image() -> String {
    DEFAULT_DATABASE_IMAGE.into()
}

fn default_database_storage() -> StorageSpec {
    StorageSpec {
        size: Quantity("10Gi".into()),
        storage_class_name: None,
    }
}

fn default_database_resources() -> Resources {
    Resources::new(&[("cpu", "500m"), ("memory", "1Gi")], &[("memory", "2Gi")])
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Volume size, e.g. 10Gi.
    pub size: Quantity,
    /// Storage class (the cluster default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

/// Compute resources, as in a container spec.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
pub struct Resources {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, Quantity>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, Quantity>,
}

impl Resources {
    pub fn new(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Self {
        let map = |kv: &[(&str, &str)]| {
            kv.iter()
                .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                .collect()
        };
        Self {
            requests: map(requests),
            limits: map(limits),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalDatabase {
    /// Secret key holding the database URL (postgres://user:password@host:5432/db).
    pub secret_ref: SecretKeyRef,
    /// libpq sslmode added to the URL (when the URL does not set one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_mode: Option<SslMode>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.provider != 'local' || self.dimensions == 384").message(
    "embeddings.provider local (all-MiniLM-L6-v2) makes 384-dimensional vectors: set embeddings.dimensions to 384 or choose another provider"
))]
pub struct EmbeddingsSpec {
    /// local (default: all-MiniLM-L6-v2 from the runtime image, semantic, no network), hash
    /// (offline, lexical only) or openai (any OpenAI-compatible /v1/embeddings).
    #[serde(default)]
    pub provider: EmbeddingProvider,
    /// Model name (provider default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Vector dimensions. Immutable: stored vectors have this size.
    #[serde(default = "default_dimensions")]
    #[schemars(range(min = 1, max = 16000))]
    #[x_kube(validation = Rule::new("self == oldSelf").message(
        "embeddings.dimensions is immutable: stored vectors have this size; re-embed into a new RagdollCluster to change it"
    ))]
    pub dimensions: i32,
    /// Base URL of an OpenAI-compatible API (e.g. http://ollama:11434/v1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Secret key holding the provider's API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret_ref: Option<SecretKeyRef>,
}

impl Default for EmbeddingsSpec {
    fn default() -> Self {
        Self {
            provider: EmbeddingProvider::default(),
            model: None,
            dimensions: default_dimensions(),
            base_url: None,
            api_key_secret_ref: None,
        }
    }
}

fn default_dimensions() -> i32 {
    384
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EmbeddingProvider {
    /// Feature hashing: offline and instant, but lexical only (no synonyms).
    Hash,
    /// all-MiniLM-L6-v2 run in-process from the model the runtime image carries (384 dimensions).
    #[default]
    Local,
    Openai,
}

impl EmbeddingProvider {
    pub fn as_str(self) -> &'static str {
        match self {
            EmbeddingProvider::Hash => "hash",
            EmbeddingProvider::Local => "local",
            EmbeddingProvider::Openai => "openai",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "self.provider == 'openai' || (!has(self.visionModel) && !has(self.transcriptionModel) && !has(self.apiKeySecretRef))"
).message("llm.visionModel, llm.transcriptionModel and llm.apiKeySecretRef need llm.provider: openai"))]
pub struct LlmSpec {
    /// none (extractive summaries and TF-IDF keywords, no image descriptions or transcripts) or
    /// openai (any OpenAI-compatible API: OpenAI, Azure, Ollama, vLLM, OpenRouter, LiteLLM).
    #[serde(default)]
    pub provider: LlmProvider,
    /// Chat model writing summaries (runtime default gpt-4o-mini).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary_model: Option<String>,
    /// Chat model listing keywords (runtime default gpt-4o-mini).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keywords_model: Option<String>,
    /// Vision-capable chat model describing images; without it images get metadata only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vision_model: Option<String>,
    /// Transcription model for audio (e.g. whisper-1); without it audio gets metadata only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcription_model: Option<String>,
    /// Base URL of the OpenAI-compatible API, up to /v1 (e.g. http://ollama:11434/v1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Secret key holding the provider's API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret_ref: Option<SecretKeyRef>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LlmProvider {
    #[default]
    None,
    Openai,
}

impl LlmProvider {
    pub fn as_str(self) -> &'static str {
        match self {
            LlmProvider::None => "none",
            LlmProvider::Openai => "openai",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.chunkOverlap < self.chunkSize")
    .message("ingestion.chunkOverlap must be smaller than ingestion.chunkSize"))]
pub struct IngestionSpec {
    /// Characters per chunk.
    #[serde(default = "default_chunk_size")]
    #[schemars(range(min = 1, max = 100000))]
    pub chunk_size: i32,
    /// Characters shared by consecutive chunks.
    #[serde(default = "default_chunk_overlap")]
    #[schemars(range(min = 0))]
    pub chunk_overlap: i32,
    /// Largest accepted upload, e.g. 100Mi.
    #[serde(default = "default_max_file_size")]
    pub max_file_size: Quantity,
    /// Document types accepted (all when empty): text, markdown, html, xml, pdf, docx, csv, json, yaml.
    #[serde(default)]
    #[x_kube(merge_strategy = kube::core::ListMerge::Set)]
    pub allowed_file_types: Vec<FileType>,
}

impl Default for IngestionSpec {
    fn default() -> Self {
        Self {
            chunk_size: default_chunk_size(),
            chunk_overlap: default_chunk_overlap(),
            max_file_size: default_max_file_size(),
            allowed_file_types: Vec::new(),
        }
    }
}

fn default_chunk_size() -> i32 {
    1000
}
fn default_chunk_overlap() -> i32 {
    200
}
fn default_max_file_size() -> Quantity {
    Quantity("100Mi".into())
}

#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum FileType {
    Text,
    Markdown,
    Html,
    Xml,
    Pdf,
    Docx,
    Csv,
    Json,
    Yaml,
    /// PNG, JPEG, GIF, WebP: described by `llm.visionModel`, metadata only without it.
    Image,
    /// WAV, MP3, M4A, OGG, FLAC: transcribed by `llm.transcriptionModel`, metadata only without it.
    Audio,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SearchSpec {
    /// Default minimum cosine similarity of semantic results.
    #[serde(default = "default_threshold")]
    #[schemars(range(min = -1.0, max = 1.0))]
    pub similarity_threshold: f64,
    /// Largest `limit` a search may ask for.
    #[serde(default = "default_max_results")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_results: i32,
    /// Seconds search results stay cached (0 disables the cache).
    #[serde(default = "default_cache_ttl")]
    #[schemars(range(min = 0, max = 86400))]
    pub cache_ttl_seconds: i32,
    /// The HNSW vector index.
    #[serde(default)]
    pub index: IndexSpec,
}

impl Default for SearchSpec {
    fn default() -> Self {
        Self {
            similarity_threshold: default_threshold(),
            max_results: default_max_results(),
            cache_ttl_seconds: default_cache_ttl(),
            index: IndexSpec::default(),
        }
    }
}

fn default_threshold() -> f64 {
    0.7
}
fn default_max_results() -> i32 {
    50
}
fn default_cache_ttl() -> i32 {
    300
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IndexSpec {
    /// HNSW m (connections per layer), used when the index is built.
    #[serde(default = "default_m")]
    #[schemars(range(min = 2, max = 100))]
    pub m: i32,
    /// HNSW ef_construction, used when the index is built.
    #[serde(default = "default_ef_construction")]
    #[schemars(range(min = 4, max = 1000))]
    pub ef_construction: i32,
    /// hnsw.ef_search at query time: higher is more exact and slower.
    #[serde(default = "default_ef_search")]
    #[schemars(range(min = 1, max = 1000))]
    pub ef_search: i32,
}

impl Default for IndexSpec {
    fn default() -> Self {
        Self {
            m: default_m(),
            ef_construction: default_ef_construction(),
            ef_search: default_ef_search(),
        }
    }
}

fn default_m() -> i32 {
    16
}
fn default_ef_construction() -> i32 {
    64
}
fn default_ef_search() -> i32 {
    100
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiSpec {
    /// API pods (ignored while autoscaling is set).
    #[serde(default = "default_api_replicas")]
    #[schemars(range(min = 0))]
    pub replicas: i32,
    #[serde(default = "default_api_resources")]
    pub resources: Resources,
    #[serde(default)]
    pub service: ServiceSpec,
    /// Secret key holding the accepted API keys (comma-separated). Generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_secret_ref: Option<SecretKeyRef>,
    /// A HorizontalPodAutoscaler for the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
    /// A PodDisruptionBudget keeping at least one API pod during voluntary disruptions.
    #[serde(default = "yes")]
    pub pdb: bool,
}

impl Default for ApiSpec {
    fn default() -> Self {
        Self {
            replicas: default_api_replicas(),
            resources: default_api_resources(),
            service: ServiceSpec::default(),
            auth_secret_ref: None,
            autoscaling: None,
            pdb: true,
        }
    }
}

fn default_api_replicas() -> i32 {
    2
}

fn default_api_resources() -> Resources {
    Resources::new(
        &[("cpu", "250m"), ("memory", "256Mi")],
        &[("memory", "1Gi")],
    )
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    /// Service port of the API.
    #[serde(default = "default_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
}

impl Default for ServiceSpec {
    fn default() -> Self {
        Self {
            type_: ServiceType::default(),
            port: default_port(),
        }
    }
}

fn default_port() -> i32 {
    8080
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Default, JsonSchema)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas")
    .message("api.autoscaling.minReplicas must not exceed maxReplicas"))]
pub struct Autoscaling {
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 1))]
    pub min_replicas: i32,
    #[schemars(range(min = 1))]
    pub max_replicas: i32,
    /// Target average CPU utilisation in percent.
    #[serde(default = "default_target_cpu")]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization: i32,
}

fn default_min_replicas() -> i32 {
    2
}
fn default_target_cpu() -> i32 {
    70
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkerSpec {
    /// The job queue this Deployment works on.
    pub queue: QueueName,
    #[serde(default = "one")]
    #[schemars(range(min = 0))]
    pub replicas: i32,
    /// Jobs run at once per pod (default: embeddings 3, processing 2, analysis 1, default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 256))]
    pub concurrency: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
}

fn one() -> i32 {
    1
}

#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum QueueName {
    Processing,
    Embeddings,
    Analysis,
    Default,
}

impl QueueName {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueName::Processing => "processing",
            QueueName::Embeddings => "embeddings",
            QueueName::Analysis => "analysis",
            QueueName::Default => "default",
        }
    }

    /// Concurrency per pod from the production guide's Sidekiq weights.
    pub fn default_concurrency(self) -> i32 {
        match self {
            QueueName::Embeddings => 3,
            QueueName::Processing => 2,
            QueueName::Analysis | QueueName::Default => 1,
        }
    }
}

fn default_workers() -> Vec<WorkerSpec> {
    [
        QueueName::Embeddings,
        QueueName::Processing,
        QueueName::Analysis,
        QueueName::Default,
    ]
    .into_iter()
    .map(|queue| WorkerSpec {
        queue,
        replicas: 1,
        concurrency: None,
        resources: None,
    })
    .collect()
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceSpec {
    /// When VACUUM ANALYZE runs (cron).
    #[serde(default = "default_maintenance_schedule")]
    #[schemars(length(max = 100))]
    #[x_kube(validation = cron_rule("maintenance.schedule"))]
    pub schedule: String,
    #[serde(default = "yes")]
    pub vacuum_analyze: bool,
    /// REINDEX INDEX CONCURRENTLY of the vector and full-text indexes: Never, Weekly, or a cron schedule.
    #[serde(default = "default_reindex")]
    #[schemars(length(max = 100))]
    #[x_kube(validation = Rule::new(format!("self == 'Never' || self == 'Weekly' || self.matches('{CRON}')"))
        .message("maintenance.reindex must be Never, Weekly or a cron schedule"))]
    pub reindex: String,
    #[serde(default)]
    pub suspend: bool,
}

impl Default for MaintenanceSpec {
    fn default() -> Self {
        Self {
            schedule: default_maintenance_schedule(),
            vacuum_analyze: true,
            reindex: default_reindex(),
            suspend: false,
        }
    }
}

fn default_maintenance_schedule() -> String {
    "0 3 * * *".into()
}
fn default_reindex() -> String {
    "Weekly".into()
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// Run scheduled pg_dump backups.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// When backups run (cron).
    #[serde(default = "default_backup_schedule")]
    #[schemars(length(max = 100))]
    #[x_kube(validation = cron_rule("backup.schedule"))]
    pub schedule: String,
    /// Dumps older than this are deleted after each backup.
    #[serde(default = "default_retention")]
    #[schemars(range(min = 1, max = 3650))]
    pub retention_days: i32,
    /// The volume that holds the dumps.
    #[serde(default = "default_backup_storage")]
    pub storage: StorageSpec,
    #[serde(default)]
    pub suspend: bool,
}

impl Default for BackupSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            schedule: default_backup_schedule(),
            retention_days: default_retention(),
            storage: default_backup_storage(),
            suspend: false,
        }
    }
}

fn default_backup_schedule() -> String {
    "0 2 * * *".into()
}
fn default_retention() -> i32 {
    30
}
fn default_backup_storage() -> StorageSpec {
    StorageSpec {
        size: Quantity("20Gi".into()),
        storage_class_name: None,
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonitoringSpec {
    /// Create a ServiceMonitor (when the Prometheus Operator's CRD is installed).
    #[serde(default)]
    pub service_monitor: bool,
}

/// Observed state, written by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RagdollClusterStatus {
    /// Pending, Provisioning, Ready, Degraded or Paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Progressing, Degraded, DatabaseReady, MigrationsComplete, ApiReady, WorkersReady,
    /// LastBackupSucceeded.
    #[serde(default)]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Endpoints>,
    /// Ready and desired pods per queue.
    #[serde(default)]
    pub workers: Vec<WorkerStatus>,
    /// Ready/desired worker pods over all queues, e.g. "4/4".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers_ready: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup: Option<LastBackup>,
    /// Schema version reported by the last successful migration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<i64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
pub struct Endpoints {
    /// In-cluster URL of the HTTP API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    /// host:port of the database (without credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct WorkerStatus {
    pub queue: String,
    pub ready: i32,
    pub desired: i32,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct LastBackup {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// Succeeded or Failed.
    pub result: String,
}

/// The CRD as YAML, as `ragdoll-operator crd` prints it and the checked-in copies hold it.
pub fn crd_yaml() -> String {
    let crd = RagdollCluster::crd();
    let body =
        serde_norway::to_string(&crd).unwrap_or_else(|e| format!("# cannot render the CRD: {e}\n"));
    format!("# Generated from crds/src/lib.rs by `ragdoll-operator crd`; do not edit.\n{body}")
}

#[cfg(test)]
mod tests;

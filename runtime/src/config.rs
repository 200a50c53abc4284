//! Runtime configuration: every knob of the `ragdoll` binary, read from flags and `RAGDOLL_*`
//! environment variables by clap, with the same defaults available to library users and tests
//! through `Default`.

use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::queue::Queue;

/// Parses sizes such as `1048576`, `512KiB`, `100MiB`, `1GiB`, `10MB`.
pub fn parse_byte_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size (examples: 1048576, 512KiB, 100MiB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "ki" | "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mi" | "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gi" | "gib" => 1 << 30,
        other => return Err(format!("unknown size unit `{other}` in `{s}`")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size `{s}` is too large"))
}

#[derive(Args, Clone, Debug)]
pub struct DatabaseSettings {
    /// PostgreSQL URL, e.g. postgres://user:pass@host:5432/ragdoll
    #[arg(long = "database-url", env = "DATABASE_URL", hide_env_values = true)]
    pub url: String,
    /// Maximum connections in this process's pool.
    #[arg(
        long = "db-max-connections",
        env = "RAGDOLL_DB_MAX_CONNECTIONS",
        default_value_t = 20
    )]
    pub max_connections: u32,
    /// How long to keep retrying the first connection at start-up (seconds).
    #[arg(
        long = "db-connect-timeout",
        env = "RAGDOLL_DB_CONNECT_TIMEOUT_SECS",
        default_value_t = 60
    )]
    pub connect_timeout_secs: u64,
    /// libpq sslmode (disable, allow, prefer, require, verify-ca, verify-full) when the URL sets none.
    #[arg(long = "database-ssl-mode", env = "RAGDOLL_DATABASE_SSL_MODE")]
    pub ssl_mode: Option<String>,
}

impl DatabaseSettings {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 20,
            connect_timeout_secs: 60,
            ssl_mode: None,
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmbeddingProviderKind {
    /// Deterministic feature hashing: fast and offline, but lexical only (no semantics).
    Hash,
    /// all-MiniLM-L6-v2 in-process (384 dimensions): semantic, offline; needs RAGDOLL_MODEL_DIR.
    Local,
    /// Any OpenAI-compatible /v1/embeddings endpoint (OpenAI, Azure, Ollama, vLLM, TEI, LiteLLM).
    Openai,
}

#[derive(Args, Clone, Debug)]
pub struct EmbeddingSettings {
    /// Embedding provider (default: local when RAGDOLL_MODEL_DIR is set, else hash).
    #[arg(
        long = "embedding-provider",
        env = "RAGDOLL_EMBEDDING_PROVIDER",
        value_enum
    )]
    pub provider: Option<EmbeddingProviderKind>,
    /// Directory of the local model (config.json, tokenizer.json, model.safetensors); `make models` prints it.
    #[arg(long = "model-dir", env = "RAGDOLL_MODEL_DIR")]
    pub model_dir: Option<std::path::PathBuf>,
    /// Model name sent to the provider and stored with each chunk
    /// (default: `hash-v1` for hash, `text-embedding-3-small` for openai).
    #[arg(long = "embedding-model", env = "RAGDOLL_EMBEDDING_MODEL")]
    pub model: Option<String>,
    /// Vector dimensions. Fixed in the database at first migration; changing it later is refused.
    #[arg(long = "embedding-dimensions", env = "RAGDOLL_EMBEDDING_DIMENSIONS", default_value_t = 384,
          value_parser = clap::value_parser!(u32).range(1..=16000))]
    pub dimensions: u32,
    /// Base URL of an OpenAI-compatible API (the part before /embeddings).
    #[arg(
        long = "embedding-base-url",
        env = "RAGDOLL_EMBEDDING_BASE_URL",
        default_value = "https://api.openai.com/v1"
    )]
    pub base_url: String,
    /// API key for the embedding provider (sent as a Bearer token; never logged).
    #[arg(
        long = "embedding-api-key",
        env = "RAGDOLL_EMBEDDING_API_KEY",
        hide_env_values = true
    )]
    pub api_key: Option<String>,
    /// Texts per embedding request.
    #[arg(
        long = "embedding-batch-size",
        env = "RAGDOLL_EMBEDDING_BATCH_SIZE",
        default_value_t = 64
    )]
    pub batch_size: usize,
    /// Timeout of one embedding request (seconds).
    #[arg(
        long = "embedding-timeout",
        env = "RAGDOLL_EMBEDDING_TIMEOUT_SECS",
        default_value_t = 60
    )]
    pub timeout_secs: u64,
    /// Retries of one embedding request on 429/5xx/network errors (honouring Retry-After)
    /// before the job attempt fails; the job queue then retries the whole job.
    #[arg(
        long = "embedding-max-retries",
        env = "RAGDOLL_EMBEDDING_MAX_RETRIES",
        default_value_t = 3
    )]
    pub max_retries: u32,
}

impl Default for EmbeddingSettings {
    fn default() -> Self {
        Self {
            provider: Some(EmbeddingProviderKind::Hash),
            model_dir: None,
            model: None,
            dimensions: 384,
            base_url: "https://api.openai.com/v1".into(),
            api_key: None,
            batch_size: 64,
            timeout_secs: 60,
            max_retries: 3,
        }
    }
}

impl EmbeddingSettings {
    /// The provider in effect: as configured, else local when a model directory is given.
    pub fn provider(&self) -> EmbeddingProviderKind {
        self.provider.unwrap_or(if self.model_dir.is_some() {
            EmbeddingProviderKind::Local
        } else {
            EmbeddingProviderKind::Hash
        })
    }

    pub fn model_name(&self) -> String {
        match (&self.model, self.provider()) {
            (Some(m), _) => m.clone(),
            (None, EmbeddingProviderKind::Hash) => "hash-v1".into(),
            (None, EmbeddingProviderKind::Local) => crate::embed::local::MODEL_NAME.into(),
            (None, EmbeddingProviderKind::Openai) => "text-embedding-3-small".into(),
        }
    }
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }
}

/// Vector index parameters (HNSW, cosine). Used when the index is first built.
#[derive(Args, Clone, Debug)]
pub struct IndexSettings {
    /// HNSW `m` (max connections per layer).
    #[arg(long = "hnsw-m", env = "RAGDOLL_HNSW_M", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(2..=100))]
    pub m: u32,
    /// HNSW `ef_construction` (build-time candidate list size).
    #[arg(long = "hnsw-ef-construction", env = "RAGDOLL_HNSW_EF_CONSTRUCTION", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(4..=1000))]
    pub ef_construction: u32,
}

impl Default for IndexSettings {
    fn default() -> Self {
        Self {
            m: 16,
            ef_construction: 64,
        }
    }
}

#[derive(Args, Clone, Debug)]
pub struct IngestionSettings {
    /// Target chunk size in characters.
    #[arg(
        long = "chunk-size",
        env = "RAGDOLL_CHUNK_SIZE",
        default_value_t = 1000
    )]
    pub chunk_size: usize,
    /// Characters shared by consecutive chunks; must be smaller than the chunk size.
    #[arg(
        long = "chunk-overlap",
        env = "RAGDOLL_CHUNK_OVERLAP",
        default_value_t = 200
    )]
    pub chunk_overlap: usize,
    /// Largest accepted upload (bytes, or with a unit: 512KiB, 100MiB, 1GiB).
    #[arg(long = "max-file-size", env = "RAGDOLL_MAX_FILE_SIZE", default_value = "100MiB", value_parser = parse_byte_size)]
    pub max_file_size: u64,
    /// Document types accepted, comma-separated (all when empty): text, markdown, html, xml,
    /// pdf, docx, csv, json, yaml.
    #[arg(
        long = "allowed-file-types",
        env = "RAGDOLL_ALLOWED_FILE_TYPES",
        value_delimiter = ','
    )]
    pub allowed_file_types: Vec<crate::extract::DocumentType>,
    /// Largest amount of data an extractor may decompress from one file (zip-bomb guard).
    #[arg(long = "max-decompressed-size", env = "RAGDOLL_MAX_DECOMPRESSED_SIZE", default_value = "512MiB", value_parser = parse_byte_size)]
    pub max_decompressed_size: u64,
}

impl Default for IngestionSettings {
    fn default() -> Self {
        Self {
            chunk_size: 1000,
            chunk_overlap: 200,
            max_file_size: 100 << 20,
            allowed_file_types: Vec::new(),
            max_decompressed_size: 512 << 20,
        }
    }
}

#[derive(Args, Clone, Debug)]
pub struct QueueSettings {
    /// Attempts per job before it is marked failed.
    #[arg(long = "job-max-attempts", env = "RAGDOLL_JOB_MAX_ATTEMPTS", default_value_t = 3,
          value_parser = clap::value_parser!(i32).range(1..=100))]
    pub max_attempts: i32,
    /// A job whose worker stops heartbeating for this long is given to another worker (seconds).
    #[arg(
        long = "job-visibility-timeout",
        env = "RAGDOLL_JOB_VISIBILITY_TIMEOUT_SECS",
        default_value_t = 300
    )]
    pub visibility_timeout_secs: u64,
    /// Base of the exponential retry backoff (milliseconds); jitter is added.
    #[arg(
        long = "job-backoff-base-ms",
        env = "RAGDOLL_JOB_BACKOFF_BASE_MS",
        default_value_t = 2000
    )]
    pub backoff_base_ms: u64,
    /// Upper bound of one retry delay (milliseconds).
    #[arg(
        long = "job-backoff-max-ms",
        env = "RAGDOLL_JOB_BACKOFF_MAX_MS",
        default_value_t = 300_000
    )]
    pub backoff_max_ms: u64,
    /// Poll interval when no notification arrives (milliseconds).
    #[arg(
        long = "job-poll-interval-ms",
        env = "RAGDOLL_JOB_POLL_INTERVAL_MS",
        default_value_t = 1000
    )]
    pub poll_interval_ms: u64,
    /// On SIGTERM, how long running jobs may take to finish before they are released (seconds).
    #[arg(
        long = "shutdown-grace",
        env = "RAGDOLL_SHUTDOWN_GRACE_SECS",
        default_value_t = 20
    )]
    pub shutdown_grace_secs: u64,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            visibility_timeout_secs: 300,
            backoff_base_ms: 2000,
            backoff_max_ms: 300_000,
            poll_interval_ms: 1000,
            shutdown_grace_secs: 20,
        }
    }
}

impl QueueSettings {
    pub fn visibility_timeout(&self) -> Duration {
        Duration::from_secs(self.visibility_timeout_secs.max(1))
    }
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms.max(10))
    }
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }
}

/// Default worker concurrency per queue, as in the production guide (Sidekiq weights).
pub fn default_concurrency(queue: Queue) -> usize {
    match queue {
        Queue::Embeddings => 3,
        Queue::Processing => 2,
        Queue::Analysis => 1,
        Queue::Default => 1,
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Args, Clone, Debug)]
pub struct SearchSettings {
    /// Largest `limit` a search may ask for.
    #[arg(long = "search-max-results", env = "RAGDOLL_SEARCH_MAX_RESULTS", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_results: u32,
    /// Default minimum cosine similarity of semantic results (requests may override).
    #[arg(
        long = "similarity-threshold",
        env = "RAGDOLL_SIMILARITY_THRESHOLD",
        default_value_t = 0.7,
        allow_negative_numbers = true
    )]
    pub similarity_threshold: f32,
    /// HNSW candidate list size at query time (`hnsw.ef_search`); higher is more exact, slower.
    #[arg(long = "hnsw-ef-search", env = "RAGDOLL_HNSW_EF_SEARCH", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub ef_search: u32,
    /// PostgreSQL text search configuration for full-text search (applied by `ragdoll migrate`).
    #[arg(
        long = "text-search-config",
        env = "RAGDOLL_TEXT_SEARCH_CONFIG",
        default_value = "english"
    )]
    pub text_search_config: String,
    /// Reciprocal rank fusion constant k of hybrid search.
    #[arg(long = "rrf-k", env = "RAGDOLL_SEARCH_RRF_K", default_value_t = 60.0)]
    pub rrf_k: f64,
    /// Seconds a search result stays cached (0 disables the cache); any document change clears it.
    #[arg(
        long = "search-cache-ttl",
        env = "RAGDOLL_SEARCH_CACHE_TTL_SECS",
        default_value_t = 300
    )]
    pub cache_ttl_secs: u64,
    /// Most search results kept in the cache.
    #[arg(
        long = "search-cache-entries",
        env = "RAGDOLL_SEARCH_CACHE_MAX_ENTRIES",
        default_value_t = 10_000
    )]
    pub cache_max_entries: u64,
    /// Seconds a query embedding stays cached (0 disables the cache).
    #[arg(
        long = "embedding-cache-ttl",
        env = "RAGDOLL_EMBEDDING_CACHE_TTL_SECS",
        default_value_t = 3600
    )]
    pub embedding_cache_ttl_secs: u64,
    /// Most query embeddings kept in the cache (least recently used are evicted).
    #[arg(
        long = "embedding-cache-entries",
        env = "RAGDOLL_EMBEDDING_CACHE_MAX_ENTRIES",
        default_value_t = 10_000
    )]
    pub embedding_cache_max_entries: u64,
    /// Weight of the usage boost in ranking (0 = off): frequently and recently returned chunks rank higher.
    #[arg(
        long = "usage-boost",
        env = "RAGDOLL_SEARCH_USAGE_BOOST",
        default_value_t = 0.0
    )]
    pub usage_boost: f64,
    /// How often returned-chunk counters and tracked searches are written (milliseconds).
    #[arg(
        long = "usage-flush-interval-ms",
        env = "RAGDOLL_USAGE_FLUSH_INTERVAL_MS",
        default_value_t = 5000
    )]
    pub usage_flush_interval_ms: u64,
    /// Record every search (query, mode, filters, result count, top score, latency).
    #[arg(long = "track-searches", env = "RAGDOLL_TRACK_SEARCHES")]
    pub track_searches: bool,
    /// Days tracked searches are kept.
    #[arg(
        long = "search-retention-days",
        env = "RAGDOLL_SEARCH_RETENTION_DAYS",
        default_value_t = 30
    )]
    pub retention_days: u32,
    /// Longest query text embedded; longer queries are truncated at a character boundary.
    #[arg(
        long = "max-query-chars",
        env = "RAGDOLL_MAX_QUERY_CHARS",
        default_value_t = 2000
    )]
    pub max_query_chars: usize,
    /// Longest wait for a query embedding before the search answers 503 (milliseconds).
    #[arg(
        long = "query-embedding-timeout-ms",
        env = "RAGDOLL_QUERY_EMBEDDING_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub query_embedding_timeout_ms: u64,
}

impl Default for SearchSettings {
    fn default() -> Self {
        Self {
            max_results: 50,
            similarity_threshold: 0.7,
            ef_search: 100,
            text_search_config: "english".into(),
            rrf_k: 60.0,
            cache_ttl_secs: 300,
            cache_max_entries: 10_000,
            embedding_cache_ttl_secs: 3600,
            embedding_cache_max_entries: 10_000,
            usage_boost: 0.0,
            usage_flush_interval_ms: 5000,
            track_searches: false,
            retention_days: 30,
            max_query_chars: 2000,
            query_embedding_timeout_ms: 10_000,
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LlmProviderKind {
    /// No language model: extractive summaries and TF-IDF keywords.
    None,
    /// Any OpenAI-compatible /v1/chat/completions (OpenAI, Azure, Ollama, vLLM, OpenRouter, LiteLLM).
    Openai,
}

/// Language and media models for analysis: summaries, keywords, image descriptions, transcripts.
#[derive(Args, Clone, Debug)]
pub struct LlmSettings {
    /// LLM provider for summaries and keywords.
    #[arg(id = "llm-provider", long = "llm-provider", env = "RAGDOLL_LLM_PROVIDER", value_enum, default_value_t = LlmProviderKind::None)]
    pub provider: LlmProviderKind,
    /// Base URL of the OpenAI-compatible API (the part before /chat/completions).
    #[arg(
        id = "llm-base-url",
        long = "llm-base-url",
        env = "RAGDOLL_LLM_BASE_URL",
        default_value = "https://api.openai.com/v1"
    )]
    pub base_url: String,
    /// API key of the LLM provider (never logged).
    #[arg(
        id = "llm-api-key",
        long = "llm-api-key",
        env = "RAGDOLL_LLM_API_KEY",
        hide_env_values = true
    )]
    pub api_key: Option<String>,
    #[arg(
        id = "llm-summary-model",
        long = "summary-model",
        env = "RAGDOLL_SUMMARY_MODEL",
        default_value = "gpt-4o-mini"
    )]
    pub summary_model: String,
    #[arg(
        id = "llm-keywords-model",
        long = "keywords-model",
        env = "RAGDOLL_KEYWORDS_MODEL",
        default_value = "gpt-4o-mini"
    )]
    pub keywords_model: String,
    /// A vision-capable chat model that describes images (images get metadata only without it).
    #[arg(
        id = "llm-vision-model",
        long = "vision-model",
        env = "RAGDOLL_VISION_MODEL"
    )]
    pub vision_model: Option<String>,
    /// A transcription model for audio, e.g. whisper-1 (audio gets metadata only without it).
    #[arg(
        id = "llm-transcription-model",
        long = "transcription-model",
        env = "RAGDOLL_TRANSCRIPTION_MODEL"
    )]
    pub transcription_model: Option<String>,
    /// Timeout of one LLM request (seconds).
    #[arg(
        id = "llm-timeout",
        long = "llm-timeout",
        env = "RAGDOLL_LLM_TIMEOUT_SECS",
        default_value_t = 120
    )]
    pub timeout_secs: u64,
    /// Retries of one LLM request on 429/5xx/network errors.
    #[arg(
        id = "llm-max-retries",
        long = "llm-max-retries",
        env = "RAGDOLL_LLM_MAX_RETRIES",
        default_value_t = 3
    )]
    pub max_retries: u32,
    /// Documents shorter than this many characters get no summary.
    #[arg(
        id = "llm-summary-min-chars",
        long = "summary-min-chars",
        env = "RAGDOLL_SUMMARY_MIN_CHARS",
        default_value_t = 300
    )]
    pub summary_min_chars: usize,
    /// Keywords kept per document.
    #[arg(
        id = "llm-max-keywords",
        long = "max-keywords",
        env = "RAGDOLL_MAX_KEYWORDS",
        default_value_t = 20
    )]
    pub max_keywords: usize,
}

impl Default for LlmSettings {
    fn default() -> Self {
        Self {
            provider: LlmProviderKind::None,
            base_url: "https://api.openai.com/v1".into(),
            api_key: None,
            summary_model: "gpt-4o-mini".into(),
            keywords_model: "gpt-4o-mini".into(),
            vision_model: None,
            transcription_model: None,
            timeout_secs: 120,
            max_retries: 3,
            summary_min_chars: 300,
            max_keywords: 20,
        }
    }
}

//! Schema management: the SQL migrations embedded in the binary, plus the part of the schema that
//! depends on configuration — the embedding column pinned to `vector(D)` and its HNSW index —
//! recorded in `ragdoll_meta` so a process configured with another D is refused at start-up.

use serde::{Deserialize, Serialize};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::{AssertSqlSafe, PgPool};

pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

const META_KEY: &str = "embedding";
/// Serialises concurrent `ragdoll migrate` runs while the vector column is pinned.
const VECTOR_LOCK_ID: i64 = 0x7261_6764_6f6c_6c01;

/// What the database must look like for this process: the embedding dimension, the index shape
/// and the text search configuration of the full-text vector.
#[derive(Clone, Debug)]
pub struct VectorSchema {
    pub dimensions: u32,
    pub model: String,
    pub hnsw_m: u32,
    pub hnsw_ef_construction: u32,
    pub text_search_config: String,
}

fn english() -> String {
    "english".into()
}

/// What was recorded in the database when the vector column was pinned.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredVectorSchema {
    pub dimensions: u32,
    pub model: String,
    pub hnsw_m: u32,
    pub hnsw_ef_construction: u32,
    #[serde(default = "english")]
    pub text_search_config: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("migration failed: {0}")]
    Migrate(#[from] MigrateError),
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error(
        "embedding dimension mismatch: the database holds {stored}-dimensional vectors (model \
         `{model}`) but this process is configured for {configured} dimensions. Keep \
         RAGDOLL_EMBEDDING_DIMENSIONS={stored} to use the existing vectors, or run `ragdoll reembed` \
         with the new settings to rebuild every chunk vector in the background"
    )]
    DimensionMismatch {
        stored: u32,
        configured: u32,
        model: String,
    },
    #[error(
        "embedding model mismatch: the database's vectors come from `{stored}` but this process \
         is configured for `{configured}`; vectors of different models cannot be compared. Keep \
         RAGDOLL_EMBEDDING_MODEL={stored}, or run `ragdoll reembed` with the new settings to \
         rebuild every chunk vector in the background"
    )]
    ModelMismatch { stored: String, configured: String },
    #[error(
        "database schema is not current (latest applied migration: {applied}, this binary needs \
         {expected}); run `ragdoll migrate` (or start with --migrate)"
    )]
    NotMigrated { applied: String, expected: i64 },
    #[error(
        "the full-text index uses the `{stored}` text search configuration but this process is \
         configured for `{configured}`; run `ragdoll migrate` to switch (it rebuilds the \
         full-text vectors)"
    )]
    TextSearchConfigMismatch { stored: String, configured: String },
    #[error("unknown text search configuration `{0}` (see `SELECT cfgname FROM pg_ts_config`)")]
    UnknownTextSearchConfig(String),
    #[error("ragdoll_meta holds an unreadable `{META_KEY}` entry: {0}")]
    CorruptMeta(String),
}

/// The recorded vector schema, if any.
async fn read_meta(
    conn: &mut sqlx::PgConnection,
) -> Result<Option<StoredVectorSchema>, SchemaError> {
    let value: Option<serde_json::Value> =
        sqlx::query_scalar("SELECT value FROM ragdoll_meta WHERE key = $1")
            .bind(META_KEY)
            .fetch_optional(&mut *conn)
            .await?;
    value
        .map(|v| serde_json::from_value(v).map_err(|e| SchemaError::CorruptMeta(e.to_string())))
        .transpose()
}

/// Serialises changes of the vector schema between processes, for the transaction's duration.
async fn lock_vector_schema(tx: &mut sqlx::PgConnection) -> Result<(), SchemaError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(VECTOR_LOCK_ID)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

async fn write_meta(
    tx: &mut sqlx::PgConnection,
    stored: &StoredVectorSchema,
) -> Result<(), SchemaError> {
    let json = serde_json::to_value(stored).map_err(|e| SchemaError::CorruptMeta(e.to_string()))?;
    sqlx::query(
        "INSERT INTO ragdoll_meta (key, value) VALUES ($1, $2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = now()",
    )
    .bind(META_KEY)
    .bind(json)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// What `reembed` changed and queued.
#[derive(Debug, serde::Serialize, PartialEq, Eq)]
pub struct Reembed {
    pub from_model: String,
    pub from_dimensions: u32,
    pub to_model: String,
    pub to_dimensions: u32,
    /// Documents whose chunks are queued for new vectors.
    pub queued: i64,
}

/// Switches the database to another embedding model or dimension: pins the new dimension
/// (existing vectors are cleared when it changes, so full-text search keeps working while
/// semantic search fills up again), records the new model, and queues an `embed_document` job for
/// every document with extracted content. Workers with the new settings rebuild the vectors.
pub async fn reembed(
    pool: &PgPool,
    want: &VectorSchema,
    max_attempts: i32,
) -> Result<Reembed, SchemaError> {
    MIGRATOR.run(pool).await?;
    let mut tx = pool.begin().await?;
    lock_vector_schema(&mut tx).await?;
    let Some(mut stored) = read_meta(&mut tx).await? else {
        tx.rollback().await?;
        ensure_vector_column(pool, want).await?;
        return Ok(Reembed {
            from_model: want.model.clone(),
            from_dimensions: want.dimensions,
            to_model: want.model.clone(),
            to_dimensions: want.dimensions,
            queued: 0,
        });
    };
    let (from_model, from_dimensions) = (stored.model.clone(), stored.dimensions);
    if stored.dimensions != want.dimensions {
        sqlx::query("DROP INDEX IF EXISTS chunks_embedding_hnsw_idx")
            .execute(&mut *tx)
            .await?;
        // Only integers are interpolated.
        sqlx::query(AssertSqlSafe(format!(
            "ALTER TABLE chunks ALTER COLUMN embedding TYPE vector({}) USING NULL",
            want.dimensions
        )))
        .execute(&mut *tx)
        .await?;
        sqlx::query(AssertSqlSafe(format!(
            "CREATE INDEX chunks_embedding_hnsw_idx ON chunks USING hnsw (embedding vector_cosine_ops) \
             WITH (m = {}, ef_construction = {})",
            want.hnsw_m, want.hnsw_ef_construction
        )))
        .execute(&mut *tx)
        .await?;
        stored.hnsw_m = want.hnsw_m;
        stored.hnsw_ef_construction = want.hnsw_ef_construction;
    }
    stored.dimensions = want.dimensions;
    stored.model = want.model.clone();
    write_meta(&mut tx, &stored).await?;
    let queued = sqlx::query(
        "INSERT INTO jobs (queue, kind, payload, document_id, max_attempts) \
         SELECT 'embeddings', 'embed_document', jsonb_build_object('document_id', d.id), d.id, $1 \
         FROM documents d WHERE EXISTS (SELECT 1 FROM contents c WHERE c.document_id = d.id) \
         ON CONFLICT (document_id, kind) WHERE status = 'queued' AND document_id IS NOT NULL DO NOTHING",
    )
    .bind(max_attempts)
    .execute(&mut *tx)
    .await?
    .rows_affected() as i64;
    tx.commit().await?;
    tracing::info!(%from_model, to_model = %want.model, queued, "re-embedding queued");
    Ok(Reembed {
        from_model,
        from_dimensions,
        to_model: want.model.clone(),
        to_dimensions: want.dimensions,
        queued,
    })
}

/// The newest migration version embedded in this binary.
pub fn expected_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// Applies pending migrations, then pins the vector column and builds the HNSW index on first run.
pub async fn migrate(
    pool: &PgPool,
    want: &VectorSchema,
) -> Result<StoredVectorSchema, SchemaError> {
    MIGRATOR.run(pool).await?;
    ensure_vector_column(pool, want).await
}

/// Verifies that migrations are applied and the vector column matches; never changes anything.
pub async fn check(pool: &PgPool, want: &VectorSchema) -> Result<StoredVectorSchema, SchemaError> {
    let applied = applied_version(pool).await?;
    let expected = expected_version();
    if applied != Some(expected) {
        return Err(SchemaError::NotMigrated {
            applied: applied.map_or_else(|| "none".to_string(), |v| v.to_string()),
            expected,
        });
    }
    match stored_vector_schema(pool).await? {
        Some(stored) => compare(stored, want),
        None => Err(SchemaError::NotMigrated {
            applied: format!("{expected} (vector column not pinned)"),
            expected,
        }),
    }
}

/// The newest successfully applied migration, if the migrations table exists.
pub async fn applied_version(pool: &PgPool) -> Result<Option<i64>, sqlx::Error> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await?;
    if !exists {
        return Ok(None);
    }
    sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
        .fetch_one(pool)
        .await
}

pub async fn stored_vector_schema(
    pool: &PgPool,
) -> Result<Option<StoredVectorSchema>, SchemaError> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('ragdoll_meta') IS NOT NULL")
        .fetch_one(pool)
        .await?;
    if !exists {
        return Ok(None);
    }
    read_meta(&mut *pool.acquire().await?).await
}

fn compare(
    stored: StoredVectorSchema,
    want: &VectorSchema,
) -> Result<StoredVectorSchema, SchemaError> {
    if stored.dimensions != want.dimensions {
        return Err(SchemaError::DimensionMismatch {
            stored: stored.dimensions,
            configured: want.dimensions,
            model: stored.model,
        });
    }
    if stored.model != want.model {
        return Err(SchemaError::ModelMismatch {
            stored: stored.model,
            configured: want.model.clone(),
        });
    }
    if stored.text_search_config != want.text_search_config {
        return Err(SchemaError::TextSearchConfigMismatch {
            stored: stored.text_search_config,
            configured: want.text_search_config.clone(),
        });
    }
    Ok(stored)
}

/// Regenerates the full-text vectors with `config` (a table rewrite) when it differs.
async fn apply_text_search_config(
    tx: &mut sqlx::PgConnection,
    config: &str,
) -> Result<(), SchemaError> {
    let known: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_ts_config WHERE cfgname = $1)")
            .bind(config)
            .fetch_one(&mut *tx)
            .await?;
    // The name is interpolated below, so it must be a plain identifier that exists.
    if !known
        || !config
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(SchemaError::UnknownTextSearchConfig(config.to_string()));
    }
    sqlx::query(AssertSqlSafe(format!(
        "ALTER TABLE chunks ALTER COLUMN content_tsv SET EXPRESSION AS \
         (to_tsvector('{config}'::regconfig, content))"
    )))
    .execute(&mut *tx)
    .await?;
    // Keyword vectors exist once migration 0003 ran (it always has by the time this runs).
    sqlx::query(
        "UPDATE documents SET keywords_tsv = to_tsvector($1::regconfig, array_to_string(keywords, ' ')) \
         WHERE keywords <> '{}'",
    )
    .bind(config)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn ensure_vector_column(
    pool: &PgPool,
    want: &VectorSchema,
) -> Result<StoredVectorSchema, SchemaError> {
    let mut tx = pool.begin().await?;
    lock_vector_schema(&mut tx).await?;
    if let Some(mut stored) = read_meta(&mut tx).await? {
        if stored.dimensions == want.dimensions
            && stored.model == want.model
            && stored.text_search_config != want.text_search_config
        {
            apply_text_search_config(&mut tx, &want.text_search_config).await?;
            tracing::info!(from = %stored.text_search_config, to = %want.text_search_config,
                "rebuilt full-text vectors with a new text search configuration");
            stored.text_search_config = want.text_search_config.clone();
            write_meta(&mut tx, &stored).await?;
        }
        tx.commit().await?;
        return compare(stored, want);
    }
    if want.text_search_config != "english" {
        apply_text_search_config(&mut tx, &want.text_search_config).await?;
    }
    // Only integers are interpolated; identifiers are constants.
    sqlx::query(AssertSqlSafe(format!(
        "ALTER TABLE chunks ALTER COLUMN embedding TYPE vector({})",
        want.dimensions
    )))
    .execute(&mut *tx)
    .await?;
    sqlx::query(AssertSqlSafe(format!(
        "CREATE INDEX IF NOT EXISTS chunks_embedding_hnsw_idx ON chunks \
         USING hnsw (embedding vector_cosine_ops) WITH (m = {}, ef_construction = {})",
        want.hnsw_m, want.hnsw_ef_construction
    )))
    .execute(&mut *tx)
    .await?;
    let stored = StoredVectorSchema {
        dimensions: want.dimensions,
        model: want.model.clone(),
        hnsw_m: want.hnsw_m,
        hnsw_ef_construction: want.hnsw_ef_construction,
        text_search_config: want.text_search_config.clone(),
    };
    write_meta(&mut tx, &stored).await?;
    tx.commit().await?;
    tracing::info!(
        dimensions = want.dimensions,
        m = want.hnsw_m,
        ef_construction = want.hnsw_ef_construction,
        "pinned embedding column and built HNSW index"
    );
    Ok(stored)
}

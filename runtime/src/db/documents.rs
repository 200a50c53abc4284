//! The document repository: create (with duplicate detection and the first job, atomically),
//! read, list with cursor pagination, update, delete, reprocess, and the writes the pipeline
//! makes as a document moves through extraction, embedding and analysis.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::extract::DocumentType;
use crate::queue::{self, NewJob, Queue};

pub const KIND_PROCESS: &str = "process_document";
pub const KIND_EMBED: &str = "embed_document";
pub const KIND_ANALYZE: &str = "analyze_document";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Processing,
    Processed,
    Failed,
}

impl Status {
    pub const ALL: [Status; 4] = [
        Status::Pending,
        Status::Processing,
        Status::Processed,
        Status::Failed,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Processing => "processing",
            Status::Processed => "processed",
            Status::Failed => "failed",
        }
    }
}

impl std::str::FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                format!("unknown status `{s}` (known: pending, processing, processed, failed)")
            })
    }
}

/// A document as stored (without its bytes).
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Document {
    pub id: Uuid,
    pub location: String,
    pub title: String,
    pub document_type: String,
    pub mime_type: String,
    pub content_hash: String,
    pub byte_size: i64,
    pub status: String,
    pub error: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: Value,
    pub summary: Option<String>,
    pub keywords: Vec<String>,
    pub analysis_status: String,
    pub analysis_note: Option<String>,
    /// How summary and keywords were made: `extractive` or `llm:<model>`.
    pub analysis_method: Option<String>,
    pub chunk_count: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub processed_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, location, title, document_type, mime_type, content_hash, byte_size, \
    status, error, metadata, summary, keywords, analysis_status, analysis_note, analysis_method, chunk_count, \
    created_at, updated_at, processed_at";

pub struct NewDocument {
    pub location: Option<String>,
    pub title: Option<String>,
    pub document_type: DocumentType,
    pub bytes: Vec<u8>,
    pub metadata: Map<String, Value>,
    /// Store even when a document with the same content already exists.
    pub force: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    New { id: Uuid },
    Duplicate { id: Uuid, status: String },
}

pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The title a document gets from its location until extraction finds a better one.
pub fn default_title(location: &str) -> String {
    let name = location.rsplit(['/', '\\']).next().unwrap_or(location);
    let stem = std::path::Path::new(name)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or(name);
    if stem.trim().is_empty() {
        "Untitled".into()
    } else {
        stem.to_string()
    }
}

/// Stores the document and its bytes and queues its processing, in one transaction. The same
/// content uploaded again returns the existing document unless `force` is set.
pub async fn create(
    pool: &PgPool,
    doc: NewDocument,
    max_attempts: i32,
) -> Result<Created, sqlx::Error> {
    let hash = content_hash(&doc.bytes);
    let mut tx = pool.begin().await?;
    if !doc.force {
        // Serialise uploads of the same content so two concurrent ones cannot both be "new".
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(&hash)
            .execute(&mut *tx)
            .await?;
        let existing: Option<(Uuid, String)> = sqlx::query_as(
            "SELECT id, status FROM documents WHERE content_hash = $1 ORDER BY created_at LIMIT 1",
        )
        .bind(&hash)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((id, status)) = existing {
            tx.rollback().await?;
            return Ok(Created::Duplicate { id, status });
        }
    }
    let id = Uuid::now_v7();
    let location = doc.location.unwrap_or_else(|| format!("inline:{id}"));
    let title = doc.title.unwrap_or_else(|| default_title(&location));
    sqlx::query(
        "INSERT INTO documents (id, location, title, document_type, mime_type, content_hash, \
             byte_size, metadata) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(id)
    .bind(&location)
    .bind(&title)
    .bind(doc.document_type.as_str())
    .bind(crate::extract::mime_type_of(doc.document_type, &doc.bytes))
    .bind(&hash)
    .bind(doc.bytes.len() as i64)
    .bind(Value::Object(doc.metadata))
    .execute(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO document_blobs (document_id, bytes) VALUES ($1, $2)")
        .bind(id)
        .bind(&doc.bytes)
        .execute(&mut *tx)
        .await?;
    queue::enqueue(
        &mut *tx,
        &job(KIND_PROCESS, Queue::Processing, id, max_attempts),
    )
    .await?;
    tx.commit().await?;
    Ok(Created::New { id })
}

pub fn job(kind: &'static str, queue: Queue, document_id: Uuid, max_attempts: i32) -> NewJob {
    NewJob {
        queue,
        kind,
        payload: serde_json::json!({ "document_id": document_id }),
        document_id: Some(document_id),
        max_attempts,
    }
}

pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<Document>, sqlx::Error> {
    sqlx::query_as::<_, Document>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM documents WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await
}

#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub status: Option<Status>,
    pub document_type: Option<DocumentType>,
    /// Return documents older than this id (ids are time-ordered UUIDv7).
    pub before: Option<Uuid>,
    pub limit: i64,
}

/// Newest first; the last id of a page is the cursor of the next.
pub async fn list(pool: &PgPool, f: &ListFilter) -> Result<Vec<Document>, sqlx::Error> {
    sqlx::query_as::<_, Document>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM documents \
         WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR document_type = $2) \
           AND ($3::uuid IS NULL OR id < $3) \
         ORDER BY id DESC LIMIT $4"
    )))
    .bind(f.status.map(Status::as_str))
    .bind(f.document_type.map(DocumentType::as_str))
    .bind(f.before)
    .bind(f.limit)
    .fetch_all(pool)
    .await
}

/// Sets the title and/or replaces the metadata object.
pub async fn update(
    pool: &PgPool,
    id: Uuid,
    title: Option<&str>,
    metadata: Option<&Map<String, Value>>,
) -> Result<Option<Document>, sqlx::Error> {
    sqlx::query_as::<_, Document>(sqlx::AssertSqlSafe(format!(
        "UPDATE documents SET title = coalesce($2, title), metadata = coalesce($3, metadata), \
             updated_at = now() WHERE id = $1 RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(title)
    .bind(metadata.map(|m| Value::Object(m.clone())))
    .fetch_optional(pool)
    .await
}

/// Deletes the document with its bytes, contents, chunks and jobs (cascade).
pub async fn delete(pool: &PgPool, id: Uuid) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("DELETE FROM documents WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Starts the pipeline again from the stored bytes.
pub async fn reprocess(pool: &PgPool, id: Uuid, max_attempts: i32) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let r = sqlx::query(
        "UPDATE documents SET status = 'pending', error = NULL, updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    if r.rows_affected() == 0 {
        return Ok(false);
    }
    queue::enqueue(
        &mut *tx,
        &job(KIND_PROCESS, Queue::Processing, id, max_attempts),
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

// ---- pipeline writes ----------------------------------------------------------------------

/// What the processing stage needs: type, location and the original bytes.
pub async fn load_source(
    pool: &PgPool,
    id: Uuid,
) -> Result<Option<(String, String, Vec<u8>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT d.document_type, d.location, b.bytes FROM documents d \
         JOIN document_blobs b ON b.document_id = d.id WHERE d.id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
}

pub async fn set_processing(pool: &PgPool, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE documents SET status = 'processing', error = NULL, updated_at = now() \
         WHERE id = $1 AND status <> 'processing'",
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

/// Stores extracted text, adopts the extracted title when the document still has its default
/// one, records extraction facts under `metadata.extraction`, and queues embedding. Returns
/// false if the document was deleted meanwhile.
/// Stores what a document says — its extracted text, an image's description (`kind` image) or a
/// recording's transcript (`kind` audio) — with the extraction facts, and queues embedding.
#[allow(clippy::too_many_arguments)]
pub async fn store_text(
    pool: &PgPool,
    id: Uuid,
    kind: &str,
    text: &str,
    title: Option<&str>,
    extraction: &Map<String, Value>,
    max_attempts: i32,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let location: Option<String> =
        sqlx::query_scalar("SELECT location FROM documents WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(location) = location else {
        return Ok(false);
    };
    sqlx::query(
        "UPDATE documents SET \
             title = CASE WHEN $2::text IS NOT NULL AND title = $3 THEN $2 ELSE title END, \
             metadata = jsonb_set(metadata, '{extraction}', $4), updated_at = now() \
         WHERE id = $1",
    )
    .bind(id)
    .bind(title)
    .bind(default_title(&location))
    .bind(Value::Object(extraction.clone()))
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO contents (document_id, kind, content) VALUES ($1, $3, $2) \
         ON CONFLICT (document_id, kind) DO UPDATE SET content = excluded.content, updated_at = now()",
    )
    .bind(id)
    .bind(text)
    .bind(kind)
    .execute(&mut *tx)
    .await?;
    queue::enqueue(
        &mut *tx,
        &job(KIND_EMBED, Queue::Embeddings, id, max_attempts),
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// What a document says: its extracted text, image description or transcript.
pub async fn load_text(pool: &PgPool, id: Uuid) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT content FROM contents WHERE document_id = $1 \
         ORDER BY CASE kind WHEN 'text' THEN 0 ELSE 1 END LIMIT 1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// Finishes a document that has facts but no searchable content (an image or recording while no
/// vision or transcription model is configured): processed, no chunks, and `note` saying why.
/// Returns the document type, or `None` if it was deleted meanwhile.
pub async fn finish_without_content(
    pool: &PgPool,
    id: Uuid,
    extraction: &Map<String, Value>,
    note: &str,
) -> Result<Option<String>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let Some(document_type) = lock_document(&mut tx, id).await? else {
        return Ok(None);
    };
    for table in ["chunks", "contents"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE document_id = $1"
        )))
        .bind(id)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "UPDATE documents SET status = 'processed', error = NULL, chunk_count = 0, \
             metadata = jsonb_set(metadata, '{extraction}', $2), summary = NULL, keywords = '{}', \
             keywords_tsv = ''::tsvector, analysis_status = 'skipped', analysis_note = $3, \
             analysis_method = NULL, processed_at = now(), updated_at = now() \
         WHERE id = $1",
    )
    .bind(id)
    .bind(Value::Object(extraction.clone()))
    .bind(note)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(document_type))
}

/// Replaces all chunks of a document in one transaction (so running it twice never duplicates
/// chunks), marks the document processed and queues analysis. Returns the document type, or
/// `None` if the document was deleted meanwhile.
pub async fn replace_chunks(
    pool: &PgPool,
    id: Uuid,
    chunks: &[String],
    vectors: Vec<Vec<f32>>,
    model: &str,
    max_attempts: i32,
) -> Result<Option<String>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let Some(document_type) = lock_document(&mut tx, id).await? else {
        return Ok(None);
    };
    sqlx::query("DELETE FROM chunks WHERE document_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let indexes: Vec<i32> = (0..chunks.len() as i32).collect();
    let vectors: Vec<pgvector::Vector> = vectors.into_iter().map(pgvector::Vector::from).collect();
    sqlx::query(
        "INSERT INTO chunks (document_id, chunk_index, content, embedding, embedding_model) \
         SELECT $1, u.idx, u.content, u.embedding, $5 \
         FROM unnest($2::int4[], $3::text[], $4::vector[]) AS u(idx, content, embedding)",
    )
    .bind(id)
    .bind(&indexes)
    .bind(chunks)
    .bind(&vectors)
    .bind(model)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE documents SET status = 'processed', error = NULL, chunk_count = $2, \
             processed_at = now(), updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(chunks.len() as i32)
    .execute(&mut *tx)
    .await?;
    queue::enqueue(
        &mut *tx,
        &job(KIND_ANALYZE, Queue::Analysis, id, max_attempts),
    )
    .await?;
    tx.commit().await?;
    Ok(Some(document_type))
}

/// Locks the document row; returns its type, or `None` if it no longer exists.
async fn lock_document(tx: &mut PgConnection, id: Uuid) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT document_type FROM documents WHERE id = $1 FOR UPDATE")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
}

/// Marks the document failed with `error`; returns its type (`None` if it was deleted).
pub async fn mark_failed(
    pool: &PgPool,
    id: Uuid,
    error: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE documents SET status = 'failed', error = $2, updated_at = now() WHERE id = $1 \
         RETURNING document_type",
    )
    .bind(id)
    .bind(error)
    .fetch_optional(pool)
    .await
}

pub async fn record_analysis(
    pool: &PgPool,
    id: Uuid,
    status: &str,
    note: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE documents SET analysis_status = $2, analysis_note = $3, updated_at = now() \
         WHERE id = $1",
    )
    .bind(id)
    .bind(status)
    .bind(note)
    .execute(pool)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_titles() {
        assert_eq!(default_title("/data/reports/q3-summary.pdf"), "q3-summary");
        assert_eq!(default_title("C:\\docs\\notes.txt"), "notes");
        assert_eq!(default_title("inline:123"), "inline:123");
        assert_eq!(default_title(""), "Untitled");
    }

    #[test]
    fn hash_is_sha256_hex() {
        assert_eq!(
            content_hash(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}

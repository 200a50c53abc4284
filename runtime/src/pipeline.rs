//! The ingestion pipeline as job handlers: `process_document` (extract text from the stored
//! bytes) → `embed_document` (chunk, embed in batches, replace the chunks) → `analyze_document`
//! (summary and keywords; recorded as skipped while no LLM provider exists). Every stage is
//! idempotent, so a job that runs twice leaves the same state.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

use crate::chunk::Chunker;
use crate::db::documents::{self, KIND_ANALYZE, KIND_EMBED, KIND_PROCESS};
use crate::embed::{self, EmbedError, Embedder};
use crate::extract::{self, DocumentType, Limits};
use crate::queue::Job;
use crate::queue::worker::{JobError, JobHandler};

pub const ANALYSIS_NOT_CONFIGURED: &str =
    "analysis: not configured — no LLM provider is set, so no summary or keywords were generated";

pub struct Pipeline {
    pub pool: PgPool,
    pub analyzer: crate::analysis::Analyzer,
    /// Describes images when a vision model is configured.
    pub vision: Option<crate::providers::chat::Chat>,
    /// Transcribes audio when a transcription model is configured.
    pub transcriber: Option<crate::providers::transcribe::Transcriber>,
    pub embedder: Arc<dyn Embedder>,
    pub chunker: Chunker,
    pub limits: Limits,
    pub max_attempts: i32,
    /// Longest an extractor may run on one document.
    pub extract_timeout: Duration,
}

impl Pipeline {
    async fn process(&self, id: Uuid) -> Result<(), JobError> {
        let Some((doc_type, _location, bytes)) = documents::load_source(&self.pool, id).await?
        else {
            tracing::info!("document was deleted; nothing to process");
            return Ok(());
        };
        documents::set_processing(&self.pool, id).await?;
        let doc_type: DocumentType = doc_type.parse().map_err(JobError::Permanent)?;
        let limits = self.limits;
        let started = std::time::Instant::now();
        let task = tokio::task::spawn_blocking(move || extract::extract(doc_type, &bytes, limits));
        let extracted = tokio::time::timeout(self.extract_timeout, task)
            .await
            .map_err(|_| {
                JobError::Permanent(format!(
                    "extracting text from the {doc_type} took longer than {}s",
                    self.extract_timeout.as_secs()
                ))
            })?
            .map_err(|e| JobError::Permanent(format!("the {doc_type} extractor crashed: {e}")))?
            .map_err(|e| JobError::Permanent(e.to_string()))?;
        let mut facts = extracted.metadata;
        facts.insert("characters".into(), extracted.text.chars().count().into());
        facts.insert(
            "elapsed_ms".into(),
            (started.elapsed().as_millis() as u64).into(),
        );
        documents::store_text(
            &self.pool,
            id,
            &extracted.text,
            extracted.title.as_deref(),
            &facts,
            self.max_attempts,
        )
        .await?;
        Ok(())
    }

    async fn embed(&self, id: Uuid) -> Result<(), JobError> {
        let Some(text) = documents::load_text(&self.pool, id).await? else {
            return match documents::get(&self.pool, id).await? {
                None => Ok(()),
                Some(_) => Err(JobError::Permanent(
                    "no extracted text is stored for this document; reprocess it".into(),
                )),
            };
        };
        let chunks: Vec<String> = self
            .chunker
            .split(&text)
            .into_iter()
            .map(String::from)
            .collect();
        if chunks.is_empty() {
            return Err(JobError::Permanent("the extracted text is empty".into()));
        }
        let vectors = embed::embed_all(self.embedder.as_ref(), &chunks, "text")
            .await
            .map_err(|e| match e {
                EmbedError::Unavailable(_) => JobError::Retryable(e.to_string()),
                EmbedError::Rejected(_) | EmbedError::Config(_) => {
                    JobError::Permanent(e.to_string())
                }
            })?;
        let stored = documents::replace_chunks(
            &self.pool,
            id,
            &chunks,
            vectors,
            self.embedder.model(),
            self.max_attempts,
        )
        .await?;
        match stored {
            Some(document_type) => {
                tracing::info!(chunks = chunks.len(), "document processed");
                processed_metric(&document_type, "processed");
            }
            None => tracing::info!("document was deleted while embedding; chunks discarded"),
        }
        Ok(())
    }

    async fn analyze(&self, id: Uuid) -> Result<(), JobError> {
        self.analyzer.analyze(&self.pool, id).await
    }
}

impl JobHandler for Pipeline {
    async fn handle(&self, job: &Job) -> Result<(), JobError> {
        let kind = job.kind.as_str();
        if ![KIND_PROCESS, KIND_EMBED, KIND_ANALYZE].contains(&kind) {
            return Err(JobError::Permanent(format!("unknown job kind `{kind}`")));
        }
        let id = job
            .document_id
            .ok_or_else(|| JobError::Permanent(format!("job {} names no document", job.id)))?;
        match kind {
            KIND_PROCESS => self.process(id).await,
            KIND_EMBED => self.embed(id).await,
            _ => self.analyze(id).await,
        }
    }

    async fn on_failed(&self, job: &Job, error: &str) {
        let Some(id) = job.document_id else { return };
        let stage = match job.kind.as_str() {
            KIND_PROCESS => "extraction",
            KIND_EMBED => "embedding",
            KIND_ANALYZE => {
                let r = documents::record_analysis(&self.pool, id, "failed", Some(error)).await;
                if let Err(e) = r {
                    tracing::error!(error = %e, document = %id, "could not record the failed analysis");
                }
                return;
            }
            _ => return,
        };
        let result = documents::mark_failed(&self.pool, id, &format!("{stage} failed: {error}"))
            .await
            .map(|t| {
                if let Some(t) = t {
                    processed_metric(&t, "failed");
                }
            });
        if let Err(e) = result {
            tracing::error!(error = %e, document = %id, "could not record the failure on the document");
        }
    }
}

fn processed_metric(document_type: &str, status: &str) {
    crate::metrics::metrics()
        .documents_processed
        .with_label_values(&[document_type, status])
        .inc();
}

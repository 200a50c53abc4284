//! The ingestion pipeline as job handlers: `process_document` (extract text from the stored
//! bytes) → `embed_document` (chunk, embed in batches, replace the chunks) → `analyze_document`
//! (summary and keywords). Images and audio are measured and, with a vision or transcription
//! model, described or transcribed into searchable text; without one they finish with metadata
//! only and a note saying so. Every stage is idempotent, so a job that runs twice leaves the
//! same state.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

use crate::chunk::Chunker;
use crate::db::documents::{self, KIND_ANALYZE, KIND_EMBED, KIND_PROCESS};
use crate::embed::{self, EmbedError, Embedder};
use crate::extract::{self, DocumentType, ExtractError, Limits, media};
use crate::queue::Job;
use crate::queue::worker::{JobError, JobHandler};

/// Shown on images while no vision model is configured.
pub const IMAGE_NOT_CONFIGURED: &str = "analysis: not configured — no vision model is set \
     (RAGDOLL_VISION_MODEL), so this image has metadata only and no searchable description";
/// Shown on recordings while no transcription model is configured.
pub const AUDIO_NOT_CONFIGURED: &str = "analysis: not configured — no transcription model is set \
     (RAGDOLL_TRANSCRIPTION_MODEL), so this recording has metadata only and no searchable transcript";

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
        match doc_type {
            DocumentType::Image => self.process_image(id, bytes).await,
            DocumentType::Audio => self.process_audio(id, bytes).await,
            _ => self.process_text(id, doc_type, bytes).await,
        }
    }

    /// Runs CPU-bound reading of a document's bytes off the async threads, within the
    /// extraction time limit; every failure is permanent (the bytes will not change).
    async fn read_bytes<T: Send + 'static>(
        &self,
        doc_type: DocumentType,
        read: impl FnOnce() -> Result<T, ExtractError> + Send + 'static,
    ) -> Result<T, JobError> {
        tokio::time::timeout(self.extract_timeout, tokio::task::spawn_blocking(read))
            .await
            .map_err(|_| {
                JobError::Permanent(format!(
                    "reading the {doc_type} took longer than {}s",
                    self.extract_timeout.as_secs()
                ))
            })?
            .map_err(|e| JobError::Permanent(format!("the {doc_type} reader crashed: {e}")))?
            .map_err(|e| JobError::Permanent(e.to_string()))
    }

    async fn process_text(
        &self,
        id: Uuid,
        doc_type: DocumentType,
        bytes: Vec<u8>,
    ) -> Result<(), JobError> {
        let limits = self.limits;
        let started = std::time::Instant::now();
        let extracted = self
            .read_bytes(doc_type, move || extract::extract(doc_type, &bytes, limits))
            .await?;
        let mut facts = extracted.metadata;
        facts.insert("characters".into(), extracted.text.chars().count().into());
        facts.insert("elapsed_ms".into(), elapsed_ms(started).into());
        documents::store_text(
            &self.pool,
            id,
            "text",
            &extracted.text,
            extracted.title.as_deref(),
            &facts,
            self.max_attempts,
        )
        .await?;
        Ok(())
    }

    /// Images: format and dimensions always; a description from the vision model (which then
    /// becomes the searchable content) when one is configured.
    async fn process_image(&self, id: Uuid, bytes: Vec<u8>) -> Result<(), JobError> {
        let (info, bytes) = self
            .read_bytes(DocumentType::Image, move || {
                media::image_info(&bytes).map(|info| (info, bytes))
            })
            .await?;
        let mut facts = info.metadata();
        let Some((chat, model)) = self
            .vision
            .as_ref()
            .and_then(|c| c.vision_model.as_deref().map(|m| (c, m)))
        else {
            return self
                .finish_without_content(id, &facts, IMAGE_NOT_CONFIGURED)
                .await;
        };
        let started = std::time::Instant::now();
        let description = chat
            .describe_image(model, &bytes, info.mime_type)
            .await
            .map_err(|e| e.into_job_error("vision"))?;
        facts.insert("described_by".into(), model.into());
        facts.insert("characters".into(), description.chars().count().into());
        facts.insert("elapsed_ms".into(), elapsed_ms(started).into());
        documents::store_text(
            &self.pool,
            id,
            "image",
            &description,
            None,
            &facts,
            self.max_attempts,
        )
        .await?;
        Ok(())
    }

    /// Audio: duration and sample rate always; a transcript from the transcription model (which
    /// then becomes the searchable content) when one is configured.
    async fn process_audio(&self, id: Uuid, bytes: Vec<u8>) -> Result<(), JobError> {
        let (info, bytes) = self
            .read_bytes(DocumentType::Audio, move || {
                media::audio_info(&bytes).map(|info| (info, bytes))
            })
            .await?;
        let mut facts = info.metadata();
        let Some(transcriber) = &self.transcriber else {
            return self
                .finish_without_content(id, &facts, AUDIO_NOT_CONFIGURED)
                .await;
        };
        let mime = extract::mime_type_of(DocumentType::Audio, &bytes);
        // Transcription APIs tell formats apart by the file name's extension.
        let filename = format!("{id}.{}", audio_extension(&mime));
        let started = std::time::Instant::now();
        let transcript = transcriber
            .transcribe(&bytes, &filename, &mime)
            .await
            .map_err(|e| e.into_job_error("transcription"))?;
        facts.insert("transcribed_by".into(), transcriber.model.clone().into());
        facts.insert("characters".into(), transcript.chars().count().into());
        facts.insert("elapsed_ms".into(), elapsed_ms(started).into());
        documents::store_text(
            &self.pool,
            id,
            "audio",
            &transcript,
            None,
            &facts,
            self.max_attempts,
        )
        .await?;
        Ok(())
    }

    async fn finish_without_content(
        &self,
        id: Uuid,
        facts: &serde_json::Map<String, serde_json::Value>,
        note: &str,
    ) -> Result<(), JobError> {
        if let Some(document_type) =
            documents::finish_without_content(&self.pool, id, facts, note).await?
        {
            tracing::info!(note, "document processed without searchable content");
            processed_metric(&document_type, "processed");
        }
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

fn elapsed_ms(started: std::time::Instant) -> u64 {
    started.elapsed().as_millis() as u64
}

/// The file extension transcription APIs expect for an audio MIME type.
fn audio_extension(mime: &str) -> &'static str {
    match mime {
        "audio/mpeg" => "mp3",
        "audio/mp4" => "m4a",
        "audio/ogg" | "audio/opus" => "ogg",
        "audio/flac" => "flac",
        _ => "wav",
    }
}

fn processed_metric(document_type: &str, status: &str) {
    crate::metrics::metrics()
        .documents_processed
        .with_label_values(&[document_type, status])
        .inc();
}

//! Embedding providers behind one batched trait: `hash` (offline, lexical) and `openai` (any
//! OpenAI-compatible `/v1/embeddings`). A provider either returns one finite vector of the
//! configured dimension per input, or an error — never a made-up vector.

pub mod hash;
pub mod local;
pub mod openai;

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::config::{EmbeddingProviderKind, EmbeddingSettings};

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// Worth retrying later: timeouts, connection errors, 429, 5xx.
    #[error("embedding provider unavailable: {0}")]
    Unavailable(String),
    /// Will not get better by retrying: bad credentials, bad request, wrong dimension.
    #[error("embedding provider error: {0}")]
    Rejected(String),
    #[error("invalid embedding configuration: {0}")]
    Config(String),
}

pub trait Embedder: Send + Sync {
    /// Model name stored with each chunk.
    fn model(&self) -> &str;
    fn dimensions(&self) -> usize;
    /// Texts per provider call.
    fn batch_size(&self) -> usize;
    /// Embeds one batch; the result has exactly one vector per input, in order.
    fn embed_batch<'a>(
        &'a self,
        texts: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>>;
}

/// Embeds any number of texts in provider-sized batches, validating every vector. Each provider
/// call is timed in `ragdoll_embedding_generation_seconds{model, content_type}`.
pub async fn embed_all(
    embedder: &dyn Embedder,
    texts: &[String],
    content_type: &str,
) -> Result<Vec<Vec<f32>>, EmbedError> {
    let mut out = Vec::with_capacity(texts.len());
    for batch in texts.chunks(embedder.batch_size().max(1)) {
        let started = std::time::Instant::now();
        let result = embedder.embed_batch(batch).await;
        crate::metrics::metrics()
            .embedding_generation
            .with_label_values(&[embedder.model(), content_type])
            .observe(started.elapsed().as_secs_f64());
        let vectors = result?;
        validate(embedder, batch.len(), &vectors)?;
        out.extend(vectors);
    }
    Ok(out)
}

fn validate(
    embedder: &dyn Embedder,
    expected: usize,
    vectors: &[Vec<f32>],
) -> Result<(), EmbedError> {
    if vectors.len() != expected {
        return Err(EmbedError::Rejected(format!(
            "asked for {expected} embeddings, got {}",
            vectors.len()
        )));
    }
    for v in vectors {
        if v.len() != embedder.dimensions() {
            return Err(EmbedError::Rejected(format!(
                "model `{}` returned {}-dimensional vectors but {} dimensions are configured \
                 (RAGDOLL_EMBEDDING_DIMENSIONS)",
                embedder.model(),
                v.len(),
                embedder.dimensions()
            )));
        }
        if v.iter().any(|x| !x.is_finite()) {
            return Err(EmbedError::Rejected(
                "provider returned a non-finite value".into(),
            ));
        }
    }
    Ok(())
}

/// Builds the configured provider.
pub fn from_settings(settings: &EmbeddingSettings) -> Result<Arc<dyn Embedder>, EmbedError> {
    let dims = settings.dimensions as usize;
    match settings.provider() {
        EmbeddingProviderKind::Hash => Ok(Arc::new(hash::HashEmbedder::new(
            settings.model_name(),
            dims,
        ))),
        EmbeddingProviderKind::Openai => Ok(Arc::new(openai::OpenAiEmbedder::new(settings)?)),
        EmbeddingProviderKind::Local => {
            if dims != local::DIMENSIONS {
                return Err(EmbedError::Config(format!(
                    "the local model produces {} dimensions; set RAGDOLL_EMBEDDING_DIMENSIONS={}",
                    local::DIMENSIONS,
                    local::DIMENSIONS
                )));
            }
            let dir = settings.model_dir.as_deref().ok_or_else(|| {
                EmbedError::Config(
                    "the local provider needs RAGDOLL_MODEL_DIR (run `make models`)".into(),
                )
            })?;
            Ok(Arc::new(local::LocalEmbedder::load(
                dir,
                settings.model_name(),
                32,
            )?))
        }
    }
}

//! The `openai` embedder: any OpenAI-compatible `POST {base}/embeddings` (OpenAI, Azure via base
//! URL, Ollama, vLLM, TEI, LiteLLM), batched, over the shared provider client (timeouts, retries
//! honouring Retry-After, clear errors).

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::{EmbedError, Embedder};
use crate::config::EmbeddingSettings;
use crate::providers::{CallError, Endpoint};

pub struct OpenAiEmbedder {
    endpoint: Endpoint,
    model: String,
    dims: usize,
    batch_size: usize,
}

#[derive(Serialize)]
struct Request<'a> {
    model: &'a str,
    input: &'a [String],
    encoding_format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<usize>,
}

#[derive(Deserialize)]
struct Response {
    data: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    index: usize,
    embedding: Vec<f32>,
}

impl OpenAiEmbedder {
    pub fn new(settings: &EmbeddingSettings) -> Result<Self, EmbedError> {
        let endpoint = Endpoint::new(
            &settings.base_url,
            settings.api_key.clone(),
            settings.timeout(),
            settings.max_retries,
            "RAGDOLL_EMBEDDING_API_KEY",
        )
        .map_err(|e| EmbedError::Config(format!("RAGDOLL_EMBEDDING_BASE_URL: {e}")))?;
        Ok(Self {
            endpoint,
            model: settings.model_name(),
            dims: settings.dimensions as usize,
            batch_size: settings.batch_size.max(1),
        })
    }

    /// OpenAI's text-embedding-3 models can shorten their output; other servers may reject the
    /// parameter, so it is only sent to those models.
    fn dimensions_param(&self) -> Option<usize> {
        self.model
            .starts_with("text-embedding-3")
            .then_some(self.dims)
    }

    async fn call(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let body = Request {
            model: &self.model,
            input: texts,
            encoding_format: "float",
            dimensions: self.dimensions_param(),
        };
        let bytes = self
            .endpoint
            .post_json("/embeddings", &body)
            .await
            .map_err(|e| match e {
                CallError::Unavailable(m) => EmbedError::Unavailable(m),
                CallError::Rejected(m) => EmbedError::Rejected(m),
            })?;
        parse_response(&bytes, texts.len())
    }
}

fn parse_response(bytes: &[u8], expected: usize) -> Result<Vec<Vec<f32>>, EmbedError> {
    let mut resp: Response = serde_json::from_slice(bytes).map_err(|e| {
        EmbedError::Unavailable(format!(
            "provider returned a body that is not an embeddings response: {e}"
        ))
    })?;
    resp.data.sort_by_key(|i| i.index);
    let indices_ok = resp
        .data
        .iter()
        .enumerate()
        .all(|(pos, item)| pos == item.index);
    if resp.data.len() != expected || !indices_ok {
        return Err(EmbedError::Rejected(format!(
            "asked for {expected} embeddings, got {} (indices must be 0..{expected})",
            resp.data.len()
        )));
    }
    Ok(resp.data.into_iter().map(|i| i.embedding).collect())
}

impl Embedder for OpenAiEmbedder {
    fn model(&self) -> &str {
        &self.model
    }
    fn dimensions(&self) -> usize {
        self.dims
    }
    fn batch_size(&self) -> usize {
        self.batch_size
    }
    fn embed_batch<'a>(
        &'a self,
        texts: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
        Box::pin(self.call(texts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_parsing_orders_by_index_and_checks_count() {
        let body = br#"{"object":"list","data":[{"object":"embedding","index":1,"embedding":[2.0]},
            {"object":"embedding","index":0,"embedding":[1.0]}],"model":"m","usage":{"prompt_tokens":2,"total_tokens":2}}"#;
        assert_eq!(parse_response(body, 2).unwrap(), vec![vec![1.0], vec![2.0]]);
        assert!(matches!(
            parse_response(body, 3),
            Err(EmbedError::Rejected(_))
        ));
        assert!(matches!(
            parse_response(b"<html>", 1),
            Err(EmbedError::Unavailable(_))
        ));
    }
}

//! The `openai` embedder: any OpenAI-compatible `POST {base}/embeddings` (OpenAI, Azure via base
//! URL, Ollama, vLLM, TEI, LiteLLM). Batched requests, a timeout per request, retries on
//! 408/429/5xx and network errors honouring `Retry-After` / `retry-after-ms`, and clear errors for
//! everything else.

use std::time::Duration;

use futures::future::BoxFuture;
use rand::Rng;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};

use super::{EmbedError, Embedder};
use crate::config::EmbeddingSettings;

/// Longest `Retry-After` we wait inside one job attempt; longer waits go back to the job queue.
const MAX_INLINE_WAIT: Duration = Duration::from_secs(60);

pub struct OpenAiEmbedder {
    client: reqwest::Client,
    url: String,
    api_key: Option<String>,
    model: String,
    dims: usize,
    batch_size: usize,
    max_retries: u32,
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

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    message: String,
}

impl OpenAiEmbedder {
    pub fn new(settings: &EmbeddingSettings) -> Result<Self, EmbedError> {
        let base = settings.base_url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(EmbedError::Config(format!(
                "RAGDOLL_EMBEDDING_BASE_URL must be an http(s) URL, got `{base}`"
            )));
        }
        let client = crate::http::client_builder()
            .timeout(settings.timeout())
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("ragdoll/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| EmbedError::Config(format!("cannot build HTTP client: {e}")))?;
        Ok(Self {
            client,
            url: format!("{base}/embeddings"),
            api_key: settings.api_key.clone().filter(|k| !k.is_empty()),
            model: settings.model_name(),
            dims: settings.dimensions as usize,
            batch_size: settings.batch_size.max(1),
            max_retries: settings.max_retries,
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
        let mut attempt = 0u32;
        loop {
            let mut req = self.client.post(&self.url).json(&body);
            if let Some(key) = &self.api_key {
                req = req.bearer_auth(key);
            }
            let (retryable, wait, message) = match req.send().await {
                Err(e) => (true, None, describe_transport_error(&e)),
                Ok(resp) => {
                    let status = resp.status();
                    let wait = retry_after(resp.headers());
                    if status.is_success() {
                        let bytes = resp.bytes().await.map_err(|e| {
                            EmbedError::Unavailable(format!("reading response: {e}"))
                        })?;
                        return parse_response(&bytes, texts.len());
                    }
                    let text = resp.text().await.unwrap_or_default();
                    let detail = serde_json::from_str::<ErrorBody>(&text)
                        .map(|b| b.error.message)
                        .unwrap_or_else(|_| text.chars().take(300).collect());
                    let retryable = status == StatusCode::TOO_MANY_REQUESTS
                        || status == StatusCode::REQUEST_TIMEOUT
                        || status.is_server_error();
                    let hint = if status == StatusCode::UNAUTHORIZED {
                        " (check RAGDOLL_EMBEDDING_API_KEY)"
                    } else {
                        ""
                    };
                    (
                        retryable,
                        wait,
                        format!("HTTP {status} from {}: {detail}{hint}", self.url),
                    )
                }
            };
            if !retryable {
                return Err(EmbedError::Rejected(message));
            }
            if attempt >= self.max_retries {
                return Err(EmbedError::Unavailable(format!(
                    "{message} (after {} attempts)",
                    attempt + 1
                )));
            }
            let delay = wait.unwrap_or_else(|| {
                let base = Duration::from_millis(500) * 2u32.pow(attempt.min(6));
                base.mul_f64(rand::rng().random_range(0.5..=1.0))
            });
            if delay > MAX_INLINE_WAIT {
                return Err(EmbedError::Unavailable(format!(
                    "{message} (provider asked to wait {}s)",
                    delay.as_secs()
                )));
            }
            tracing::warn!(attempt = attempt + 1, delay_ms = delay.as_millis() as u64, error = %message,
                "embedding request failed; retrying");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }
}

fn describe_transport_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        format!("request timed out: {e}")
    } else if e.is_connect() {
        format!("cannot connect: {e}")
    } else {
        format!("request failed: {e}")
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

/// `retry-after-ms` (OpenAI/Azure) or `Retry-After` in seconds or as an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
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
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(250)));
        let mut h = HeaderMap::new();
        h.insert(
            "retry-after",
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
    }

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

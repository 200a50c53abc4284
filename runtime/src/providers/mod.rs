//! OpenAI-compatible HTTP providers (OpenAI, Azure via base URL, Ollama, vLLM, OpenRouter,
//! LiteLLM, TEI): one client with timeouts and retries on 408/429/5xx and network errors that
//! honours `Retry-After` / `retry-after-ms`, shared by embeddings, chat (summaries, keywords,
//! image descriptions) and audio transcription.

pub mod chat;
pub mod transcribe;

use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde::Deserialize;

/// Longest `Retry-After` waited inside one call; longer waits go back to the job queue.
const MAX_INLINE_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CallError {
    /// Worth retrying later (timeouts, connection errors, 408/429/5xx, unreadable answers).
    #[error("{0}")]
    Unavailable(String),
    /// Will not get better by retrying (bad credentials, bad request, unusable answer).
    #[error("{0}")]
    Rejected(String),
}

impl CallError {
    /// The queue's view of a provider failure: unavailable providers are retried later, a
    /// rejection fails the job. `what` names the provider in the message (LLM, vision…).
    pub fn into_job_error(self, what: &str) -> crate::queue::worker::JobError {
        use crate::queue::worker::JobError;
        match self {
            CallError::Unavailable(m) => {
                JobError::Retryable(format!("{what} provider unavailable: {m}"))
            }
            CallError::Rejected(m) => JobError::Permanent(format!("{what} provider error: {m}")),
        }
    }
}

/// An OpenAI-compatible API: base URL, optional key, retry policy.
#[derive(Clone)]
pub struct Endpoint {
    client: reqwest::Client,
    base: String,
    api_key: Option<String>,
    max_retries: u32,
    /// The variable holding the key, named in 401 errors.
    key_variable: &'static str,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    message: String,
}

impl Endpoint {
    pub fn new(
        base: &str,
        api_key: Option<String>,
        timeout: Duration,
        max_retries: u32,
        key_variable: &'static str,
    ) -> Result<Self, String> {
        let base = base.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(format!("the base URL must be an http(s) URL, got `{base}`"));
        }
        let client = crate::http::client_builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("ragdoll/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build HTTP client: {e}"))?;
        Ok(Self {
            client,
            base: base.to_string(),
            api_key: api_key.filter(|k| !k.is_empty()),
            max_retries,
            key_variable,
        })
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post_json<T: serde::Serialize + ?Sized>(
        &self,
        path: &str,
        body: &T,
    ) -> Result<Bytes, CallError> {
        let url = self.url(path);
        self.send(&url, || self.client.post(&url).json(body)).await
    }

    /// Sends the request `build` makes (once per attempt) and returns the body of a 2xx answer.
    pub async fn send(
        &self,
        url: &str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Bytes, CallError> {
        let mut attempt = 0u32;
        loop {
            let mut req = build();
            if let Some(key) = &self.api_key {
                req = req.bearer_auth(key);
            }
            let (retryable, wait, message) = match req.send().await {
                Err(e) => (true, None, describe_transport_error(&e)),
                Ok(resp) => {
                    let status = resp.status();
                    let wait = retry_after(resp.headers());
                    if status.is_success() {
                        return resp.bytes().await.map_err(|e| {
                            CallError::Unavailable(format!("reading the answer of {url}: {e}"))
                        });
                    }
                    let text = resp.text().await.unwrap_or_default();
                    let detail = serde_json::from_str::<ErrorBody>(&text)
                        .map(|b| b.error.message)
                        .unwrap_or_else(|_| text.chars().take(300).collect());
                    let retryable = status == StatusCode::TOO_MANY_REQUESTS
                        || status == StatusCode::REQUEST_TIMEOUT
                        || status.is_server_error();
                    let hint = if status == StatusCode::UNAUTHORIZED {
                        format!(" (check {})", self.key_variable)
                    } else {
                        String::new()
                    };
                    (
                        retryable,
                        wait,
                        format!("HTTP {status} from {url}: {detail}{hint}"),
                    )
                }
            };
            if !retryable {
                return Err(CallError::Rejected(message));
            }
            if attempt >= self.max_retries {
                return Err(CallError::Unavailable(format!(
                    "{message} (after {} attempts)",
                    attempt + 1
                )));
            }
            let delay = wait.unwrap_or_else(|| {
                let base = Duration::from_millis(500) * 2u32.pow(attempt.min(6));
                base.mul_f64(rand::rng().random_range(0.5..=1.0))
            });
            if delay > MAX_INLINE_WAIT {
                return Err(CallError::Unavailable(format!(
                    "{message} (the provider asked to wait {}s)",
                    delay.as_secs()
                )));
            }
            tracing::warn!(attempt = attempt + 1, delay_ms = delay.as_millis() as u64, error = %message, "provider request failed; retrying");
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

/// `retry-after-ms` (OpenAI/Azure) or `Retry-After` in seconds or as an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
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
    fn base_urls_are_checked() {
        assert!(Endpoint::new("ftp://x", None, Duration::from_secs(1), 0, "K").is_err());
        let e = Endpoint::new("http://h:1/v1/", None, Duration::from_secs(1), 0, "K").unwrap();
        assert_eq!(e.url("/chat/completions"), "http://h:1/v1/chat/completions");
    }
}

//! A small HTTP client for the runtime's API, used by the CLI (`ingest`, `status`). Errors carry
//! the server's problem+json `detail`.

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach {url}: {source}")]
    Transport { url: String, source: reqwest::Error },
    #[error("HTTP {status}: {detail}")]
    Api { status: StatusCode, detail: String },
    #[error("unexpected response: {0}")]
    Decode(String),
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

#[derive(Clone)]
pub struct Client {
    base: String,
    key: Option<String>,
    http: reqwest::Client,
}

#[derive(Debug, Deserialize)]
pub struct Created {
    pub id: Uuid,
    pub status: String,
    pub duplicate: bool,
}

/// The fields of a document the CLI shows.
#[derive(Debug, Deserialize, Clone)]
pub struct DocumentView {
    pub id: Uuid,
    pub title: String,
    pub location: String,
    pub document_type: String,
    pub status: String,
    pub error: Option<String>,
    pub chunk_count: i32,
    pub analysis_status: String,
    #[serde(default)]
    pub analysis_note: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Page {
    documents: Vec<DocumentView>,
    next_cursor: Option<Uuid>,
}

impl Client {
    pub fn new(base: &str, key: Option<String>) -> Result<Self, ClientError> {
        let http = crate::http::client_builder()
            .timeout(Duration::from_secs(300))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ClientError::Transport {
                url: base.into(),
                source: e,
            })?;
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            key: key.filter(|k| !k.is_empty()),
            http,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<reqwest::Response, ClientError> {
        let req = match &self.key {
            Some(k) => req.bearer_auth(k),
            None => req,
        };
        let resp = req.send().await.map_err(|e| ClientError::Transport {
            url: url.to_string(),
            source: e,
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let detail = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("detail").and_then(Value::as_str).map(String::from))
            .unwrap_or(text);
        Err(ClientError::Api { status, detail })
    }

    async fn json<T: serde::de::DeserializeOwned>(
        resp: reqwest::Response,
    ) -> Result<T, ClientError> {
        resp.json()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// Uploads a file; its path is sent as the document's location.
    pub async fn upload(&self, path: &Path, force: bool) -> Result<Created, ClientError> {
        let bytes = tokio::fs::read(path).await.map_err(|e| ClientError::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("upload")
            .to_string();
        let form = reqwest::multipart::Form::new()
            .part(
                "file",
                reqwest::multipart::Part::bytes(bytes).file_name(name),
            )
            .text("location", path.display().to_string());
        let url = self.url(if force {
            "/v1/documents?force=true"
        } else {
            "/v1/documents"
        });
        let resp = self
            .send(self.http.post(&url).multipart(form), &url)
            .await?;
        Self::json(resp).await
    }

    pub async fn document(&self, id: Uuid) -> Result<DocumentView, ClientError> {
        let url = self.url(&format!("/v1/documents/{id}"));
        let resp = self.send(self.http.get(&url), &url).await?;
        Self::json(resp).await
    }

    /// POSTs a JSON body to `path` and returns the JSON answer.
    pub async fn post_json(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        let url = self.url(path);
        let resp = self.send(self.http.post(&url).json(body), &url).await?;
        Self::json(resp).await
    }

    /// All documents, newest first, following the cursor.
    pub async fn all_documents(&self) -> Result<Vec<DocumentView>, ClientError> {
        let mut out = Vec::new();
        let mut cursor: Option<Uuid> = None;
        loop {
            let mut url = self.url("/v1/documents?limit=500");
            if let Some(c) = cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let resp = self.send(self.http.get(&url), &url).await?;
            let page: Page = Self::json(resp).await?;
            out.extend(page.documents);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => return Ok(out),
            }
        }
    }
}

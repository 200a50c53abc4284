//! A local HTTP server speaking the OpenAI embeddings wire format (`POST /v1/embeddings`), with
//! scripted failures. It is the only mock in the suite: it stands in for a paid outside API.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use ragdoll::embed::hash::HashEmbedder;
use serde_json::{Value, json};

/// What the server does with one request.
#[derive(Clone, Debug)]
pub enum Reply {
    Ok,
    Status(u16),
    /// 429 with `Retry-After: <secs>`.
    RateLimited(u64),
    Garbage,
    WrongDimensions,
    Delay(Duration),
}

#[derive(Default)]
pub struct MockState {
    /// Replies for the next requests, in order; when empty, `default` applies.
    pub script: VecDeque<Reply>,
    pub default: Option<Reply>,
    pub requests: Vec<Value>,
    pub auth_headers: Vec<Option<String>>,
    /// The same for /v1/chat/completions and /v1/audio/transcriptions.
    pub chat_script: VecDeque<Reply>,
    pub chat_requests: Vec<Value>,
    /// What the chat model answers when asked for keywords (a JSON array as text).
    pub keywords_answer: String,
    pub vision_answer: String,
    pub transcript: String,
    /// Multipart fields of transcription requests: (name, file name, length or text value).
    pub transcription_requests: Vec<Vec<(String, Option<String>, String)>>,
}

#[derive(Clone)]
pub struct OpenAiMock {
    pub base_url: String,
    pub state: Arc<Mutex<MockState>>,
    dims: usize,
}

impl OpenAiMock {
    pub async fn start(dims: usize) -> OpenAiMock {
        let state = Arc::new(Mutex::new(MockState::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind mock");
        let base_url = format!("http://{}/v1", listener.local_addr().expect("addr"));
        {
            let mut s = state.lock().expect("lock");
            s.keywords_answer = r#"["photovoltaics", "Grid Storage", "wind"]"#.into();
            s.vision_answer = "A red bicycle leaning against a brick wall.".into();
            s.transcript = "Welcome to the quarterly earnings call about wind farms.".into();
        }
        let app = axum::Router::new()
            .route("/v1/embeddings", post(embeddings))
            .route("/v1/chat/completions", post(chat))
            .route("/v1/audio/transcriptions", post(transcriptions))
            .with_state((state.clone(), dims));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        OpenAiMock {
            base_url,
            state,
            dims,
        }
    }

    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.lock().expect("lock").script.extend(replies);
    }

    pub fn set_default(&self, reply: Reply) {
        self.state.lock().expect("lock").default = Some(reply);
    }

    pub fn request_count(&self) -> usize {
        self.state.lock().expect("lock").requests.len()
    }

    pub fn requests(&self) -> Vec<Value> {
        self.state.lock().expect("lock").requests.clone()
    }

    pub fn auth_headers(&self) -> Vec<Option<String>> {
        self.state.lock().expect("lock").auth_headers.clone()
    }

    pub fn dims(&self) -> usize {
        self.dims
    }

    pub fn chat_script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.lock().expect("lock").chat_script.extend(replies);
    }

    pub fn chat_requests(&self) -> Vec<Value> {
        self.state.lock().expect("lock").chat_requests.clone()
    }

    pub fn transcription_requests(&self) -> Vec<Vec<(String, Option<String>, String)>> {
        self.state
            .lock()
            .expect("lock")
            .transcription_requests
            .clone()
    }
}

/// Applies a scripted failure; `None` means answer normally.
async fn scripted(reply: Reply) -> Option<Response> {
    match reply {
        Reply::Ok | Reply::WrongDimensions => None,
        Reply::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Some(error(status, "scripted failure"))
        }
        Reply::RateLimited(secs) => {
            let mut resp = error(StatusCode::TOO_MANY_REQUESTS, "Rate limit reached");
            resp.headers_mut()
                .insert("retry-after", secs.to_string().parse().expect("header"));
            Some(resp)
        }
        Reply::Garbage => Some((StatusCode::OK, "<html>oops</html>").into_response()),
        Reply::Delay(d) => {
            tokio::time::sleep(d).await;
            None
        }
    }
}

async fn chat(
    State((state, _)): State<(Arc<Mutex<MockState>>, usize)>,
    Json(body): Json<Value>,
) -> Response {
    let (reply, keywords, vision) = {
        let mut s = state.lock().expect("lock");
        s.chat_requests.push(body.clone());
        (
            s.chat_script.pop_front().unwrap_or(Reply::Ok),
            s.keywords_answer.clone(),
            s.vision_answer.clone(),
        )
    };
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    if body["model"].as_str().is_none()
        || messages.len() != 2
        || messages[0]["role"] != "system"
        || messages[1]["role"] != "user"
    {
        return error(
            StatusCode::BAD_REQUEST,
            "expected model and a system + user message",
        );
    }
    if let Some(resp) = scripted(reply).await {
        return resp;
    }
    let system = messages[0]["content"].as_str().unwrap_or_default();
    let content = if system.contains("keywords") {
        keywords
    } else if messages[1]["content"].is_array() {
        vision
    } else {
        let text = messages[1]["content"].as_str().unwrap_or_default();
        format!("Summary: {}", text.chars().take(60).collect::<String>())
    };
    Json(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
    }))
    .into_response()
}

async fn transcriptions(
    State((state, _)): State<(Arc<Mutex<MockState>>, usize)>,
    mut form: axum::extract::Multipart,
) -> Response {
    let mut fields = Vec::new();
    while let Ok(Some(field)) = form.next_field().await {
        let name = field.name().unwrap_or_default().to_string();
        let file = field.file_name().map(String::from);
        let bytes = field.bytes().await.unwrap_or_default();
        let value = if file.is_some() {
            bytes.len().to_string()
        } else {
            String::from_utf8_lossy(&bytes).to_string()
        };
        fields.push((name, file, value));
    }
    let (reply, transcript) = {
        let mut s = state.lock().expect("lock");
        s.transcription_requests.push(fields.clone());
        (
            s.chat_script.pop_front().unwrap_or(Reply::Ok),
            s.transcript.clone(),
        )
    };
    if !fields.iter().any(|(n, f, _)| n == "file" && f.is_some())
        || !fields.iter().any(|(n, _, _)| n == "model")
    {
        return error(StatusCode::BAD_REQUEST, "expected multipart file and model");
    }
    if let Some(resp) = scripted(reply).await {
        return resp;
    }
    Json(json!({"text": transcript})).into_response()
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"message": message, "type": "server_error", "param": null, "code": null}})),
    )
        .into_response()
}

async fn embeddings(
    State((state, dims)): State<(Arc<Mutex<MockState>>, usize)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let reply = {
        let mut s = state.lock().expect("lock");
        s.requests.push(body.clone());
        s.auth_headers.push(
            headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(String::from),
        );
        s.script
            .pop_front()
            .or_else(|| s.default.clone())
            .unwrap_or(Reply::Ok)
    };
    // The real API rejects malformed requests; so do we.
    let Some(inputs) = body["input"].as_array() else {
        return error(
            StatusCode::BAD_REQUEST,
            "'input' must be an array of strings",
        );
    };
    if body["model"].as_str().is_none() || inputs.iter().any(|i| !i.is_string()) {
        return error(StatusCode::BAD_REQUEST, "invalid request");
    }
    let mut out_dims = dims;
    match reply {
        Reply::Ok => {}
        Reply::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return error(status, "scripted failure");
        }
        Reply::RateLimited(secs) => {
            let mut resp = error(StatusCode::TOO_MANY_REQUESTS, "Rate limit reached");
            resp.headers_mut()
                .insert("retry-after", secs.to_string().parse().expect("header"));
            return resp;
        }
        Reply::Garbage => return (StatusCode::OK, "<html>oops</html>").into_response(),
        Reply::WrongDimensions => out_dims = dims + 1,
        Reply::Delay(d) => tokio::time::sleep(d).await,
    }
    let model = body["model"].as_str().unwrap_or_default().to_string();
    let embedder = HashEmbedder::new(model.clone(), out_dims);
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({"object": "embedding", "index": i,
                   "embedding": embedder.embed_one(t.as_str().unwrap_or_default())})
        })
        .collect();
    Json(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": inputs.len(), "total_tokens": inputs.len()}
    }))
    .into_response()
}

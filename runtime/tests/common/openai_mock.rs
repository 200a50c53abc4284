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
        let app = axum::Router::new()
            .route("/v1/embeddings", post(embeddings))
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

//! Audio transcription (`POST {base}/audio/transcriptions`, multipart `file` + `model`, as
//! OpenAI's Whisper API): the transcript becomes the audio document's searchable text.

use serde::Deserialize;

use super::{CallError, Endpoint};

#[derive(Clone)]
pub struct Transcriber {
    pub endpoint: Endpoint,
    pub model: String,
}

#[derive(Deserialize)]
struct Response {
    text: String,
}

impl Transcriber {
    pub async fn transcribe(
        &self,
        bytes: &[u8],
        filename: &str,
        mime: &str,
    ) -> Result<String, CallError> {
        let url = self.endpoint.url("/audio/transcriptions");
        let body = self
            .endpoint
            .send(&url, || {
                let part = reqwest::multipart::Part::bytes(bytes.to_vec())
                    .file_name(filename.to_string())
                    .mime_str(mime)
                    .unwrap_or_else(|_| {
                        reqwest::multipart::Part::bytes(bytes.to_vec())
                            .file_name(filename.to_string())
                    });
                let form = reqwest::multipart::Form::new()
                    .part("file", part)
                    .text("model", self.model.clone())
                    .text("response_format", "json");
                self.endpoint.client().post(&url).multipart(form)
            })
            .await?;
        let resp: Response = serde_json::from_slice(&body).map_err(|e| {
            CallError::Unavailable(format!(
                "the transcription provider returned a body that is not a transcription: {e}"
            ))
        })?;
        let text = resp.text.trim().to_string();
        if text.is_empty() {
            return Err(CallError::Rejected(format!(
                "model `{}` heard no speech",
                self.model
            )));
        }
        Ok(text)
    }
}

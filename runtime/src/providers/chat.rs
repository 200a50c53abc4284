//! Chat completions (`POST {base}/chat/completions`) for analysis: a document summary, its
//! keywords (a real list), and — with a vision-capable model — a description of an image, which
//! then becomes the image's searchable text.

use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{CallError, Endpoint};

/// Text sent for analysis is capped (models have context limits; the start carries the gist).
pub const MAX_INPUT_CHARS: usize = 12_000;

#[derive(Clone)]
pub struct Chat {
    pub endpoint: Endpoint,
    pub summary_model: String,
    pub keywords_model: String,
    pub vision_model: Option<String>,
}

#[derive(Deserialize)]
struct Response {
    choices: Vec<Choice>,
}

#[derive(Deserialize)]
struct Choice {
    message: Message,
}

#[derive(Deserialize)]
struct Message {
    content: Option<String>,
}

fn clip(text: &str) -> &str {
    match text.char_indices().nth(MAX_INPUT_CHARS) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

impl Chat {
    async fn complete(
        &self,
        model: &str,
        system: &str,
        user: Value,
        max_tokens: u32,
    ) -> Result<String, CallError> {
        let body = json!({
            "model": model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "temperature": 0.2,
            "max_tokens": max_tokens,
        });
        let bytes = self.endpoint.post_json("/chat/completions", &body).await?;
        let resp: Response = serde_json::from_slice(&bytes).map_err(|e| {
            CallError::Unavailable(format!(
                "the chat provider returned a body that is not a chat completion: {e}"
            ))
        })?;
        let content = resp
            .choices
            .into_iter()
            .next()
            .and_then(|c| c.message.content)
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                CallError::Rejected(format!("model `{model}` returned an empty answer"))
            })?;
        Ok(content)
    }

    pub async fn summarize(&self, text: &str) -> Result<String, CallError> {
        self.complete(
            &self.summary_model,
            "You summarise documents. Reply with the summary only: at most three sentences, about 300 characters, in the document's language.",
            Value::String(clip(text).to_string()),
            300,
        )
        .await
    }

    pub async fn keywords(&self, text: &str, max: usize) -> Result<Vec<String>, CallError> {
        let system = format!(
            "You extract keywords. Reply with a JSON array of at most {max} keywords or short key phrases \
             (lower case, most important first) and nothing else."
        );
        let answer = self
            .complete(
                &self.keywords_model,
                &system,
                Value::String(clip(text).to_string()),
                200,
            )
            .await?;
        let list = parse_keywords(&answer, max);
        if list.is_empty() {
            return Err(CallError::Rejected(format!(
                "model `{}` returned no keywords",
                self.keywords_model
            )));
        }
        Ok(list)
    }

    /// Describes an image for search with the vision-capable `model`.
    pub async fn describe_image(
        &self,
        model: &str,
        bytes: &[u8],
        mime: &str,
    ) -> Result<String, CallError> {
        let data = base64::engine::general_purpose::STANDARD.encode(bytes);
        let user = json!([
            {"type": "text", "text": "Describe this image for a search index: what it shows, any visible text, and notable details. Plain prose, at most 120 words."},
            {"type": "image_url", "image_url": {"url": format!("data:{mime};base64,{data}")}},
        ]);
        self.complete(
            model,
            "You describe images precisely and factually.",
            user,
            400,
        )
        .await
    }
}

/// A JSON array of strings, or failing that a comma/line separated list (bullets and numbers
/// removed); lower-cased, trimmed, de-duplicated, at most `max`.
pub fn parse_keywords(answer: &str, max: usize) -> Vec<String> {
    let trimmed = answer
        .trim()
        .trim_start_matches("```json")
        .trim_start_matches("```")
        .trim_end_matches("```")
        .trim();
    let raw: Vec<String> = match serde_json::from_str::<Vec<String>>(trimmed) {
        Ok(v) => v,
        Err(_) => trimmed.split([',', '\n', ';']).map(String::from).collect(),
    };
    let mut out: Vec<String> = Vec::new();
    for k in raw {
        let k = k
            .trim()
            .trim_start_matches(|c: char| {
                c == '-' || c == '*' || c == '•' || c.is_ascii_digit() || c == '.' || c == ')'
            })
            .trim()
            .trim_matches('"')
            .to_lowercase();
        if !k.is_empty() && k.chars().count() <= 60 && !out.contains(&k) {
            out.push(k);
        }
        if out.len() == max {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyword_answers_in_several_shapes() {
        assert_eq!(
            parse_keywords(r#"["Solar", "battery storage", "solar"]"#, 20),
            vec!["solar", "battery storage"]
        );
        assert_eq!(
            parse_keywords("```json\n[\"a\",\"b\"]\n```", 20),
            vec!["a", "b"]
        );
        assert_eq!(
            parse_keywords("1. Wind\n2. Grid operators\n- Hydro", 2),
            vec!["wind", "grid operators"]
        );
        assert!(parse_keywords("   ", 5).is_empty());
    }
}

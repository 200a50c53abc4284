//! Prompt context from search results: `context` joins the best chunks up to a character budget
//! (the gem's `get_context`), `enhance` fills a prompt template's `{{context}}` and `{{prompt}}`
//! (the gem's `enhance_prompt`).

use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::SearchHit;

pub const DEFAULT_TEMPLATE: &str = "You are a helpful assistant. Answer the question using the \
context below. If the context does not contain the answer, say that you do not know.\n\n\
Context:\n{{context}}\n\nQuestion: {{prompt}}\n\nAnswer:";

const SEPARATOR: &str = "\n\n---\n\n";

#[derive(Clone, Debug, Serialize, ToSchema, PartialEq)]
pub struct Source {
    pub document_id: Uuid,
    pub title: String,
    pub location: String,
    pub chunk_index: i32,
    pub score: f64,
}

/// Joins chunk contents, best first, while they fit in `max_chars` characters. A first chunk
/// longer than the budget is cut at a character boundary so the context is never empty when
/// something matched.
pub fn build(hits: &[SearchHit], max_chars: usize) -> (String, Vec<Source>) {
    let mut context = String::new();
    let mut used = 0usize;
    let mut sources = Vec::new();
    for hit in hits {
        let len = hit.content.chars().count();
        let sep = if context.is_empty() {
            0
        } else {
            SEPARATOR.len()
        };
        if used + sep + len > max_chars {
            if context.is_empty() && max_chars > 0 {
                context = hit.content.chars().take(max_chars).collect();
                sources.push(source(hit));
            }
            break;
        }
        if sep > 0 {
            context.push_str(SEPARATOR);
        }
        context.push_str(&hit.content);
        used += sep + len;
        sources.push(source(hit));
    }
    (context, sources)
}

fn source(hit: &SearchHit) -> Source {
    Source {
        document_id: hit.document_id,
        title: hit.title.clone(),
        location: hit.location.clone(),
        chunk_index: hit.chunk_index,
        score: hit.score,
    }
}

/// Fills `{{context}}` and `{{prompt}}`; the template must contain `{{context}}`.
pub fn enhance(template: &str, context: &str, prompt: &str) -> Result<String, String> {
    if !template.contains("{{context}}") {
        return Err("`template` must contain the {{context}} placeholder".into());
    }
    // Replace the prompt first so a prompt containing "{{context}}" is not expanded.
    let parts: Vec<&str> = template.split("{{context}}").collect();
    Ok(parts
        .iter()
        .map(|p| p.replace("{{prompt}}", prompt))
        .collect::<Vec<_>>()
        .join(context))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(content: &str, i: i32) -> SearchHit {
        SearchHit {
            chunk_id: i.into(),
            document_id: Uuid::nil(),
            title: "t".into(),
            location: "l".into(),
            document_type: "text".into(),
            content: content.into(),
            chunk_index: i,
            score: 1.0,
            similarity: None,
            metadata: serde_json::json!({}),
        }
    }

    #[test]
    fn budget_is_respected() {
        let hits = [hit("aaaa", 0), hit("bbbb", 1), hit("cccc", 2)];
        let (ctx, src) = build(&hits, 4 + SEPARATOR.len() + 4 + 2);
        assert_eq!(ctx, format!("aaaa{SEPARATOR}bbbb"));
        assert_eq!(src.len(), 2);
        let (ctx, src) = build(&hits, 2);
        assert_eq!((ctx.as_str(), src.len()), ("aa", 1));
        let (ctx, src) = build(&[], 100);
        assert!(ctx.is_empty() && src.is_empty());
    }

    #[test]
    fn template_filling() {
        let out = enhance(DEFAULT_TEMPLATE, "CTX", "Why?").unwrap();
        assert!(out.contains("Context:\nCTX\n\nQuestion: Why?"));
        assert_eq!(
            enhance("{{context}}|{{prompt}}", "c {{prompt}}", "p {{context}}").unwrap(),
            "c {{prompt}}|p {{context}}"
        );
        assert!(enhance("no placeholder", "c", "p").is_err());
    }
}

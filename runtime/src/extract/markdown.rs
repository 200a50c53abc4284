//! Markdown: rendered to readable text with pulldown-cmark (markup dropped, code kept, block
//! boundaries as line breaks); the first level-1 heading is the title.

use pulldown_cmark::{Event, HeadingLevel, Parser, Tag, TagEnd};

use super::{Extracted, tidy};

pub fn extract(source: &str) -> Extracted {
    let mut out = String::with_capacity(source.len());
    let mut title: Option<String> = None;
    let mut in_h1 = false;
    let mut h1_text = String::new();
    for event in Parser::new(source) {
        match event {
            Event::Start(Tag::Heading { level, .. }) => {
                in_h1 = level == HeadingLevel::H1 && title.is_none();
                out.push_str("\n\n");
            }
            Event::End(TagEnd::Heading(_)) => {
                if in_h1 {
                    title = Some(h1_text.trim().to_string()).filter(|t| !t.is_empty());
                    in_h1 = false;
                }
                out.push_str("\n\n");
            }
            Event::Start(
                Tag::Paragraph | Tag::CodeBlock(_) | Tag::BlockQuote(_) | Tag::Table(_),
            ) => out.push_str("\n\n"),
            Event::End(
                TagEnd::Paragraph | TagEnd::CodeBlock | TagEnd::BlockQuote(_) | TagEnd::Table,
            ) => out.push_str("\n\n"),
            Event::End(TagEnd::Item | TagEnd::TableRow | TagEnd::TableHead) => out.push('\n'),
            Event::End(TagEnd::TableCell) => out.push_str(" | "),
            Event::Text(t) | Event::Code(t) => {
                if in_h1 {
                    h1_text.push_str(&t);
                }
                out.push_str(&t);
            }
            Event::SoftBreak => out.push(' '),
            Event::HardBreak => out.push('\n'),
            _ => {}
        }
    }
    Extracted {
        text: tidy(&out),
        title,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_dropped_and_title_found() {
        let md = "# Vector *search*\n\nUse **pgvector** with `HNSW`.\n\n- one\n- two\n\n```sql\nSELECT 1;\n```\n";
        let e = extract(md);
        assert_eq!(e.title.as_deref(), Some("Vector search"));
        assert!(e.text.contains("Use pgvector with HNSW."), "{}", e.text);
        assert!(e.text.contains("one\ntwo"));
        assert!(e.text.contains("SELECT 1;"));
        assert!(!e.text.contains("**"));
    }
}

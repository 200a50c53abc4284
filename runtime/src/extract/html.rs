//! HTML: the visible text of a page (no script, style, template or head content), with block
//! elements as line breaks and table cells separated by ` | `; `<title>` (else the first `<h1>`)
//! is the title.

use ego_tree::iter::Edge;
use scraper::{Html, Node, Selector};

use super::{Extracted, tidy};

const HIDDEN: &[&str] = &[
    "script", "style", "noscript", "template", "head", "svg", "iframe", "object", "canvas",
];
const BLOCKS: &[&str] = &[
    "p",
    "div",
    "section",
    "article",
    "main",
    "header",
    "footer",
    "nav",
    "aside",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "ul",
    "ol",
    "table",
    "blockquote",
    "pre",
    "form",
    "fieldset",
    "figure",
    "figcaption",
    "dl",
    "address",
    "hr",
];
const LINES: &[&str] = &["li", "tr", "dt", "dd", "br", "caption"];

pub fn extract(source: &str) -> Extracted {
    let doc = Html::parse_document(source);
    let mut out = String::with_capacity(source.len() / 2);
    let mut hidden_depth = 0usize;
    for edge in doc.tree.root().traverse() {
        match edge {
            Edge::Open(node) => match node.value() {
                Node::Element(e) => {
                    let name = e.name();
                    if HIDDEN.contains(&name) {
                        hidden_depth += 1;
                    } else if hidden_depth == 0 {
                        boundary(name, &mut out, true);
                    }
                }
                Node::Text(t) if hidden_depth == 0 => push_collapsed(&mut out, t),
                _ => {}
            },
            Edge::Close(node) => {
                if let Node::Element(e) = node.value() {
                    let name = e.name();
                    if HIDDEN.contains(&name) {
                        hidden_depth = hidden_depth.saturating_sub(1);
                    } else if hidden_depth == 0 && name != "br" {
                        boundary(name, &mut out, false);
                        if matches!(name, "td" | "th") {
                            out.push_str(" | ");
                        }
                    }
                }
            }
        }
    }
    let trimmed: String = out
        .lines()
        .map(|l| l.trim().trim_end_matches('|').trim_end())
        .collect::<Vec<_>>()
        .join("\n");
    let text = tidy(&trimmed);
    Extracted {
        text,
        title: title(&doc),
        ..Default::default()
    }
}

/// Line breaks around block and line elements; a line element opens a new line only if one is
/// not already open.
fn boundary(name: &str, out: &mut String, opening: bool) {
    if BLOCKS.contains(&name) {
        out.push_str("\n\n");
    } else if LINES.contains(&name) && !(opening && out.ends_with('\n') && name != "br") {
        out.push('\n');
    }
}

fn push_collapsed(out: &mut String, text: &str) {
    let mut last_space = out.ends_with(|c: char| c.is_whitespace());
    for c in text.chars() {
        if c.is_whitespace() {
            if !last_space {
                out.push(' ');
                last_space = true;
            }
        } else {
            out.push(c);
            last_space = false;
        }
    }
}

fn title(doc: &Html) -> Option<String> {
    ["title", "h1"].iter().find_map(|sel| {
        let selector = Selector::parse(sel).ok()?;
        let el = doc.select(&selector).next()?;
        let t = el
            .text()
            .collect::<String>()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        (!t.is_empty()).then_some(t)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visible_text_only() {
        let html = r#"<!doctype html><html><head><title> RAG  guide </title>
            <style>p { color: red }</style><script>var secret = 1;</script></head>
            <body><h1>Heading</h1><p>First   paragraph
            with <b>bold</b> text.</p><div>Second<br>line</div>
            <table><tr><th>k</th><th>v</th></tr><tr><td>a</td><td>1</td></tr></table>
            <noscript>enable js</noscript></body></html>"#;
        let e = extract(html);
        assert_eq!(e.title.as_deref(), Some("RAG guide"));
        assert!(
            e.text.contains("First paragraph with bold text."),
            "{}",
            e.text
        );
        assert!(e.text.contains("Second\nline"));
        assert!(e.text.contains("k | v\na | 1"), "{:?}", e.text);
        assert!(!e.text.contains("secret"));
        assert!(!e.text.contains("color"));
        assert!(!e.text.contains("enable js"));
    }
}

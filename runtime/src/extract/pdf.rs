//! PDF: text per page with pdf-extract. The library can panic on malformed files, so it runs
//! under `catch_unwind` and a panic becomes a normal "cannot read PDF" error.

use std::panic::{AssertUnwindSafe, catch_unwind};

use serde_json::Value;

use super::{ExtractError, Extracted, tidy};

pub fn extract(bytes: &[u8]) -> Result<Extracted, ExtractError> {
    let corrupt = |reason: String| ExtractError::Corrupt {
        kind: "PDF",
        reason,
    };
    if !bytes[..bytes.len().min(1024)]
        .windows(5)
        .any(|w| w == b"%PDF-")
    {
        return Err(corrupt("missing %PDF- header".into()));
    }
    let pages = catch_unwind(AssertUnwindSafe(|| {
        pdf_extract::extract_text_from_mem_by_pages(bytes)
    }))
    .map_err(|panic| corrupt(format!("the PDF parser gave up: {}", panic_message(&panic))))?
    .map_err(|e| corrupt(e.to_string()))?;
    let page_count = pages.len();
    let text = pages
        .iter()
        .map(|p| tidy(p))
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n");
    let mut out = Extracted {
        text,
        ..Default::default()
    };
    out.metadata.insert("pages".into(), Value::from(page_count));
    Ok(out)
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "malformed document".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_a_clear_error() {
        let err = extract(b"%PDF-1.7\n this is not really a pdf").unwrap_err();
        assert!(
            matches!(err, ExtractError::Corrupt { kind: "PDF", .. }),
            "{err}"
        );
        let err = extract(b"hello").unwrap_err();
        assert!(err.to_string().contains("missing %PDF- header"));
    }
}

//! PDF: text per page with pdf-extract (on lopdf), the title from the document information
//! dictionary. Pages are extracted one by one so a broken page is counted and reported instead of
//! silently ending the document (pdf-extract's own by-pages helper stops at the first error).
//! The parser can panic on malformed files, so it runs under `catch_unwind`.

use std::panic::{AssertUnwindSafe, catch_unwind};

use pdf_extract::{Document, Object, OutputError, PlainTextOutput, output_doc_page};
use serde_json::Value;

use super::{ExtractError, Extracted, tidy};

fn corrupt(reason: String) -> ExtractError {
    ExtractError::Corrupt {
        kind: "PDF",
        reason,
    }
}

pub fn extract(bytes: &[u8]) -> Result<Extracted, ExtractError> {
    if !bytes[..bytes.len().min(1024)]
        .windows(5)
        .any(|w| w == b"%PDF-")
    {
        return Err(corrupt("missing %PDF- header".into()));
    }
    catch_unwind(AssertUnwindSafe(|| extract_unguarded(bytes)))
        .map_err(|panic| corrupt(format!("the PDF parser gave up: {}", panic_message(&panic))))?
}

fn extract_unguarded(bytes: &[u8]) -> Result<Extracted, ExtractError> {
    let mut doc = Document::load_mem(bytes).map_err(|e| corrupt(e.to_string()))?;
    if doc.is_encrypted() {
        doc.decrypt("")
            .map_err(|e| corrupt(format!("the PDF is encrypted with a password ({e})")))?;
    }
    let page_count = doc.get_pages().len();
    let mut texts = Vec::with_capacity(page_count);
    let mut failed_pages = Vec::new();
    for page in 1..=page_count as u32 {
        let mut s = String::new();
        let result: Result<(), OutputError> = {
            let mut out = PlainTextOutput::new(&mut s);
            output_doc_page(&doc, &mut out, page)
        };
        match result {
            Ok(()) => texts.push(tidy(&s)),
            Err(e) => failed_pages.push(format!("page {page}: {e}")),
        }
    }
    if texts.is_empty() && !failed_pages.is_empty() {
        return Err(corrupt(failed_pages.join("; ")));
    }
    let mut out = Extracted {
        text: texts
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join("\n\n"),
        title: info_title(&doc),
        ..Default::default()
    };
    out.metadata.insert("pages".into(), Value::from(page_count));
    if !failed_pages.is_empty() {
        out.metadata
            .insert("unreadable_pages".into(), Value::from(failed_pages));
    }
    Ok(out)
}

/// `/Title` from the trailer's `/Info` dictionary (PDFDocEncoding or UTF-16BE with BOM).
fn info_title(doc: &Document) -> Option<String> {
    let info = doc.trailer.get_deref(b"Info", doc).ok()?.as_dict().ok()?;
    let raw = match info.get_deref(b"Title", doc).ok()? {
        Object::String(bytes, _) => bytes.clone(),
        _ => return None,
    };
    let title = if raw.starts_with(&[0xFE, 0xFF]) {
        let units: Vec<u16> = raw[2..]
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16_lossy(&units)
    } else {
        // PDFDocEncoding matches Latin-1 for printable text.
        raw.iter().map(|&b| b as char).collect()
    };
    let title = title.trim().to_string();
    (!title.is_empty()).then_some(title)
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

    #[test]
    fn fixture_pages_and_title() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/documents/energy-report.pdf"
        );
        let bytes = std::fs::read(path).unwrap();
        let e = extract(&bytes).unwrap();
        assert_eq!(
            e.title.as_deref(),
            Some("Renewable Energy Quarterly Report")
        );
        assert_eq!(e.metadata["pages"], 2);
        assert!(e.text.contains("Solar installations grew") && e.text.contains("Outlook"));
    }
}

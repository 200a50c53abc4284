//! DOCX: paragraphs and tables from `word/document.xml` (tables as `cell | cell` rows), the title
//! from `docProps/core.xml`. Every zip entry is read through a size cap, so a zip bomb fails
//! with a clear error instead of exhausting memory.

use std::io::{Cursor, Read};

use quick_xml::Reader;
use quick_xml::events::Event;
use serde_json::Value;
use zip::ZipArchive;

use super::{ExtractError, Extracted, Limits, tidy};

const KIND: &str = "DOCX";

fn corrupt(reason: impl Into<String>) -> ExtractError {
    ExtractError::Corrupt {
        kind: KIND,
        reason: reason.into(),
    }
}

/// Cheap check used by type detection: is this zip a Word document?
pub fn looks_like_docx(bytes: &[u8]) -> bool {
    ZipArchive::new(Cursor::new(bytes))
        .map(|z| z.file_names().any(|n| n == "word/document.xml"))
        .unwrap_or(false)
}

pub fn extract(bytes: &[u8], limits: Limits) -> Result<Extracted, ExtractError> {
    let mut zip = ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| corrupt(format!("not a valid zip container: {e}")))?;
    let mut budget = limits.max_decompressed;
    let body = read_entry(&mut zip, "word/document.xml", &mut budget)?
        .ok_or_else(|| corrupt("word/document.xml is missing"))?;
    let (text, paragraphs, tables) = document_text(&body)?;
    let title = match read_entry(&mut zip, "docProps/core.xml", &mut budget) {
        Ok(Some(core)) => core_title(&core),
        _ => None,
    };
    let mut out = Extracted {
        text: tidy(&text),
        title,
        ..Default::default()
    };
    out.metadata
        .insert("paragraphs".into(), Value::from(paragraphs));
    out.metadata.insert("tables".into(), Value::from(tables));
    Ok(out)
}

fn read_entry(
    zip: &mut ZipArchive<Cursor<&[u8]>>,
    name: &str,
    budget: &mut u64,
) -> Result<Option<String>, ExtractError> {
    let limit = *budget;
    let too_large = || ExtractError::TooLarge { kind: KIND, limit };
    let entry = match zip.by_name(name) {
        Ok(e) => e,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(corrupt(format!("{name}: {e}"))),
    };
    if entry.size() > limit {
        return Err(too_large());
    }
    let mut buf = Vec::new();
    // The declared size can lie; the cap on what we actually read cannot.
    entry
        .take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| corrupt(format!("{name}: {e}")))?;
    if buf.len() as u64 > limit {
        return Err(too_large());
    }
    *budget -= buf.len() as u64;
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| corrupt(format!("{name} is not UTF-8 XML")))
}

/// Walks WordprocessingML: returns the text, the paragraph count and the table count.
fn document_text(xml: &str) -> Result<(String, usize, usize), ExtractError> {
    let mut reader = Reader::from_str(xml);
    let mut out = String::with_capacity(xml.len() / 4);
    let (mut in_text, mut table_depth, mut paragraphs, mut tables) =
        (false, 0usize, 0usize, 0usize);
    loop {
        let event = reader.read_event().map_err(|e| {
            corrupt(format!(
                "word/document.xml at byte {}: {e}",
                reader.buffer_position()
            ))
        })?;
        match event {
            Event::Start(e) => match e.local_name().as_ref() {
                b"t" => in_text = true,
                b"tbl" => {
                    table_depth += 1;
                    tables += 1;
                    out.push_str("\n\n");
                }
                _ => {}
            },
            Event::Empty(e) => match e.local_name().as_ref() {
                b"tab" => out.push('\t'),
                b"br" | b"cr" => out.push('\n'),
                _ => {}
            },
            Event::End(e) => match e.local_name().as_ref() {
                b"t" => in_text = false,
                b"p" => {
                    paragraphs += 1;
                    out.push_str(if table_depth > 0 { " " } else { "\n\n" });
                }
                b"tc" => {
                    let trimmed = out.trim_end_matches(' ').len();
                    out.truncate(trimmed);
                    out.push_str(" | ");
                }
                b"tr" => {
                    let trimmed = out.trim_end_matches([' ', '|']).len();
                    out.truncate(trimmed);
                    out.push('\n');
                }
                b"tbl" => {
                    table_depth = table_depth.saturating_sub(1);
                    out.push_str("\n\n");
                }
                _ => {}
            },
            Event::Text(t) if in_text => {
                out.push_str(&t.decode().map_err(|e| corrupt(e.to_string()))?);
            }
            Event::GeneralRef(r) if in_text => push_reference(&mut out, &r)?,
            Event::Eof => break,
            _ => {}
        }
    }
    Ok((out, paragraphs, tables))
}

fn push_reference(
    out: &mut String,
    r: &quick_xml::events::BytesRef<'_>,
) -> Result<(), ExtractError> {
    if let Some(c) = r.resolve_char_ref().map_err(|e| corrupt(e.to_string()))? {
        out.push(c);
        return Ok(());
    }
    let name = r.decode().map_err(|e| corrupt(e.to_string()))?;
    match quick_xml::escape::resolve_predefined_entity(&name) {
        Some(s) => out.push_str(s),
        None => return Err(corrupt(format!("unknown entity &{name};"))),
    }
    Ok(())
}

fn core_title(xml: &str) -> Option<String> {
    let mut reader = Reader::from_str(xml);
    let mut in_title = false;
    let mut title = String::new();
    loop {
        match reader.read_event().ok()? {
            Event::Start(e) if e.local_name().as_ref() == b"title" => in_title = true,
            Event::End(e) if e.local_name().as_ref() == b"title" => break,
            Event::Text(t) if in_title => title.push_str(&t.decode().ok()?),
            Event::GeneralRef(r) if in_title => push_reference(&mut title, &r).ok()?,
            Event::Eof => break,
            _ => {}
        }
    }
    let t = title.trim().to_string();
    (!t.is_empty()).then_some(t)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;
    use zip::write::SimpleFileOptions;

    /// Builds a minimal DOCX in memory.
    pub(crate) fn build_docx(document_xml: &str, title: Option<&str>) -> Vec<u8> {
        let mut buf = Cursor::new(Vec::new());
        {
            let mut z = zip::ZipWriter::new(&mut buf);
            let opts = SimpleFileOptions::default();
            z.start_file("word/document.xml", opts).unwrap();
            z.write_all(document_xml.as_bytes()).unwrap();
            if let Some(t) = title {
                z.start_file("docProps/core.xml", opts).unwrap();
                write!(z, r#"<?xml version="1.0"?><cp:coreProperties xmlns:cp="x" xmlns:dc="y"><dc:title>{t}</dc:title></cp:coreProperties>"#).unwrap();
            }
            z.finish().unwrap();
        }
        buf.into_inner()
    }

    const BODY: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>
<w:p><w:r><w:t>Hello</w:t></w:r><w:r><w:t xml:space="preserve"> world &amp; friends</w:t></w:r></w:p>
<w:tbl><w:tr><w:tc><w:p><w:r><w:t>k</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>v</w:t></w:r></w:p></w:tc></w:tr>
<w:tr><w:tc><w:p><w:r><w:t>a</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>1</w:t></w:r></w:p></w:tc></w:tr></w:tbl>
<w:p><w:r><w:t>After</w:t><w:tab/><w:t>table</w:t></w:r></w:p></w:body></w:document>"#;

    #[test]
    fn paragraphs_tables_and_title() {
        let bytes = build_docx(BODY, Some("Quarterly &amp; report"));
        assert!(looks_like_docx(&bytes));
        let e = extract(
            &bytes,
            Limits {
                max_decompressed: 1 << 20,
            },
        )
        .unwrap();
        assert_eq!(e.title.as_deref(), Some("Quarterly & report"));
        assert!(e.text.starts_with("Hello world & friends"), "{}", e.text);
        assert!(e.text.contains("k | v\na | 1"), "{}", e.text);
        assert!(e.text.contains("After\ttable"));
        assert_eq!(e.metadata["tables"], 1);
    }

    #[test]
    fn zip_bomb_is_refused() {
        let huge = format!(
            "<w:document><w:body><w:p><w:r><w:t>{}</w:t></w:r></w:p></w:body></w:document>",
            "0".repeat(4 << 20)
        );
        let bytes = build_docx(&huge, None);
        assert!(bytes.len() < 64 << 10, "compresses well: {}", bytes.len());
        let err = extract(
            &bytes,
            Limits {
                max_decompressed: 1 << 20,
            },
        )
        .unwrap_err();
        assert!(matches!(err, ExtractError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn corrupt_container() {
        let err = extract(
            b"PK\x03\x04garbage",
            Limits {
                max_decompressed: 1 << 20,
            },
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("not a valid zip container"),
            "{err}"
        );
    }
}

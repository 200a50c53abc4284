//! Text extraction: detecting a document's type from its bytes and name, and turning each
//! supported type into plain text (plus a title and extraction metadata). Extractors are pure
//! functions over bytes; errors say what is wrong with the file. Images and audio are detected
//! here and measured in `media`; their text comes from model providers.

pub mod docx;
pub mod html;
pub mod markdown;
pub mod media;
pub mod pdf;
pub mod structured;
pub mod text;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DocumentType {
    Text,
    Markdown,
    Html,
    Xml,
    Pdf,
    Docx,
    Csv,
    Json,
    Yaml,
    Image,
    Audio,
}

impl DocumentType {
    pub const ALL: [DocumentType; 11] = [
        DocumentType::Text,
        DocumentType::Markdown,
        DocumentType::Html,
        DocumentType::Xml,
        DocumentType::Pdf,
        DocumentType::Docx,
        DocumentType::Csv,
        DocumentType::Json,
        DocumentType::Yaml,
        DocumentType::Image,
        DocumentType::Audio,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DocumentType::Text => "text",
            DocumentType::Markdown => "markdown",
            DocumentType::Html => "html",
            DocumentType::Xml => "xml",
            DocumentType::Pdf => "pdf",
            DocumentType::Docx => "docx",
            DocumentType::Csv => "csv",
            DocumentType::Json => "json",
            DocumentType::Yaml => "yaml",
            DocumentType::Image => "image",
            DocumentType::Audio => "audio",
        }
    }

    /// The MIME type of the type; images and audio are refined from their bytes by
    /// [`mime_type_of`].
    pub fn mime_type(self) -> &'static str {
        match self {
            DocumentType::Text => "text/plain",
            DocumentType::Markdown => "text/markdown",
            DocumentType::Html => "text/html",
            DocumentType::Xml => "application/xml",
            DocumentType::Pdf => "application/pdf",
            DocumentType::Docx => {
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
            }
            DocumentType::Csv => "text/csv",
            DocumentType::Json => "application/json",
            DocumentType::Yaml => "application/yaml",
            DocumentType::Image => "image/*",
            DocumentType::Audio => "audio/*",
        }
    }

    /// Types whose bytes are text (they go through charset decoding).
    pub fn is_textual(self) -> bool {
        !matches!(
            self,
            DocumentType::Pdf | DocumentType::Docx | DocumentType::Image | DocumentType::Audio
        )
    }

    /// Types whose searchable text comes from a model (vision, transcription).
    pub fn is_media(self) -> bool {
        matches!(self, DocumentType::Image | DocumentType::Audio)
    }

    fn from_extension(ext: &str) -> Option<Self> {
        Some(match ext.to_ascii_lowercase().as_str() {
            "txt" | "text" | "log" | "rst" => DocumentType::Text,
            "md" | "markdown" | "mdown" | "mkd" => DocumentType::Markdown,
            "html" | "htm" | "xhtml" => DocumentType::Html,
            "xml" => DocumentType::Xml,
            "pdf" => DocumentType::Pdf,
            "docx" => DocumentType::Docx,
            "csv" | "tsv" => DocumentType::Csv,
            "json" | "jsonl" | "ndjson" => DocumentType::Json,
            "yaml" | "yml" => DocumentType::Yaml,
            "png" | "jpg" | "jpeg" | "gif" | "webp" => DocumentType::Image,
            "wav" | "mp3" | "m4a" | "ogg" | "oga" | "opus" | "flac" => DocumentType::Audio,
            _ => return None,
        })
    }
}

impl std::str::FromStr for DocumentType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DocumentType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                let known: Vec<_> = DocumentType::ALL.iter().map(|t| t.as_str()).collect();
                format!("unknown document_type `{s}` (known: {})", known.join(", "))
            })
    }
}

impl std::fmt::Display for DocumentType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExtractError {
    /// The upload is of a kind we do not ingest (answered with 415 at upload).
    #[error("unsupported content: {0}")]
    Unsupported(String),
    /// The file claims a supported type but cannot be read.
    #[error("cannot read {kind}: {reason}")]
    Corrupt { kind: &'static str, reason: String },
    /// Decompression would exceed the configured limit (zip bomb guard).
    #[error(
        "{kind} expands beyond the {limit}-byte decompression limit (RAGDOLL_MAX_DECOMPRESSED_SIZE)"
    )]
    TooLarge { kind: &'static str, limit: u64 },
    #[error("no text could be extracted from this {0}")]
    NoText(&'static str),
}

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_decompressed: u64,
}

/// What an extractor produced.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Extracted {
    pub text: String,
    pub title: Option<String>,
    /// Facts about the extraction (pages, encoding, rows…), stored under `metadata.extraction`.
    pub metadata: Map<String, Value>,
}

/// Decides a document's type from its bytes, its file name and an optional declared type.
/// Binary signatures win over names; among text formats the extension or declared type decides,
/// and content sniffing is the fallback.
pub fn detect(
    bytes: &[u8],
    filename: Option<&str>,
    declared: Option<DocumentType>,
) -> Result<DocumentType, ExtractError> {
    let ext = filename
        .and_then(|f| std::path::Path::new(f).extension())
        .and_then(|e| e.to_str())
        .and_then(DocumentType::from_extension);
    let head = &bytes[..bytes.len().min(1024)];
    if head.windows(5).any(|w| w == b"%PDF-") {
        return Ok(DocumentType::Pdf);
    }
    if bytes.starts_with(b"PK\x03\x04") {
        return if ext == Some(DocumentType::Docx)
            || declared == Some(DocumentType::Docx)
            || docx::looks_like_docx(bytes)
        {
            Ok(DocumentType::Docx)
        } else {
            Err(ExtractError::Unsupported(
                "zip archive that is not a DOCX document (application/zip)".into(),
            ))
        };
    }
    let sniffed = infer::get(bytes).filter(|k| k.matcher_type() != infer::MatcherType::Text);
    if let Some(kind) = sniffed {
        if media::IMAGE_MIME_TYPES.contains(&kind.mime_type()) {
            return Ok(DocumentType::Image);
        }
        if media::AUDIO_MIME_TYPES.contains(&kind.mime_type()) {
            return Ok(DocumentType::Audio);
        }
    }
    // A file named .pdf/.docx/.png/.mp3… that does not carry the signature is still routed to
    // that extractor, which then reports precisely why it cannot be read.
    if let Some(
        t @ (DocumentType::Pdf | DocumentType::Docx | DocumentType::Image | DocumentType::Audio),
    ) = declared.or(ext)
    {
        return Ok(t);
    }
    if let Some(kind) = sniffed {
        return Err(ExtractError::Unsupported(format!(
            "{} ({}) is not a supported document type",
            kind.extension(),
            kind.mime_type()
        )));
    }
    if text::looks_binary(bytes) {
        return Err(ExtractError::Unsupported(
            "binary data (application/octet-stream) is not a supported document type".into(),
        ));
    }
    if let Some(t) = declared.or(ext) {
        return Ok(t);
    }
    Ok(sniff_text(bytes))
}

/// The MIME type stored with a document: images and audio by their actual format.
pub fn mime_type_of(doc_type: DocumentType, bytes: &[u8]) -> String {
    if let Some(kind) = infer::get(bytes).filter(|_| doc_type.is_media()) {
        return match kind.mime_type() {
            "audio/x-wav" => "audio/wav",
            "audio/m4a" => "audio/mp4",
            "audio/x-flac" => "audio/flac",
            other => other,
        }
        .to_string();
    }
    doc_type.mime_type().to_string()
}

fn sniff_text(bytes: &[u8]) -> DocumentType {
    let (s, _) = text::decode(bytes);
    let t = s.trim_start();
    let lower: String = t.chars().take(64).collect::<String>().to_ascii_lowercase();
    if lower.starts_with("<!doctype html") || lower.starts_with("<html") {
        return DocumentType::Html;
    }
    if lower.starts_with("<?xml") {
        return DocumentType::Xml;
    }
    if (t.starts_with('{') || t.starts_with('[')) && serde_json::from_str::<Value>(t).is_ok() {
        return DocumentType::Json;
    }
    DocumentType::Text
}

/// Extracts text from `bytes` of type `doc_type`. CPU-bound: run it on a blocking thread.
pub fn extract(
    doc_type: DocumentType,
    bytes: &[u8],
    limits: Limits,
) -> Result<Extracted, ExtractError> {
    let extracted = match doc_type {
        DocumentType::Pdf => pdf::extract(bytes)?,
        DocumentType::Docx => docx::extract(bytes, limits)?,
        DocumentType::Image | DocumentType::Audio => {
            return Err(ExtractError::Unsupported(format!(
                "{doc_type} documents get their text from a model provider, not an extractor"
            )));
        }
        textual => {
            let (decoded, encoding) = text::decode(bytes);
            let mut out = match textual {
                DocumentType::Markdown => markdown::extract(&decoded),
                DocumentType::Html => html::extract(&decoded),
                DocumentType::Xml => structured::extract_xml(&decoded)?,
                DocumentType::Csv => structured::extract_csv(&decoded)?,
                DocumentType::Json => structured::extract_json(&decoded)?,
                DocumentType::Yaml => structured::extract_yaml(&decoded)?,
                _ => text::extract(&decoded),
            };
            out.metadata
                .insert("encoding".into(), Value::from(encoding));
            out
        }
    };
    let mut extracted = extracted;
    if extracted.text.contains('\0') {
        // PostgreSQL text cannot hold NUL characters; they carry no meaning in prose.
        extracted.text = extracted.text.replace('\0', "");
    }
    if extracted.text.trim().is_empty() {
        return Err(ExtractError::NoText(doc_type.as_str()));
    }
    Ok(extracted)
}

/// Collapses runs of blank lines and trailing spaces; keeps paragraph breaks.
pub(crate) fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank_run = 0;
    for line in text.lines() {
        let line = line.trim_end();
        if line.trim().is_empty() {
            blank_run += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank_run > 0 { "\n\n" } else { "\n" });
        }
        blank_run = 0;
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_by_signature_extension_and_content() {
        assert_eq!(
            detect(b"%PDF-1.4 ...", Some("x.txt"), None),
            Ok(DocumentType::Pdf)
        );
        assert_eq!(
            detect(b"hello", Some("notes.md"), None),
            Ok(DocumentType::Markdown)
        );
        assert_eq!(
            detect(b"a,b\n1,2", Some("t.csv"), None),
            Ok(DocumentType::Csv)
        );
        assert_eq!(
            detect(b"<!DOCTYPE html><p>x", None, None),
            Ok(DocumentType::Html)
        );
        assert_eq!(detect(br#"{"a": 1}"#, None, None), Ok(DocumentType::Json));
        assert_eq!(detect(b"plain words", None, None), Ok(DocumentType::Text));
        assert_eq!(
            detect(b"# Title", None, Some(DocumentType::Markdown)),
            Ok(DocumentType::Markdown)
        );
        assert_eq!(
            detect(b"garbage", Some("broken.pdf"), None),
            Ok(DocumentType::Pdf)
        );
    }

    #[test]
    fn detects_media_by_signature_and_name() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        assert_eq!(detect(png, Some("a.txt"), None), Ok(DocumentType::Image));
        assert_eq!(mime_type_of(DocumentType::Image, png), "image/png");
        assert_eq!(
            detect(b"words, not pixels", Some("photo.png"), None),
            Ok(DocumentType::Image)
        );
        assert_eq!(
            detect(b"ID3\x04\0\0\0\0\0\0", Some("talk.bin"), None),
            Ok(DocumentType::Audio)
        );
        let bmp = b"BM\x36\0\0\0\0\0\0\0\x36\0\0\0\x28\0";
        assert!(
            matches!(detect(bmp, Some("a.bmp"), None), Err(ExtractError::Unsupported(m)) if m.contains("image/bmp"))
        );
    }

    #[test]
    fn rejects_binary() {
        let elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0";
        assert!(matches!(
            detect(elf, None, None),
            Err(ExtractError::Unsupported(_))
        ));
        assert!(matches!(
            detect(b"ab\0\0cd\0", None, None),
            Err(ExtractError::Unsupported(_))
        ));
    }

    #[test]
    fn nul_characters_are_removed() {
        let mut bytes = b"hello world ".repeat(1000);
        bytes.extend_from_slice(b"\0after");
        let e = extract(
            DocumentType::Text,
            &bytes,
            Limits {
                max_decompressed: 1 << 20,
            },
        )
        .unwrap();
        assert!(
            e.text.ends_with("worldafter") || e.text.ends_with("world after"),
            "{}",
            &e.text[e.text.len() - 20..]
        );
        assert!(!e.text.contains('\0'));
    }

    #[test]
    fn tidy_keeps_paragraphs() {
        assert_eq!(tidy("a  \n\n\n\nb\nc\n\n"), "a\n\nb\nc");
    }

    #[test]
    fn document_type_parsing_names_the_choices() {
        assert_eq!("PDF".parse::<DocumentType>(), Ok(DocumentType::Pdf));
        assert!(
            "exe"
                .parse::<DocumentType>()
                .unwrap_err()
                .contains("known: text")
        );
    }
}

//! Plain text: charset decoding (UTF-8, UTF-16 with BOM, then Latin-1/Windows-1252 as the
//! fallback for legacy files) and binary detection.

use super::{Extracted, tidy};

/// Decodes bytes to a string and names the encoding used. Never fails: bytes that are not UTF-8
/// are read as Windows-1252, a superset of Latin-1's printable range.
pub fn decode(bytes: &[u8]) -> (String, &'static str) {
    if let Some((enc, bom_len)) = encoding_rs::Encoding::for_bom(bytes) {
        let (s, _) = enc.decode_without_bom_handling(&bytes[bom_len..]);
        return (normalise_newlines(&s), enc.name());
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => (normalise_newlines(s), "UTF-8"),
        Err(_) => {
            let (s, _) = encoding_rs::WINDOWS_1252.decode_without_bom_handling(bytes);
            (normalise_newlines(&s), "ISO-8859-1")
        }
    }
}

fn normalise_newlines(s: &str) -> String {
    if s.contains('\r') {
        s.replace("\r\n", "\n").replace('\r', "\n")
    } else {
        s.to_string()
    }
}

/// True when the start of the data looks binary: NUL bytes (outside UTF-16 text) or many
/// control characters.
pub fn looks_binary(bytes: &[u8]) -> bool {
    if encoding_rs::Encoding::for_bom(bytes).is_some() {
        return false;
    }
    let head = &bytes[..bytes.len().min(8192)];
    if head.contains(&0) {
        return true;
    }
    let controls = head
        .iter()
        .filter(|&&b| b < 0x20 && !matches!(b, b'\n' | b'\r' | b'\t' | 0x0c))
        .count();
    controls * 10 > head.len().max(1)
}

pub fn extract(decoded: &str) -> Extracted {
    Extracted {
        text: tidy(decoded),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin1_fallback() {
        let bytes = b"caf\xe9 cr\xe8me br\xfbl\xe9e";
        let (s, enc) = decode(bytes);
        assert_eq!(s, "café crème brûlée");
        assert_eq!(enc, "ISO-8859-1");
    }

    #[test]
    fn utf8_and_utf16() {
        assert_eq!(
            decode("héllo\r\nworld".as_bytes()),
            ("héllo\nworld".into(), "UTF-8")
        );
        let utf16: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain("hé".encode_utf16().flat_map(|u| u.to_le_bytes()))
            .collect();
        assert_eq!(decode(&utf16), ("hé".into(), "UTF-16LE"));
        assert!(!looks_binary(&utf16));
    }

    #[test]
    fn binary_detection() {
        assert!(looks_binary(b"\x00\x01\x02"));
        assert!(!looks_binary(b"just text\n"));
        assert!(!looks_binary(b""));
    }
}

//! Splitting extracted text into overlapping chunks for embedding: sizes in characters (not
//! bytes), breaking at a paragraph, else a sentence, else a word boundary, never inside a UTF-8
//! character.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChunkError {
    #[error("chunk size must be at least 1 character")]
    ZeroSize,
    #[error("chunk overlap ({overlap}) must be smaller than chunk size ({size})")]
    OverlapTooLarge { size: usize, overlap: usize },
}

#[derive(Clone, Copy, Debug)]
pub struct Chunker {
    size: usize,
    overlap: usize,
}

impl Chunker {
    pub fn new(size: usize, overlap: usize) -> Result<Self, ChunkError> {
        if size == 0 {
            return Err(ChunkError::ZeroSize);
        }
        if overlap >= size {
            return Err(ChunkError::OverlapTooLarge { size, overlap });
        }
        Ok(Self { size, overlap })
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// Splits `text` into trimmed, non-empty chunks of at most `size` characters.
    pub fn split<'a>(&self, text: &'a str) -> Vec<&'a str> {
        let mut chunks = Vec::new();
        let mut start = skip_whitespace(text, 0);
        while start < text.len() {
            let rest = &text[start..];
            let Some(limit) = byte_offset_of_char(rest, self.size) else {
                push_trimmed(&mut chunks, rest);
                break;
            };
            let window = &rest[..limit];
            let cut = best_break(window, self.size);
            push_trimmed(&mut chunks, &window[..cut]);
            // Step back `overlap` characters from the cut, then forward to a word start so the
            // next chunk does not begin mid-word; always make progress.
            let back = back_chars(&window[..cut], self.overlap);
            let mut next = start + align_to_word(window, back, cut);
            if next <= start {
                next = start + cut;
            }
            start = skip_whitespace(text, next);
        }
        chunks
    }
}

fn push_trimmed<'a>(chunks: &mut Vec<&'a str>, s: &'a str) {
    let t = s.trim();
    if !t.is_empty() {
        chunks.push(t);
    }
}

fn skip_whitespace(text: &str, from: usize) -> usize {
    text[from..]
        .char_indices()
        .find(|(_, c)| !c.is_whitespace())
        .map_or(text.len(), |(i, _)| from + i)
}

/// Byte offset of the `n`-th character of `s`, or `None` when `s` has at most `n` characters.
fn byte_offset_of_char(s: &str, n: usize) -> Option<usize> {
    s.char_indices().nth(n).map(|(i, _)| i)
}

/// Where to end a chunk inside `window` (which holds exactly `size` characters): the last
/// paragraph break, else sentence end, else whitespace, in the second half of the window;
/// otherwise a hard cut at the window's end.
fn best_break(window: &str, size: usize) -> usize {
    let min = byte_offset_of_char(window, size / 2).unwrap_or(0);
    [
        paragraph_end(window),
        sentence_end(window),
        word_end(window),
    ]
    .into_iter()
    .flatten()
    .find(|&pos| pos > min)
    .unwrap_or(window.len())
}

fn paragraph_end(w: &str) -> Option<usize> {
    w.rfind("\n\n").map(|i| i + 2)
}

fn sentence_end(w: &str) -> Option<usize> {
    w.char_indices()
        .rev()
        .find(|(i, c)| {
            matches!(c, '.' | '!' | '?' | '。' | '\n')
                && w[i + c.len_utf8()..]
                    .chars()
                    .next()
                    .is_some_and(char::is_whitespace)
        })
        .map(|(i, c)| i + c.len_utf8())
}

fn word_end(w: &str) -> Option<usize> {
    w.char_indices()
        .rev()
        .find(|(_, c)| c.is_whitespace())
        .map(|(i, _)| i)
}

/// Byte offset `n` characters before the end of `s` (0 if `s` is shorter).
fn back_chars(s: &str, n: usize) -> usize {
    if n == 0 {
        return s.len();
    }
    s.char_indices().rev().nth(n - 1).map_or(0, |(i, _)| i)
}

/// Moves `pos` forward to the start of the next word, but not to or past `limit`.
fn align_to_word(window: &str, pos: usize, limit: usize) -> usize {
    if pos == 0 || window[..pos].ends_with(char::is_whitespace) {
        return pos;
    }
    window[pos..limit]
        .char_indices()
        .find(|(_, c)| c.is_whitespace())
        .map_or(pos, |(i, _)| pos + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_settings() {
        assert_eq!(Chunker::new(0, 0).unwrap_err(), ChunkError::ZeroSize);
        assert_eq!(
            Chunker::new(100, 100).unwrap_err(),
            ChunkError::OverlapTooLarge {
                size: 100,
                overlap: 100
            }
        );
        assert!(Chunker::new(100, 99).is_ok());
    }

    #[test]
    fn short_text_is_one_chunk() {
        let c = Chunker::new(1000, 200).unwrap();
        assert_eq!(c.split("  hello world \n"), vec!["hello world"]);
        assert!(c.split("   \n\t ").is_empty());
        assert!(c.split("").is_empty());
    }

    #[test]
    fn prefers_paragraph_then_sentence_then_word() {
        let c = Chunker::new(40, 0).unwrap();
        let text = "First paragraph is here.\n\nSecond paragraph follows and goes on.";
        assert_eq!(c.split(text)[0], "First paragraph is here.");

        let text = "One sentence ends here. Another sentence is longer than the window.";
        assert_eq!(c.split(text)[0], "One sentence ends here.");

        let text = "words without any sentence end keep going on and on";
        let first = c.split(text)[0];
        assert!(text.starts_with(first));
        assert!(
            text[first.len()..].starts_with(' '),
            "cut at a word boundary: {first:?}"
        );
    }

    #[test]
    fn chunks_respect_size_and_cover_the_text() {
        let c = Chunker::new(100, 20).unwrap();
        let text: String = (0..300).map(|i| format!("word{i} ")).collect::<String>()
            + "\n\n"
            + &"Sentence number x. ".repeat(40);
        let chunks = c.split(&text);
        assert!(chunks.len() > 5);
        for ch in &chunks {
            assert!(ch.chars().count() <= 100, "{} chars", ch.chars().count());
        }
        // Every word of the input appears in some chunk.
        for w in text.split_whitespace() {
            assert!(chunks.iter().any(|ch| ch.contains(w)), "lost {w}");
        }
    }

    #[test]
    fn consecutive_chunks_overlap() {
        let c = Chunker::new(50, 20).unwrap();
        let text: String = (0..100).map(|i| format!("w{i} ")).collect();
        let chunks = c.split(&text);
        for pair in chunks.windows(2) {
            let last_word = pair[0].split_whitespace().last().unwrap();
            assert!(pair[1].contains(last_word), "{pair:?}");
        }
    }

    #[test]
    fn never_splits_multibyte_characters() {
        let c = Chunker::new(7, 3).unwrap();
        let text = "ééééééééééé日本語のテキストです🎉🎉🎉🎉🎉🎉🎉🎉";
        let chunks = c.split(text);
        assert!(chunks.len() > 3);
        for ch in chunks {
            assert!(ch.chars().count() <= 7);
        }
    }

    #[test]
    fn hard_cut_without_any_boundary_makes_progress() {
        let c = Chunker::new(10, 9).unwrap();
        let text = "x".repeat(95);
        let chunks = c.split(&text);
        assert!(chunks.iter().all(|ch| !ch.is_empty() && ch.len() <= 10));
        assert!(chunks.len() >= 9, "{}", chunks.len());
    }
}

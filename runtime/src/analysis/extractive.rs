//! Summaries and keywords without a language model. The summary is extractive (TextRank: the
//! sentences most similar to the rest of the document, in their original order); keywords are
//! words and recurring two-word phrases ranked by TF-IDF against corpus statistics (how many
//! analysed documents contain each term).

use std::collections::{HashMap, HashSet};

const STOPWORDS: &[&str] = &[
    "a",
    "about",
    "above",
    "after",
    "again",
    "against",
    "all",
    "also",
    "am",
    "an",
    "and",
    "any",
    "are",
    "as",
    "at",
    "be",
    "because",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "but",
    "by",
    "can",
    "could",
    "did",
    "do",
    "does",
    "doing",
    "down",
    "during",
    "each",
    "even",
    "every",
    "few",
    "for",
    "from",
    "further",
    "get",
    "had",
    "has",
    "have",
    "having",
    "he",
    "her",
    "here",
    "hers",
    "herself",
    "him",
    "himself",
    "his",
    "how",
    "however",
    "i",
    "if",
    "in",
    "into",
    "is",
    "it",
    "its",
    "itself",
    "just",
    "like",
    "made",
    "make",
    "many",
    "may",
    "me",
    "might",
    "more",
    "most",
    "much",
    "must",
    "my",
    "myself",
    "new",
    "no",
    "nor",
    "not",
    "now",
    "of",
    "off",
    "on",
    "once",
    "one",
    "only",
    "or",
    "other",
    "our",
    "ours",
    "ourselves",
    "out",
    "over",
    "own",
    "per",
    "same",
    "she",
    "should",
    "since",
    "so",
    "some",
    "still",
    "such",
    "than",
    "that",
    "the",
    "their",
    "theirs",
    "them",
    "themselves",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "to",
    "too",
    "two",
    "under",
    "until",
    "up",
    "upon",
    "use",
    "used",
    "using",
    "very",
    "was",
    "we",
    "well",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whom",
    "why",
    "will",
    "with",
    "within",
    "without",
    "would",
    "yet",
    "you",
    "your",
    "yours",
    "yourself",
    "yourselves",
];

fn is_stopword(w: &str) -> bool {
    STOPWORDS.binary_search(&w).is_ok()
}

/// Lower-cased words of letters (and inner digits), in order.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Words worth indexing: not stop words, at least 3 characters, not pure numbers.
pub fn terms(text: &str) -> Vec<String> {
    words(text)
        .into_iter()
        .filter(|w| {
            w.chars().count() >= 3 && !is_stopword(w) && !w.chars().all(|c| c.is_ascii_digit())
        })
        .collect()
}

pub fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let mut start = 0;
        let b = block.trim();
        let chars: Vec<(usize, char)> = b.char_indices().collect();
        for (n, (i, c)) in chars.iter().enumerate() {
            let end_of_sentence = matches!(c, '.' | '!' | '?')
                && chars
                    .get(n + 1)
                    .is_none_or(|(_, next)| next.is_whitespace());
            if end_of_sentence || *c == '\n' {
                let s = b[start..i + c.len_utf8()].trim();
                if !s.is_empty() {
                    out.push(s);
                }
                start = i + c.len_utf8();
            }
        }
        let rest = b[start..].trim();
        if !rest.is_empty() {
            out.push(rest);
        }
    }
    out
}

/// The most central sentences (TextRank over word-overlap similarity), in document order,
/// about `target_chars` long. `None` when the text has no sentence of at least four words.
pub fn summarize(text: &str, target_chars: usize) -> Option<String> {
    let all = sentences(text);
    let candidates: Vec<(usize, &str, HashSet<String>)> = all
        .iter()
        .enumerate()
        .map(|(i, s)| (i, *s, terms(s).into_iter().collect::<HashSet<_>>()))
        .filter(|(_, s, _)| s.split_whitespace().count() >= 4)
        .collect();
    if candidates.is_empty() {
        return None;
    }
    let n = candidates.len();
    // Similarity of Mihalcea & Tarau: shared terms over the log of the sentence lengths.
    let mut sim = vec![vec![0f64; n]; n];
    for i in 0..n {
        for j in (i + 1)..n {
            let (a, b) = (&candidates[i].2, &candidates[j].2);
            let shared = a.intersection(b).count() as f64;
            let denom = ((a.len().max(1) as f64).ln() + (b.len().max(1) as f64).ln()).max(1.0);
            sim[i][j] = shared / denom;
            sim[j][i] = sim[i][j];
        }
    }
    let out_weight: Vec<f64> = sim.iter().map(|row| row.iter().sum()).collect();
    let mut score = vec![1.0f64; n];
    for _ in 0..30 {
        let next: Vec<f64> = (0..n)
            .map(|i| {
                let incoming: f64 = (0..n)
                    .filter(|&j| j != i && out_weight[j] > 0.0)
                    .map(|j| sim[j][i] / out_weight[j] * score[j])
                    .sum();
                0.15 + 0.85 * incoming
            })
            .collect();
        score = next;
    }
    let mut ranked: Vec<usize> = (0..n).collect();
    // Ties go to earlier sentences (documents front-load their gist).
    ranked.sort_by(|&a, &b| {
        score[b]
            .partial_cmp(&score[a])
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.cmp(&b))
    });
    let mut chosen = Vec::new();
    let mut length = 0;
    for i in ranked {
        if length >= target_chars || chosen.len() == 3 {
            break;
        }
        length += candidates[i].1.chars().count() + 1;
        chosen.push(i);
    }
    chosen.sort_by_key(|&i| candidates[i].0);
    Some(
        chosen
            .iter()
            .map(|&i| candidates[i].1)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// Corpus statistics: analysed documents, and in how many of them each term occurs.
#[derive(Debug, Default, Clone)]
pub struct Corpus {
    pub documents: i64,
    pub frequency: HashMap<String, i64>,
}

impl Corpus {
    fn idf(&self, term: &str) -> f64 {
        let df = self.frequency.get(term).copied().unwrap_or(0) as f64;
        ((self.documents as f64 + 1.0) / (df + 1.0)).ln() + 1.0
    }
}

/// Distinct terms of a text (what the corpus statistics count).
pub fn distinct_terms(text: &str) -> Vec<String> {
    let mut t: Vec<String> = terms(text)
        .into_iter()
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    t.sort();
    t
}

/// Up to `max` keywords: terms and two-word phrases that recur, by TF-IDF.
pub fn keywords(text: &str, corpus: &Corpus, max: usize) -> Vec<String> {
    let all = words(text);
    let total = all.len().max(1) as f64;
    let mut tf: HashMap<&str, f64> = HashMap::new();
    for w in &all {
        if w.chars().count() >= 3 && !is_stopword(w) && !w.chars().all(|c| c.is_ascii_digit()) {
            *tf.entry(w.as_str()).or_default() += 1.0;
        }
    }
    let word_score = |w: &str| tf.get(w).map_or(0.0, |n| n / total * corpus.idf(w));
    let mut scored: Vec<(String, f64)> =
        tf.keys().map(|w| (w.to_string(), word_score(w))).collect();
    // Phrases: adjacent content words seen at least twice (RAKE-like, without stop words inside).
    let mut pairs: HashMap<(String, String), usize> = HashMap::new();
    for pair in all.windows(2) {
        if tf.contains_key(pair[0].as_str())
            && tf.contains_key(pair[1].as_str())
            && pair[0] != pair[1]
        {
            *pairs.entry((pair[0].clone(), pair[1].clone())).or_default() += 1;
        }
    }
    for ((a, b), n) in pairs {
        if n >= 2 {
            scored.push((format!("{a} {b}"), word_score(&a) + word_score(&b)));
        }
    }
    scored.sort_by(|a, b| {
        b.1.partial_cmp(&a.1)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.0.cmp(&b.0))
    });
    let mut out: Vec<String> = Vec::new();
    for (k, _) in scored {
        // A phrase covers its words; a word already inside a chosen phrase adds nothing.
        let covered = out.iter().any(|o| {
            o.split(' ').any(|w| w == k) || k.split(' ').all(|w| out.iter().any(|o| o == w))
        });
        if !covered {
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

    const TEXT: &str = "Solar installations grew by eighteen percent this quarter. Rooftop solar panels on \
        warehouses drove the growth. Wind farms in the north delivered record output. Battery storage \
        is now the bottleneck: grid operators curtailed surplus solar because battery storage was full. \
        The cafeteria menu changed on Tuesday. Battery storage projects will expand next year.";

    #[test]
    fn stopwords_are_sorted_for_binary_search() {
        let mut sorted = STOPWORDS.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, STOPWORDS);
    }

    #[test]
    fn summary_prefers_central_sentences_in_order() {
        let s = summarize(TEXT, 200).unwrap();
        assert!(s.contains("battery storage"), "{s}");
        assert!(
            !s.contains("cafeteria"),
            "the off-topic sentence is left out: {s}"
        );
        assert!(s.len() < TEXT.len());
        assert_eq!(summarize("Hi. Ok.", 100), None);
    }

    #[test]
    fn keywords_favour_distinctive_recurring_terms() {
        let corpus = Corpus {
            documents: 100,
            frequency: HashMap::from([("quarter".into(), 90), ("solar".into(), 2)]),
        };
        let k = keywords(TEXT, &corpus, 5);
        assert!(k.contains(&"battery storage".to_string()), "{k:?}");
        assert!(k.contains(&"solar".to_string()), "{k:?}");
        assert!(
            !k.contains(&"quarter".to_string()),
            "common in the corpus: {k:?}"
        );
        assert!(
            !k.contains(&"battery".to_string()),
            "covered by the phrase: {k:?}"
        );
        assert!(k.len() <= 5);
    }

    #[test]
    fn sentence_splitting() {
        assert_eq!(
            sentences("One two. Three four!\n\nFive six?"),
            vec!["One two.", "Three four!", "Five six?"]
        );
        assert_eq!(
            sentences("Version 1.5 ships.\nNext line"),
            vec!["Version 1.5 ships.", "Next line"]
        );
    }
}

//! The `hash` embedder: signed feature hashing of lower-cased words and word bigrams into D
//! dimensions, L2-normalised. Deterministic, offline and fast — but purely lexical: texts that
//! share no words get unrelated vectors. Use it for tests, benchmarks and air-gapped trials.

use futures::future::BoxFuture;

use super::{EmbedError, Embedder};

pub struct HashEmbedder {
    model: String,
    dims: usize,
}

impl HashEmbedder {
    pub fn new(model: impl Into<String>, dims: usize) -> Self {
        Self {
            model: model.into(),
            dims: dims.max(1),
        }
    }

    pub fn embed_one(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0f32; self.dims];
        let words: Vec<String> = text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect();
        let mut add = |feature: &[&[u8]], weight: f32| {
            let h = fnv1a(feature);
            let idx = (h % self.dims as u64) as usize;
            let sign = if (h >> 63) == 1 { -1.0 } else { 1.0 };
            v[idx] += sign * weight;
        };
        for w in &words {
            add(&[w.as_bytes()], 1.0);
        }
        for pair in words.windows(2) {
            add(&[pair[0].as_bytes(), b" ", pair[1].as_bytes()], 0.5);
        }
        if words.is_empty() {
            // Punctuation-only text still gets a stable, non-zero direction (a zero vector has
            // no cosine similarity to anything).
            add(&[text.trim().as_bytes()], 1.0);
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        } else {
            v[0] = 1.0;
        }
        v
    }
}

/// 64-bit FNV-1a over concatenated parts (stable across platforms and Rust versions).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

impl Embedder for HashEmbedder {
    fn model(&self) -> &str {
        &self.model
    }
    fn dimensions(&self) -> usize {
        self.dims
    }
    fn batch_size(&self) -> usize {
        256
    }
    fn embed_batch<'a>(
        &'a self,
        texts: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
        Box::pin(async move { Ok(texts.iter().map(|t| self.embed_one(t)).collect()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cos(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn deterministic_normalised_and_lexical() {
        let e = HashEmbedder::new("hash-v1", 384);
        let a = e.embed_one("PostgreSQL vector search with pgvector");
        assert_eq!(a, e.embed_one("postgresql VECTOR search, with pgvector!"));
        assert_eq!(a.len(), 384);
        assert!((cos(&a, &a) - 1.0).abs() < 1e-5);
        let b = e.embed_one("vector search in PostgreSQL");
        let c = e.embed_one("baking sourdough bread at home");
        assert!(
            cos(&a, &b) > cos(&a, &c) + 0.2,
            "{} vs {}",
            cos(&a, &b),
            cos(&a, &c)
        );
    }

    #[test]
    fn punctuation_only_is_not_zero() {
        let e = HashEmbedder::new("hash-v1", 16);
        let v = e.embed_one("!!! ---");
        assert!((cos(&v, &v) - 1.0).abs() < 1e-5);
    }

    #[test]
    fn known_hash_values_are_stable() {
        assert_eq!(fnv1a(&[b""]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(&[b"a"]), 0xaf63_dc4c_8601_ec8c);
    }
}

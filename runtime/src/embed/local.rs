//! The `local` embedder: all-MiniLM-L6-v2 (BERT, 384 dimensions) run in-process with candle —
//! real semantic embeddings with no API key and no network. Tokens are truncated at the model's
//! 256-token limit (no fixed padding), texts are batched with others of similar length and padded
//! only to the longest in their batch, and the output is mean-pooled over the attention mask and
//! L2-normalised, as sentence-transformers does.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use futures::future::BoxFuture;
use tokenizers::{Tokenizer, TruncationParams};

use super::{EmbedError, Embedder};

pub const MODEL_NAME: &str = "all-MiniLM-L6-v2";
pub const DIMENSIONS: usize = 384;
/// all-MiniLM-L6-v2 was trained on sequences of at most 256 word pieces.
pub const MAX_TOKENS: usize = 256;
/// Files a model directory must hold.
pub const FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

struct Model {
    bert: BertModel,
    tokenizer: Tokenizer,
    device: Device,
}

pub struct LocalEmbedder {
    model: Arc<Model>,
    name: String,
    batch_size: usize,
}

fn load_error(path: &Path, e: impl std::fmt::Display) -> EmbedError {
    EmbedError::Config(format!(
        "cannot load the local embedding model from {}: {e}",
        path.display()
    ))
}

impl LocalEmbedder {
    /// Loads the model from `dir` (config.json, tokenizer.json, model.safetensors); any missing
    /// or corrupt file is named in the error.
    pub fn load(dir: &Path, name: String, batch_size: usize) -> Result<Self, EmbedError> {
        let file = |f: &str| -> Result<PathBuf, EmbedError> {
            let p = dir.join(f);
            if p.is_file() {
                Ok(p)
            } else {
                Err(load_error(
                    &p,
                    "file not found (run `make models`, or set RAGDOLL_MODEL_DIR)",
                ))
            }
        };
        let (config_path, tokenizer_path, weights_path) =
            (file(FILES[0])?, file(FILES[1])?, file(FILES[2])?);
        let config_text =
            std::fs::read_to_string(&config_path).map_err(|e| load_error(&config_path, e))?;
        let config: Config =
            serde_json::from_str(&config_text).map_err(|e| load_error(&config_path, e))?;
        if config.hidden_size != DIMENSIONS {
            return Err(load_error(
                &config_path,
                format!("hidden size {} is not {DIMENSIONS}", config.hidden_size),
            ));
        }
        let mut tokenizer =
            Tokenizer::from_file(&tokenizer_path).map_err(|e| load_error(&tokenizer_path, e))?;
        // The shipped tokenizer pads everything to 128 tokens: pad per batch instead.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..Default::default()
            }))
            .map_err(|e| load_error(&tokenizer_path, e))?;
        let device = Device::Cpu;
        // SAFETY of the mapping: the file is only read; a concurrent writer would be a deployment
        // error, and the checksum in `make models` guards the content we ship.
        let vb =
            unsafe { VarBuilder::from_mmaped_safetensors(&[&weights_path], DType::F32, &device) }
                .map_err(|e| load_error(&weights_path, e))?;
        let bert = BertModel::load(vb, &config).map_err(|e| load_error(&weights_path, e))?;
        Ok(Self {
            model: Arc::new(Model {
                bert,
                tokenizer,
                device,
            }),
            name,
            batch_size: batch_size.max(1),
        })
    }

    /// Embeds texts synchronously (CPU-bound: call from a blocking thread).
    pub fn embed_blocking(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.model.embed(texts, self.batch_size)
    }
}

fn inference(e: impl std::fmt::Display) -> EmbedError {
    EmbedError::Rejected(format!("local model inference failed: {e}"))
}

impl Model {
    fn embed(&self, texts: &[String], batch_size: usize) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut encodings = Vec::with_capacity(texts.len());
        for t in texts {
            let enc = self.tokenizer.encode(t.as_str(), true).map_err(inference)?;
            encodings.push(enc);
        }
        // Similar lengths together: little padding, much less work on short texts.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| encodings[i].get_ids().len());
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
        for batch in order.chunks(batch_size) {
            let len = batch
                .iter()
                .map(|&i| encodings[i].get_ids().len())
                .max()
                .unwrap_or(1)
                .max(1);
            let (mut ids, mut mask, mut types) = (Vec::new(), Vec::new(), Vec::new());
            for &i in batch {
                let e = &encodings[i];
                let pad = len - e.get_ids().len();
                ids.extend(
                    e.get_ids()
                        .iter()
                        .copied()
                        .chain(std::iter::repeat_n(0, pad)),
                );
                mask.extend(
                    e.get_attention_mask()
                        .iter()
                        .copied()
                        .chain(std::iter::repeat_n(0, pad)),
                );
                types.extend(
                    e.get_type_ids()
                        .iter()
                        .copied()
                        .chain(std::iter::repeat_n(0, pad)),
                );
            }
            let shape = (batch.len(), len);
            let ids = Tensor::from_vec(ids, shape, &self.device).map_err(inference)?;
            let mask = Tensor::from_vec(mask, shape, &self.device).map_err(inference)?;
            let types = Tensor::from_vec(types, shape, &self.device).map_err(inference)?;
            let hidden = self
                .bert
                .forward(&ids, &types, Some(&mask))
                .map_err(inference)?;
            let vectors = mean_pool_normalised(&hidden, &mask).map_err(inference)?;
            for (row, &i) in vectors.into_iter().zip(batch) {
                out[i] = row;
            }
        }
        Ok(out)
    }
}

/// Mean over the tokens the mask keeps, then L2 normalisation.
fn mean_pool_normalised(hidden: &Tensor, mask: &Tensor) -> candle_core::Result<Vec<Vec<f32>>> {
    let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
    let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
    let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?;
    let mean = summed.broadcast_div(&counts)?;
    let norms = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
    mean.broadcast_div(&norms)?.to_vec2::<f32>()
}

impl Embedder for LocalEmbedder {
    fn model(&self) -> &str {
        &self.name
    }
    fn dimensions(&self) -> usize {
        DIMENSIONS
    }
    fn batch_size(&self) -> usize {
        // The pipeline hands over whole documents; batching by length happens inside.
        1024
    }
    fn embed_batch<'a>(
        &'a self,
        texts: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
        let model = self.model.clone();
        let batch = self.batch_size;
        let owned = texts.to_vec();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || model.embed(&owned, batch))
                .await
                .map_err(|e| EmbedError::Rejected(format!("local model task failed: {e}")))?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model_dir() -> Option<PathBuf> {
        std::env::var_os("RAGDOLL_MODEL_DIR")
            .map(PathBuf::from)
            .filter(|d| d.join("model.safetensors").is_file())
    }

    #[test]
    fn missing_files_are_named() {
        let dir = std::env::temp_dir().join("ragdoll-no-model-here");
        let _ = std::fs::create_dir_all(&dir);
        let Err(err) = LocalEmbedder::load(&dir, MODEL_NAME.into(), 32) else {
            panic!("loaded nothing")
        };
        assert!(
            err.to_string().contains("config.json: file not found"),
            "{err}"
        );
        std::fs::write(dir.join("config.json"), "{not json").unwrap();
        std::fs::write(dir.join("tokenizer.json"), "{}").unwrap();
        std::fs::write(dir.join("model.safetensors"), "nope").unwrap();
        let Err(err) = LocalEmbedder::load(&dir, MODEL_NAME.into(), 32) else {
            panic!("loaded garbage")
        };
        assert!(err.to_string().contains("config.json"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Pairs from the sentence-transformers documentation and the cosine similarities the
    /// reference implementation gives for all-MiniLM-L6-v2.
    #[test]
    fn matches_sentence_transformers() {
        let Some(dir) = model_dir() else {
            panic!(
                "RAGDOLL_MODEL_DIR is not set: run the tests through `make test`, which fetches the model (make models)"
            );
        };
        let m = LocalEmbedder::load(&dir, MODEL_NAME.into(), 8).unwrap();
        let cos = |a: &str, b: &str| {
            let v = m.embed_blocking(&[a.to_string(), b.to_string()]).unwrap();
            v[0].iter().zip(&v[1]).map(|(x, y)| x * y).sum::<f32>()
        };
        for (a, b, want) in REFERENCE_PAIRS {
            let got = cos(a, b);
            assert!(
                (got - want).abs() < 0.001,
                "{a} / {b}: {got:.4}, reference {want}"
            );
        }
        let v = m.embed_blocking(&["hello".into()]).unwrap();
        let norm: f32 = v[0].iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4 && v[0].len() == 384);
        // Batching by length does not change results.
        let texts: Vec<String> = ["a", "a somewhat longer sentence here", "mid length text"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let together = m.embed_blocking(&texts).unwrap();
        for (i, t) in texts.iter().enumerate() {
            let alone = m.embed_blocking(std::slice::from_ref(t)).unwrap();
            let c: f32 = alone[0].iter().zip(&together[i]).map(|(x, y)| x * y).sum();
            assert!(c > 0.9999, "{t}: {c}");
        }
        // Texts beyond the token limit are truncated, not rejected.
        let long = "semantic search ".repeat(1000);
        assert_eq!(m.embed_blocking(&[long]).unwrap()[0].len(), 384);
    }

    pub(crate) const REFERENCE_PAIRS: [(&str, &str, f32); 5] = [
        (
            "The new movie is awesome",
            "The new movie is so great",
            0.8939,
        ),
        (
            "The cat sits outside",
            "The cat plays in the garden",
            0.6788,
        ),
        ("I love pasta", "Do you like pizza?", 0.5096),
        (
            "The weather is lovely today.",
            "It's so sunny outside!",
            0.6660,
        ),
        (
            "The weather is lovely today.",
            "He drove to the stadium.",
            0.1046,
        ),
    ];
}

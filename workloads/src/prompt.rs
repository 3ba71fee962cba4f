//! Prompts of an exact token count. A prompt of n tokens is n words, each one token with
//! its leading space, drawn from a vocabulary: with a tokenizer, words the tokenizer itself
//! encodes as single tokens (so the count is exact, [`crate::tokenizer::single_token_words`]);
//! without one, a built-in list of common English words that are single tokens in the
//! GPT-2, Llama-3 and Qwen2.5 vocabularies. Every request draws its own words, so prefix
//! caches get no free hits, unless a shared prefix is asked for.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Common English words, one token each (with a leading space) in common BPE vocabularies.
const BUILTIN_WORDS: &[&str] = &[
    "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by",
    "on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an",
    "had", "they", "you", "were", "their", "one", "all", "we", "can", "her", "has", "there",
    "been", "if", "more", "when", "will", "would", "who", "so", "no", "time", "people", "new",
    "year", "work", "day", "world", "life", "hand", "part", "place", "case", "week", "system",
    "number", "night",
];

/// Keeps the prefix stream apart from the request streams.
const PREFIX_SALT: u64 = 0x7072_6566_6978_2121; // "prefix!!"

/// How prompts are sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PromptFormat {
    /// Text (works with every server).
    #[default]
    Text,
    /// A list of token ids (`/v1/completions` on vLLM, SGLang, TRT-LLM); needs a tokenizer.
    TokenIds,
}

/// Words (and, with a tokenizer, their ids) that prompts are made of.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Vocab {
    /// "builtin" or the tokenizer file the words were taken from.
    pub source: String,
    #[serde(default)]
    pub words: Vec<String>,
    /// Token id of each word, when known.
    #[serde(default)]
    pub ids: Vec<u32>,
}

impl Default for Vocab {
    fn default() -> Self {
        Vocab {
            source: "builtin".into(),
            words: BUILTIN_WORDS.iter().map(|w| (*w).to_owned()).collect(),
            ids: Vec::new(),
        }
    }
}

/// How prompts are synthesised.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PromptSpec {
    pub format: PromptFormat,
    pub vocab: Vocab,
    /// Leading tokens every synthesised prompt shares (a system-prompt-like prefix).
    #[serde(default)]
    pub shared_prefix_len: u32,
}

/// A prompt ready to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prompt {
    Text(String),
    TokenIds(Vec<u32>),
}

impl Prompt {
    pub fn as_json(&self) -> serde_json::Value {
        match self {
            Prompt::Text(t) => serde_json::Value::String(t.clone()),
            Prompt::TokenIds(ids) => serde_json::json!(ids),
        }
    }
}

impl PromptSpec {
    /// Word indices of a prompt of `len` tokens: the shared prefix, then blocks. Block k
    /// (of `block` tokens) is drawn from `block_seeds[k]` when given — requests that share
    /// a seed share that block, as Mooncake traces' hash ids say — else from `seed`.
    fn word_indices(&self, len: u32, seed: u64, block_seeds: &[u64], block: u32) -> Vec<usize> {
        use rand::RngExt;
        let n = self.vocab.words.len().max(1);
        let mut out = Vec::with_capacity(len as usize);
        let prefix = self.shared_prefix_len.min(len);
        let mut rng = ChaCha8Rng::seed_from_u64(PREFIX_SALT);
        for _ in 0..prefix {
            out.push(rng.random_range(0..n));
        }
        let mut own = ChaCha8Rng::seed_from_u64(seed);
        let mut k = prefix;
        while k < len {
            let b = (k / block.max(1)) as usize;
            let end = if block_seeds.get(b).is_some() {
                ((b as u32 + 1) * block).min(len)
            } else {
                len
            };
            if let Some(&s) = block_seeds.get(b) {
                let mut r = ChaCha8Rng::seed_from_u64(s);
                for _ in k..end {
                    out.push(r.random_range(0..n));
                }
            } else {
                for _ in k..end {
                    out.push(own.random_range(0..n));
                }
            }
            k = end;
        }
        out
    }

    /// A prompt of exactly `len` tokens (in the vocabulary's tokenizer).
    pub(crate) fn synthesize(
        &self,
        len: u32,
        seed: u64,
        block_seeds: &[u64],
        block: u32,
    ) -> Prompt {
        let idx = self.word_indices(len, seed, block_seeds, block);
        match self.format {
            PromptFormat::TokenIds if !self.vocab.ids.is_empty() => Prompt::TokenIds(
                idx.iter()
                    .map(|&i| self.vocab.ids[i % self.vocab.ids.len()])
                    .collect(),
            ),
            _ => {
                let mut s = String::with_capacity(idx.len() * 6);
                for i in idx {
                    s.push(' ');
                    s.push_str(&self.vocab.words[i % self.vocab.words.len()]);
                }
                Prompt::Text(s)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_has_exact_word_count_and_is_deterministic() {
        let spec = PromptSpec::default();
        for len in [1, 2, 100, 1024] {
            let Prompt::Text(p) = spec.synthesize(len, 42, &[], 512) else {
                panic!("text")
            };
            assert_eq!(p.split_whitespace().count(), len as usize);
            assert_eq!(Prompt::Text(p), spec.synthesize(len, 42, &[], 512));
        }
        assert_ne!(
            spec.synthesize(64, 1, &[], 512),
            spec.synthesize(64, 2, &[], 512)
        );
    }

    #[test]
    fn shared_prefix_and_hash_blocks_are_shared() {
        let spec = PromptSpec {
            shared_prefix_len: 10,
            ..PromptSpec::default()
        };
        let a = spec.word_indices(50, 1, &[], 512);
        let b = spec.word_indices(50, 2, &[], 512);
        assert_eq!(a[..10], b[..10]);
        assert_ne!(a[10..], b[10..]);
        let plain = PromptSpec::default();
        let a = plain.word_indices(20, 1, &[7, 8], 8);
        let b = plain.word_indices(20, 2, &[7, 9], 8);
        assert_eq!(a[..8], b[..8]);
        assert_ne!(a[8..16], b[8..16]);
        assert_eq!(a.len(), 20);
    }
}

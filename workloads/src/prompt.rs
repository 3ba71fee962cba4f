//! Prompt text of an exact length. Without a tokenizer, a prompt of n tokens is n words
//! drawn from a list of common English words that are one token each (with their leading
//! space) in the GPT-2, Llama-3 and Qwen2.5 vocabularies. Every request starts at its own
//! random offset, so prefix caches get no free hits.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// One-token words (leading space included) in the common BPE vocabularies.
const WORDS: &[&str] = &[
    "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by",
    "on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an",
    "had", "they", "you", "were", "their", "one", "all", "we", "can", "her", "has", "there",
    "been", "if", "more", "when", "will", "would", "who", "so", "no", "time", "people", "new",
    "year", "work", "day", "world", "life", "hand", "part", "place", "case", "week", "system",
    "number", "night",
];

/// A prompt of exactly `len` words, the same for the same `seed`.
pub fn text(len: u32, seed: u64) -> String {
    use rand::RngExt;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = String::with_capacity(len as usize * 6);
    for k in 0..len {
        if k > 0 {
            out.push(' ');
        }
        out.push_str(WORDS[rng.random_range(0..WORDS.len())]);
    }
    out
}

/// Number of prompt tokens the sim counts for a text prompt: whitespace-separated words.
pub fn approx_tokens(text: &str) -> usize {
    text.split_whitespace().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_has_exact_word_count_and_is_deterministic() {
        for len in [1, 2, 100, 1024] {
            let p = text(len, 42);
            assert_eq!(approx_tokens(&p), len as usize);
            assert_eq!(p, text(len, 42));
        }
        assert_ne!(text(64, 1), text(64, 2));
    }
}

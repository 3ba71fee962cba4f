//! Token counts from a Hugging Face `tokenizer.json` (the `tokenizers` crate, no hub
//! access), and the approximation used without one: ⌈chars / 4⌉, OpenAI's rule of thumb
//! for English text, flagged as approximate wherever it is used.

use std::path::Path;

use tokenizers::Tokenizer;

use crate::spec::WorkloadError;

/// A loaded tokenizer and where it came from.
pub struct LoadedTokenizer {
    pub path: String,
    pub inner: Tokenizer,
}

impl std::fmt::Debug for LoadedTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedTokenizer")
            .field("path", &self.path)
            .finish()
    }
}

impl LoadedTokenizer {
    pub fn load(path: &Path) -> Result<LoadedTokenizer, WorkloadError> {
        let bytes =
            rackload_input::read_capped(path, rackload_input::caps::TOKENIZER, "a tokenizer")
                .map_err(|e| WorkloadError::Invalid {
                    field: "tokenizer",
                    reason: e.to_string(),
                })?;
        let inner = Tokenizer::from_bytes(bytes).map_err(|e| WorkloadError::File {
            path: path.display().to_string(),
            reason: format!("not a usable tokenizer.json: {e}"),
        })?;
        Ok(LoadedTokenizer {
            path: path.display().to_string(),
            inner,
        })
    }

    /// `text` encoded, without special tokens.
    fn encode(&self, text: &str) -> Result<tokenizers::Encoding, WorkloadError> {
        self.inner
            .encode(text, false)
            .map_err(|e| WorkloadError::File {
                path: self.path.clone(),
                reason: format!("cannot encode text: {e}"),
            })
    }

    /// Tokens in `text`, without special tokens.
    pub fn count(&self, text: &str) -> Result<u32, WorkloadError> {
        Ok(u32::try_from(self.encode(text)?.len()).unwrap_or(u32::MAX))
    }

    /// Tokens of each piece of `text`, piece k ending at byte `ends[k]` (pieces in order,
    /// the last ending at `text.len()`): the text is encoded once, as a whole, and each
    /// token counts for the piece its first byte is in. For streamed output, where
    /// encoding each chunk alone would split merges at chunk boundaries.
    pub fn tokens_per_piece(&self, text: &str, ends: &[usize]) -> Result<Vec<u32>, WorkloadError> {
        let enc = self.encode(text)?;
        let mut counts = vec![0u32; ends.len()];
        for &(start, _) in enc.get_offsets() {
            let k = ends.partition_point(|&end| end <= start);
            if let Some(c) = counts.get_mut(k.min(ends.len().saturating_sub(1))) {
                *c += 1;
            }
        }
        Ok(counts)
    }

    /// Up to `max` lowercase ASCII words that this tokenizer encodes, with a leading space,
    /// as exactly one token — in id order, so the most frequent merges come first.
    pub(crate) fn single_token_words(&self, max: usize) -> Vec<(String, u32)> {
        let mut cands: Vec<(u32, String)> = self
            .inner
            .get_vocab(false)
            .into_iter()
            .filter_map(|(tok, id)| {
                // Byte-level BPE writes a leading space as 'Ġ'; SentencePiece as '▁'.
                let w = tok.strip_prefix('Ġ').or_else(|| tok.strip_prefix('▁'))?;
                (w.len() >= 2 && w.len() <= 12 && w.bytes().all(|b| b.is_ascii_lowercase()))
                    .then(|| (id, w.to_owned()))
            })
            .collect();
        cands.sort();
        let mut out = Vec::with_capacity(max);
        for (id, w) in cands {
            if out.len() == max {
                break;
            }
            let Ok(enc) = self.inner.encode(format!(" {w}"), false) else {
                continue;
            };
            if enc.get_ids() == [id] {
                out.push((w, id));
            }
        }
        out
    }
}

/// ⌈chars / 4⌉, at least 1: the token count used when no tokenizer is given.
pub fn approx_count(text: &str) -> u32 {
    let chars = text.chars().count();
    u32::try_from(chars.div_ceil(4).max(1)).unwrap_or(u32::MAX)
}

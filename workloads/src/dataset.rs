//! Datasets whose entries give each request its lengths (and, for ShareGPT, its prompt):
//! ShareGPT conversations measured with a tokenizer and filtered as vLLM does, and
//! Mooncake-style JSONL traces. Malformed input is an error naming the entry; every entry
//! left out is counted in the [`LoadReport`], never skipped silently.

use std::path::Path;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::spec::WorkloadError;
use crate::tokenizer::{LoadedTokenizer, approx_count};

const SHUFFLE_SALT: u64 = 0x7368_7566_666c_6521; // "shuffle!"

/// One dataset entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The prompt text, when the dataset has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    pub input_len: u32,
    pub output_len: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_ms: Option<f64>,
    /// Prefix-block hashes (Mooncake traces): requests sharing a hash share that block.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hash_ids: Vec<u64>,
}

/// vLLM's ShareGPT filters, each bound configurable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filters {
    pub min_prompt_len: u32,
    pub min_output_len: u32,
    pub max_prompt_len: u32,
    pub max_total_len: u32,
}

impl Filters {
    /// vLLM's ShareGPT filters.
    pub const VLLM: Filters = Filters {
        min_prompt_len: 4,
        min_output_len: 4,
        max_prompt_len: 1024,
        max_total_len: 2048,
    };
}

impl Default for Filters {
    fn default() -> Self {
        Filters::VLLM
    }
}

/// How token counts were obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenCounts {
    /// Counted with the given tokenizer.json.
    Tokenizer,
    /// ⌈chars/4⌉ (no tokenizer given): approximate.
    ApproximateCharsOver4,
    /// Taken from the file (traces).
    Given,
}

/// What loading did with every entry of the file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadReport {
    pub entries_in_file: u64,
    pub fewer_than_two_turns: u64,
    /// Entries measured (in shuffled order) until enough were kept.
    pub examined: u64,
    pub kept: u64,
    pub dropped_prompt_too_short: u64,
    pub dropped_output_too_short: u64,
    pub dropped_prompt_too_long: u64,
    pub dropped_total_too_long: u64,
    /// Fewer entries were kept than requests asked for: entries are reused in order.
    pub oversampled: bool,
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} entries in the file, {} with fewer than two turns",
            self.entries_in_file, self.fewer_than_two_turns
        )?;
        if self.examined > 0 {
            write!(
                f,
                "; of {} examined, {} kept, prompt too short {}, output too short {}, prompt too long {}, total too long {}",
                self.examined,
                self.kept,
                self.dropped_prompt_too_short,
                self.dropped_output_too_short,
                self.dropped_prompt_too_long,
                self.dropped_total_too_long
            )?;
        }
        Ok(())
    }
}

/// A loaded dataset, ready to be sent to workers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    /// "sharegpt" or "trace".
    pub name: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<String>,
    pub token_counts: TokenCounts,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<Filters>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_len_override: Option<u32>,
    pub report: LoadReport,
    /// Request i uses `entries[i mod len]`.
    #[serde(default)]
    pub entries: Vec<Entry>,
}

/// A dataset or trace file, whole, under [`rackload_input::caps::DATASET`].
fn read_dataset(path: &Path) -> Result<Vec<u8>, WorkloadError> {
    rackload_input::read_capped(path, rackload_input::caps::DATASET, "a dataset").map_err(|e| {
        WorkloadError::Invalid {
            field: "dataset_path",
            reason: e.to_string(),
        }
    })
}

fn file_err(path: &Path, reason: impl Into<String>) -> WorkloadError {
    WorkloadError::File {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Options of [`load_sharegpt`].
#[derive(Clone, Debug, Default)]
pub struct ShareGptOptions {
    pub filters: Filters,
    pub output_len_override: Option<u32>,
    /// Entries wanted (the number of requests); fewer are oversampled.
    pub wanted: u64,
    pub seed: u64,
}

/// Each entry's first two turns (prompt, completion), the shape of every entry checked
/// before any is measured; entries with fewer than two turns are counted and skipped.
fn first_turns<'a>(
    path: &Path,
    list: &'a [Value],
    report: &mut LoadReport,
) -> Result<Vec<(&'a str, &'a str)>, WorkloadError> {
    let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(list.len());
    for (k, entry) in list.iter().enumerate() {
        let id = entry
            .get("id")
            .and_then(Value::as_str)
            .map_or(String::new(), |i| format!(" (id {i:?})"));
        let bad = |what: String| file_err(path, format!("entry {k}{id}: {what}"));
        let conv = entry
            .get("conversations")
            .ok_or_else(|| bad("has no \"conversations\" field".into()))?
            .as_array()
            .ok_or_else(|| bad("\"conversations\" is not a list".into()))?;
        let mut turns = Vec::with_capacity(2);
        for (t, turn) in conv.iter().take(2).enumerate() {
            let v = turn
                .get("value")
                .ok_or_else(|| bad(format!("turn {t} has no \"value\"")))?
                .as_str()
                .ok_or_else(|| bad(format!("turn {t}'s \"value\" is not a string")))?;
            turns.push(v);
        }
        if turns.len() < 2 {
            report.fewer_than_two_turns += 1;
            continue;
        }
        pairs.push((turns[0], turns[1]));
    }
    Ok(pairs)
}

/// `0..n` in a seeded Fisher–Yates order, so that the first kept entries are a random
/// sample, the same for the same seed.
fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    use rand::RngExt;
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ SHUFFLE_SALT);
    for i in (1..order.len()).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    order
}

/// Loads a ShareGPT file: first turn as the prompt, second turn's length as the output
/// length (unless overridden), vLLM's filters, entries in a seeded shuffled order.
pub fn load_sharegpt(
    path: &Path,
    tokenizer: Option<&LoadedTokenizer>,
    opts: &ShareGptOptions,
) -> Result<Dataset, WorkloadError> {
    let text = read_dataset(path)?;
    if text.iter().all(u8::is_ascii_whitespace) {
        return Err(file_err(
            path,
            "the file is empty (expected a JSON list of {\"conversations\": [...]} entries)",
        ));
    }
    let doc: Value =
        serde_json::from_slice(&text).map_err(|e| file_err(path, format!("not JSON: {e}")))?;
    let list = doc.as_array().ok_or_else(|| {
        file_err(
            path,
            "expected a JSON list of {\"conversations\": [...]} entries",
        )
    })?;
    let mut report = LoadReport {
        entries_in_file: list.len() as u64,
        ..LoadReport::default()
    };
    let pairs = first_turns(path, list, &mut report)?;
    let order = shuffled(pairs.len(), opts.seed);
    let count = |s: &str| match tokenizer {
        Some(t) => t.count(s),
        None => Ok(approx_count(s)),
    };
    let f = opts.filters;
    let mut entries = Vec::new();
    for &k in &order {
        if entries.len() as u64 >= opts.wanted.max(1) {
            break;
        }
        report.examined += 1;
        let (prompt, completion) = pairs[k];
        let input_len = count(prompt)?;
        let output_len = match opts.output_len_override {
            Some(n) => n,
            None => count(completion)?,
        };
        if input_len < f.min_prompt_len {
            report.dropped_prompt_too_short += 1;
        } else if opts.output_len_override.is_none() && output_len < f.min_output_len {
            report.dropped_output_too_short += 1;
        } else if input_len > f.max_prompt_len {
            report.dropped_prompt_too_long += 1;
        } else if input_len.saturating_add(output_len) > f.max_total_len {
            report.dropped_total_too_long += 1;
        } else {
            entries.push(Entry {
                prompt: Some(prompt.to_owned()),
                input_len,
                output_len,
                timestamp_ms: None,
                hash_ids: Vec::new(),
            });
        }
    }
    report.kept = entries.len() as u64;
    if entries.is_empty() {
        return Err(file_err(
            path,
            format!("no entry passed the filters ({report})"),
        ));
    }
    report.oversampled = report.kept < opts.wanted;
    Ok(Dataset {
        name: "sharegpt".into(),
        path: path.display().to_string(),
        tokenizer: tokenizer.map(|t| t.path.clone()),
        token_counts: if tokenizer.is_some() {
            TokenCounts::Tokenizer
        } else {
            TokenCounts::ApproximateCharsOver4
        },
        filters: Some(f),
        output_len_override: opts.output_len_override,
        report,
        entries,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TraceLine {
    timestamp: f64,
    input_length: u32,
    output_length: u32,
    #[serde(default)]
    hash_ids: Vec<u64>,
}

/// Loads a Mooncake-style JSONL trace: one `{"timestamp": ms, "input_length": n,
/// "output_length": m, "hash_ids": [...]}` per line, timestamps non-decreasing.
pub fn load_trace(path: &Path) -> Result<Dataset, WorkloadError> {
    let text = String::from_utf8(read_dataset(path)?)
        .map_err(|e| file_err(path, format!("not UTF-8 text: {}", e.utf8_error())))?;
    let mut entries = Vec::new();
    let mut prev = f64::NEG_INFINITY;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let t: TraceLine = serde_json::from_str(line)
            .map_err(|e| file_err(path, format!("line {}: {e}", n + 1)))?;
        if !t.timestamp.is_finite() || t.timestamp < prev {
            return Err(file_err(
                path,
                format!(
                    "line {}: timestamp {} is before the previous {prev}",
                    n + 1,
                    t.timestamp
                ),
            ));
        }
        let cap = crate::scenario::MAX_TOKENS;
        if !(1..=cap).contains(&t.input_length) || !(1..=cap).contains(&t.output_length) {
            return Err(file_err(
                path,
                format!(
                    "line {}: input_length and output_length must be between 1 and {cap}",
                    n + 1
                ),
            ));
        }
        prev = t.timestamp;
        entries.push(Entry {
            prompt: None,
            input_len: t.input_length,
            output_len: t.output_length,
            timestamp_ms: Some(t.timestamp),
            hash_ids: t.hash_ids,
        });
    }
    if entries.is_empty() {
        return Err(file_err(path, "the trace has no requests"));
    }
    let n = entries.len() as u64;
    Ok(Dataset {
        name: "trace".into(),
        path: path.display().to_string(),
        tokenizer: None,
        token_counts: TokenCounts::Given,
        filters: None,
        output_len_override: None,
        report: LoadReport {
            entries_in_file: n,
            examined: n,
            kept: n,
            ..LoadReport::default()
        },
        entries,
    })
}

impl Dataset {
    /// Timestamp of request i in a trace replayed in a loop: each pass adds the trace's
    /// span plus one mean gap.
    pub(crate) fn timestamp_ms(&self, i: u64) -> Option<f64> {
        let n = self.entries.len() as u64;
        if n == 0 {
            return None;
        }
        let first = self.entries[0].timestamp_ms?;
        let last = self.entries[(n - 1) as usize].timestamp_ms?;
        let period = if n > 1 {
            (last - first) * n as f64 / (n - 1) as f64
        } else {
            1000.0
        };
        let t = self.entries[(i % n) as usize].timestamp_ms?;
        Some(t + period * (i / n) as f64)
    }
}

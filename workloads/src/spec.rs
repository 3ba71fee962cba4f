//! `WorkloadSpec`: the validated, serialisable description of a request stream, and the
//! functions every worker uses to produce request `i` of it — its lengths
//! ([`WorkloadSpec::request`]), its prompt ([`WorkloadSpec::prompt`]) and, for open loops,
//! its send offset ([`WorkloadSpec::schedule`]). All are pure functions of (spec, i).

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::arrival::Arrival;
use crate::dataset::Dataset;
use crate::lengths::{self, RangeMode};
use crate::prompt::{Prompt, PromptSpec};
use crate::synthetic;

/// What can be wrong with a workload description.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WorkloadError {
    #[error("length must be at least 1 token")]
    ZeroLength,
    #[error("random range ratio {ratio} is outside the {mode} mode's domain ({domain})")]
    RatioOutOfRange {
        ratio: f64,
        mode: RangeMode,
        domain: &'static str,
    },
    #[error("unknown range mode {0:?} (expected \"one-sided\" or \"symmetric\")")]
    UnknownRangeMode(String),
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
}

/// Where request lengths come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Lengths {
    /// InferenceX / vLLM "random": nominal lengths with jitter.
    Random {
        input_len: u32,
        output_len: u32,
        range_ratio: f64,
        range_mode: RangeMode,
    },
    /// Entries of a loaded dataset (ShareGPT, trace).
    Dataset(Dataset),
    /// The embedded ShareGPT-like distribution ([`crate::synthetic`]).
    SharegptSynthetic,
}

impl Default for Lengths {
    fn default() -> Self {
        Lengths::Random {
            input_len: 1024,
            output_len: 1024,
            range_ratio: 0.8,
            range_mode: RangeMode::OneSided,
        }
    }
}

/// A whole request stream.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkloadSpec {
    pub lengths: Lengths,
    #[serde(default)]
    pub arrival: Arrival,
    #[serde(default)]
    pub prompt: PromptSpec,
    #[serde(default)]
    pub seed: u64,
    /// Ask the server to ignore EOS so that output length is exactly the request's.
    #[serde(default = "yes")]
    pub ignore_eos: bool,
}

fn yes() -> bool {
    true
}

/// One request of the stream, before it becomes an HTTP body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestSpec {
    /// Global index in the run's stream.
    pub index: u64,
    pub input_len: u32,
    pub output_len: u32,
    /// Seed of this request's synthesised prompt.
    pub prompt_seed: u64,
    /// The dataset entry it came from.
    pub entry: Option<usize>,
}

/// Block size of Mooncake trace hash ids, in tokens.
pub(crate) const HASH_BLOCK_TOKENS: u32 = 512;

impl WorkloadSpec {
    /// A random-lengths workload (closed loop, built-in prompt words).
    pub fn random(
        input_len: u32,
        output_len: u32,
        range_ratio: f64,
        range_mode: RangeMode,
        seed: u64,
    ) -> WorkloadSpec {
        WorkloadSpec {
            lengths: Lengths::Random {
                input_len,
                output_len,
                range_ratio,
                range_mode,
            },
            seed,
            ignore_eos: true,
            ..WorkloadSpec::default()
        }
    }

    /// Checks every field; the error names the field and what was expected.
    pub fn validate(&self) -> Result<(), WorkloadError> {
        // A bad ratio is the ratio's fault, a zero length the length's.
        let field = |field, e: WorkloadError| {
            let field = if matches!(e, WorkloadError::RatioOutOfRange { .. }) {
                "random_range_ratio"
            } else {
                field
            };
            WorkloadError::Invalid {
                field,
                reason: e.to_string(),
            }
        };
        match &self.lengths {
            Lengths::Random {
                input_len,
                output_len,
                range_ratio,
                range_mode,
            } => {
                lengths::bounds(*input_len, *range_ratio, *range_mode)
                    .map_err(|e| field("random_input_len", e))?;
                lengths::bounds(*output_len, *range_ratio, *range_mode)
                    .map_err(|e| field("random_output_len", e))?;
            }
            Lengths::Dataset(d) => {
                if d.entries.is_empty() {
                    return Err(WorkloadError::Invalid {
                        field: "dataset",
                        reason: format!("{} has no entries", d.path),
                    });
                }
            }
            Lengths::SharegptSynthetic => {}
        }
        self.arrival.validate()?;
        if matches!(self.arrival, Arrival::Trace { .. })
            && !matches!(&self.lengths, Lengths::Dataset(d) if d.name == "trace")
        {
            return Err(WorkloadError::Invalid {
                field: "arrival",
                reason: "trace replay needs a trace dataset (--dataset-name trace)".into(),
            });
        }
        if self.prompt.vocab.words.is_empty() {
            return Err(WorkloadError::Invalid {
                field: "prompt.vocab",
                reason: "no words to build prompts from".into(),
            });
        }
        Ok(())
    }

    /// Request `index` of the stream: a pure function of `(self, index)`.
    ///
    /// Each index has its own ChaCha8 stream (seeded by `seed`, stream = index), so a
    /// request does not depend on which other requests a worker generated.
    pub fn request(&self, index: u64) -> Result<RequestSpec, WorkloadError> {
        use rand::RngExt;
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(index);
        let (input_len, output_len, entry) = match &self.lengths {
            Lengths::Random {
                input_len,
                output_len,
                range_ratio,
                range_mode,
            } => {
                let (ilo, ihi) = lengths::bounds(*input_len, *range_ratio, *range_mode)?;
                let (olo, ohi) = lengths::bounds(*output_len, *range_ratio, *range_mode)?;
                (
                    rng.random_range(ilo..=ihi),
                    rng.random_range(olo..=ohi),
                    None,
                )
            }
            Lengths::Dataset(d) => {
                if d.entries.is_empty() {
                    return Err(WorkloadError::Invalid {
                        field: "dataset",
                        reason: "no entries".into(),
                    });
                }
                let k = (index % d.entries.len() as u64) as usize;
                (d.entries[k].input_len, d.entries[k].output_len, Some(k))
            }
            Lengths::SharegptSynthetic => {
                let (i, o) = synthetic::sample(&mut rng);
                (i, o, None)
            }
        };
        let prompt_seed = rng.random::<u64>();
        Ok(RequestSpec {
            index,
            input_len,
            output_len,
            prompt_seed,
            entry,
        })
    }

    /// The prompt of `req`: the dataset's text when it has one, else synthesised words
    /// (trace requests share the blocks their hash ids share).
    pub fn prompt(&self, req: &RequestSpec) -> Prompt {
        if let (Lengths::Dataset(d), Some(k)) = (&self.lengths, req.entry) {
            let e = &d.entries[k];
            if let Some(text) = &e.prompt {
                return Prompt::Text(text.clone());
            }
            return self.prompt.synthesize(
                req.input_len,
                req.prompt_seed,
                &e.hash_ids,
                HASH_BLOCK_TOKENS,
            );
        }
        self.prompt
            .synthesize(req.input_len, req.prompt_seed, &[], HASH_BLOCK_TOKENS)
    }

    /// Token ids of `req`'s prompt when they are known without encoding: synthesised
    /// prompts from a tokenizer's vocabulary. `None` for dataset text and built-in words.
    pub fn prompt_token_ids(&self, req: &RequestSpec) -> Option<Vec<u32>> {
        if self.prompt.vocab.ids.is_empty() {
            return None;
        }
        let mut ids_spec = self.prompt.clone();
        ids_spec.format = crate::prompt::PromptFormat::TokenIds;
        let blocks: &[u64] = match (&self.lengths, req.entry) {
            (Lengths::Dataset(d), Some(k)) if d.entries[k].prompt.is_some() => return None,
            (Lengths::Dataset(d), Some(k)) => &d.entries[k].hash_ids,
            _ => &[],
        };
        match ids_spec.synthesize(req.input_len, req.prompt_seed, blocks, HASH_BLOCK_TOKENS) {
            Prompt::TokenIds(ids) => Some(ids),
            Prompt::Text(_) => None,
        }
    }

    /// Send offsets (s) of requests `0..n` from the start instant; empty for a closed loop.
    pub fn schedule(&self, n: u64) -> Vec<f64> {
        self.schedule_prefix(n, n)
    }

    /// The send offsets a worker needs for `stripe`: the global schedule's prefix up to the
    /// stripe's last index (indexed by global index; empty for an empty stripe). Every
    /// worker computes the same offsets, so the union of shards is the single-host schedule.
    pub fn stripe_schedule(&self, stripe: &crate::Stripe) -> Vec<f64> {
        stripe
            .last()
            .map(|last| self.schedule_prefix(stripe.total, last + 1))
            .unwrap_or_default()
    }

    /// The first `upto` send offsets of a stream of `n` requests.
    pub fn schedule_prefix(&self, n: u64, upto: u64) -> Vec<f64> {
        let trace = |i: u64| match &self.lengths {
            Lengths::Dataset(d) => d.timestamp_ms(i),
            _ => None,
        };
        self.arrival.schedule_prefix(self.seed, n, upto, trace)
    }

    /// Number of entries a dataset holds (the natural number of requests of a trace).
    pub fn dataset_len(&self) -> Option<u64> {
        match &self.lengths {
            Lengths::Dataset(d) => Some(d.entries.len() as u64),
            _ => None,
        }
    }

    /// The spec for the wire: everything, dataset entries included.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses and validates a spec from the wire.
    pub fn from_json(bytes: &[u8]) -> Result<WorkloadSpec, WorkloadError> {
        let spec: WorkloadSpec =
            serde_json::from_slice(bytes).map_err(|e| WorkloadError::Invalid {
                field: "workload",
                reason: format!("not a workload spec: {e}"),
            })?;
        spec.validate()?;
        Ok(spec)
    }

    /// The tokenizer.json the workload's token counts come from, if any (a server that
    /// should count prompts the same way is given it).
    pub fn tokenizer_path(&self) -> Option<&str> {
        match &self.lengths {
            Lengths::Dataset(d) if d.tokenizer.is_some() => d.tokenizer.as_deref(),
            _ => (self.prompt.vocab.source != "builtin").then_some(&*self.prompt.vocab.source),
        }
    }

    /// What results record: the spec without the bulk (dataset entries and prompt words),
    /// which the recorded file, tokenizer, filters and seed reproduce.
    pub fn provenance(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(d) = v.pointer_mut("/lengths").and_then(|l| l.as_object_mut()) {
            d.remove("entries");
        }
        if let Some(p) = v
            .pointer_mut("/prompt/vocab")
            .and_then(|l| l.as_object_mut())
        {
            let n = p
                .get("words")
                .and_then(|w| w.as_array())
                .map_or(0, Vec::len);
            p.remove("words");
            p.remove("ids");
            p.insert("word_count".into(), n.into());
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_index_same_request() {
        let spec = WorkloadSpec::default();
        for i in [0, 1, 7, 1_000_000] {
            assert_eq!(spec.request(i), spec.request(i));
        }
        assert_ne!(spec.request(1), spec.request(2));
    }

    #[test]
    fn lengths_stay_in_bounds_and_one_sided_mean_is_near_0_9_l() {
        let spec = WorkloadSpec::default();
        let n = 20_000u64;
        let mut sum = 0u64;
        for i in 0..n {
            let r = spec.request(i).expect("valid spec");
            assert!((819..=1024).contains(&r.input_len), "{r:?}");
            assert!((819..=1024).contains(&r.output_len), "{r:?}");
            sum += u64::from(r.output_len);
        }
        let mean = sum as f64 / n as f64;
        // E = (819 + 1024) / 2 = 921.5 ≈ 0.9·L; the std error of the mean is ~0.4 here.
        assert!((mean - 921.5).abs() < 3.0, "mean {mean}");
    }

    #[test]
    fn validation_names_the_field() {
        let spec = WorkloadSpec::random(1024, 0, 0.8, RangeMode::OneSided, 0);
        let err = spec.validate().unwrap_err().to_string();
        assert!(err.starts_with("random_output_len"), "{err}");
    }

    #[test]
    fn wire_round_trip_and_provenance_without_bulk() {
        let spec = WorkloadSpec {
            arrival: Arrival::Gamma {
                rate: 3.0,
                burstiness: 0.5,
            },
            ..WorkloadSpec::default()
        };
        assert_eq!(WorkloadSpec::from_json(&spec.to_json()), Ok(spec.clone()));
        let p = spec.provenance();
        assert_eq!(p["arrival"]["kind"], "gamma");
        assert_eq!(p["lengths"]["range_mode"], "one-sided");
        assert!(p["prompt"]["vocab"].get("words").is_none());
        assert!(WorkloadSpec::from_json(b"{\"lengths\":{\"kind\":\"nope\"}}").is_err());
    }
}

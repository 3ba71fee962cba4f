//! From what was typed to a `WorkloadSpec`: InferenceX v1 scenario presets, the workload
//! settings a flag or a scenario file's `[workload]` table can give (all optional, merged
//! field by field, flags over file), and the one place where defaults are applied and
//! datasets and tokenizers are loaded.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::arrival::Arrival;
use crate::dataset::{self, Filters, ShareGptOptions};
use crate::lengths::RangeMode;
use crate::prompt::{PromptFormat, PromptSpec, Vocab};
use crate::spec::{Lengths, WorkloadError, WorkloadSpec};
use crate::tokenizer::LoadedTokenizer;

/// InferenceX v1's scenarios: nominal input/output lengths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// 1024 in / 1024 out.
    Chat,
    /// 1024 in / 8192 out.
    Reasoning,
    /// 8192 in / 1024 out.
    Summarize,
}

impl Preset {
    pub const ALL: [Preset; 3] = [Preset::Chat, Preset::Reasoning, Preset::Summarize];

    pub fn lengths(self) -> (u32, u32) {
        match self {
            Preset::Chat => (1024, 1024),
            Preset::Reasoning => (1024, 8192),
            Preset::Summarize => (8192, 1024),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Preset::Chat => "chat",
            Preset::Reasoning => "reasoning",
            Preset::Summarize => "summarize",
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Preset {
    type Err = WorkloadError;
    fn from_str(s: &str) -> Result<Preset, WorkloadError> {
        Preset::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| WorkloadError::Invalid {
                field: "scenario",
                reason: format!("{s:?} is not one of chat, reasoning, summarize"),
            })
    }
}

/// Where lengths come from, by name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetName {
    #[default]
    Random,
    Sharegpt,
    SharegptSynthetic,
    Trace,
}

/// Arrival processes, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArrivalName {
    Closed,
    Poisson,
    Gamma,
    Constant,
    Ramp,
    Trace,
}

/// Workload settings as typed: every field optional. Flags and a scenario file's
/// `[workload]` table use the same names (flags with dashes).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadConfig {
    pub scenario: Option<Preset>,
    pub random_input_len: Option<u32>,
    pub random_output_len: Option<u32>,
    pub random_range_ratio: Option<f64>,
    pub range_mode: Option<RangeMode>,
    pub dataset_name: Option<DatasetName>,
    pub dataset_path: Option<PathBuf>,
    pub tokenizer: Option<PathBuf>,
    pub sharegpt_output_len: Option<u32>,
    pub min_prompt_len: Option<u32>,
    pub min_output_len: Option<u32>,
    pub max_prompt_len: Option<u32>,
    pub max_total_len: Option<u32>,
    pub arrival: Option<ArrivalName>,
    pub request_rate: Option<f64>,
    pub burstiness: Option<f64>,
    pub ramp_start_rate: Option<f64>,
    pub ramp_end_rate: Option<f64>,
    pub trace_time_scale: Option<f64>,
    pub prompt_format: Option<PromptFormat>,
    pub shared_prefix_len: Option<u32>,
    pub seed: Option<u64>,
    pub ignore_eos: Option<bool>,
}

/// The longest length a run may ask for, in tokens (4 Mi): past every model's context,
/// and a bound on the prompt a worker builds (about 4.4 bytes a token).
pub const MAX_TOKENS: u32 = 1 << 22;

/// Request rates, per second: from one an hour-ish (0.001) to ten million.
pub const RATE_BOUNDS: (f64, f64) = (1e-3, 1e7);

/// Gamma burstiness and trace time scales: a factor of a thousand either way.
pub const SHAPE_BOUNDS: (f64, f64) = (1e-3, 1e3);

macro_rules! merge {
    ($a:ident, $b:ident; $($f:ident),* $(,)?) => {
        WorkloadConfig { $($f: $a.$f.or($b.$f)),* }
    };
}

/// The workload's defaults, in one table (`rackload-spec` re-exports it beside the run's,
/// as `defaults::workload`): what [`WorkloadConfig::resolve`] applies where nothing was said.
pub mod defaults {
    use super::Preset;
    use crate::dataset::Filters;

    /// Random lengths follow InferenceX's chat scenario.
    pub const PRESET: Preset = Preset::Chat;
    /// InferenceX's jitter: lengths drawn from ⌊0.8·L⌋ … L (one-sided).
    pub const RANGE_RATIO: f64 = 0.8;
    pub const SEED: u64 = 0;
    /// Gamma burstiness 1 is Poisson.
    pub const BURSTINESS: f64 = 1.0;
    pub const TRACE_TIME_SCALE: f64 = 1.0;
    pub const SHARED_PREFIX_LEN: u32 = 0;
    /// Output lengths are forced (`ignore_eos`).
    pub const IGNORE_EOS: bool = true;
    /// ShareGPT entries sampled when the run's count is not known.
    pub const SHAREGPT_SAMPLE: u64 = 1000;
    /// vLLM's ShareGPT filters.
    pub const FILTERS: Filters = Filters::VLLM;
    /// Words taken from a tokenizer for exact-length prompts.
    pub const TOKENIZER_VOCAB_WORDS: usize = 4096;
}

use defaults as d;

impl WorkloadConfig {
    /// `self` where it says something, else `base`.
    pub fn or(self, base: WorkloadConfig) -> WorkloadConfig {
        let (a, b) = (self, base);
        merge!(a, b; scenario, random_input_len, random_output_len, random_range_ratio,
            range_mode, dataset_name, dataset_path, tokenizer, sharegpt_output_len,
            min_prompt_len, min_output_len, max_prompt_len, max_total_len, arrival,
            request_rate, burstiness, ramp_start_rate, ramp_end_rate, trace_time_scale,
            prompt_format, shared_prefix_len, seed, ignore_eos)
    }

    /// Checks each value on its own, before anything is merged or loaded, so that an error
    /// can name where the value was said (the caller spells `field` as a flag or a file's
    /// key). Lengths are at most [`MAX_TOKENS`]; rates, burstiness and time scales finite
    /// and inside the bounds a run can keep (a rate of 1e-300 would schedule its second
    /// request after the universe has ended).
    pub fn check_values(&self) -> Result<(), WorkloadError> {
        let invalid =
            |field: &'static str, reason: String| Err(WorkloadError::Invalid { field, reason });
        for (field, v) in [
            ("random_input_len", self.random_input_len),
            ("random_output_len", self.random_output_len),
            ("sharegpt_output_len", self.sharegpt_output_len),
            ("shared_prefix_len", self.shared_prefix_len),
        ] {
            match v {
                Some(0) if field != "shared_prefix_len" => {
                    return invalid(field, "must be at least 1 token".into());
                }
                Some(n) if n > MAX_TOKENS => {
                    return invalid(field, format!("{n} is over the cap of {MAX_TOKENS} tokens"));
                }
                _ => {}
            }
        }
        for (field, p) in [
            ("dataset_path", &self.dataset_path),
            ("tokenizer", &self.tokenizer),
        ] {
            if p.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                return invalid(field, "is empty (expected a file's path)".into());
            }
        }
        if let Some(r) = self.random_range_ratio.filter(|r| !(0.0..=1.0).contains(r)) {
            return invalid(
                "random_range_ratio",
                format!("{r} is not a ratio between 0 and 1"),
            );
        }
        for (field, v, (lo, hi)) in [
            ("request_rate", self.request_rate, RATE_BOUNDS),
            ("ramp_start_rate", self.ramp_start_rate, RATE_BOUNDS),
            ("ramp_end_rate", self.ramp_end_rate, RATE_BOUNDS),
            ("burstiness", self.burstiness, SHAPE_BOUNDS),
            ("trace_time_scale", self.trace_time_scale, SHAPE_BOUNDS),
        ] {
            if let Some(v) = v.filter(|v| !(lo..=hi).contains(v)) {
                return invalid(
                    field,
                    format!("{v:?} is not a number between {lo} and {hi}"),
                );
            }
        }
        Ok(())
    }

    /// Makes relative paths relative to `dir` (a scenario file's folder).
    pub fn rebase_paths(&mut self, dir: &Path) {
        for p in [&mut self.dataset_path, &mut self.tokenizer]
            .into_iter()
            .flatten()
        {
            if p.is_relative() && !p.as_os_str().is_empty() {
                *p = dir.join(&*p);
            }
        }
    }

    /// The arrival process these settings give (known before any file is loaded).
    pub fn arrival_process(&self) -> Result<Arrival, WorkloadError> {
        self.arrival(self.dataset_name.unwrap_or_default())
    }

    fn arrival(&self, dataset: DatasetName) -> Result<Arrival, WorkloadError> {
        let rate = self.request_rate;
        let b = self.burstiness.unwrap_or(d::BURSTINESS);
        let need_rate = |name: &str| {
            rate.ok_or_else(|| WorkloadError::Invalid {
                field: "request_rate",
                reason: format!("the {name} arrival process needs --request-rate"),
            })
        };
        let name = match self.arrival {
            Some(a) => a,
            None if self.ramp_start_rate.is_some() || self.ramp_end_rate.is_some() => {
                ArrivalName::Ramp
            }
            None if rate.is_some() && b != 1.0 => ArrivalName::Gamma,
            None if rate.is_some() => ArrivalName::Poisson,
            None if dataset == DatasetName::Trace => ArrivalName::Trace,
            None if self.burstiness.is_some() => {
                return Err(WorkloadError::Invalid {
                    field: "burstiness",
                    reason: "--burstiness needs --request-rate".into(),
                });
            }
            None => ArrivalName::Closed,
        };
        Ok(match name {
            ArrivalName::Closed => Arrival::Closed,
            ArrivalName::Poisson => Arrival::Poisson {
                rate: need_rate("poisson")?,
            },
            ArrivalName::Gamma => Arrival::Gamma {
                rate: need_rate("gamma")?,
                burstiness: b,
            },
            ArrivalName::Constant => Arrival::Constant {
                rate: need_rate("constant")?,
            },
            ArrivalName::Ramp => {
                let missing = |f: &'static str| WorkloadError::Invalid {
                    field: f,
                    reason: "a ramp needs --ramp-start-rate and --ramp-end-rate".into(),
                };
                Arrival::Ramp {
                    start_rate: self
                        .ramp_start_rate
                        .ok_or_else(|| missing("ramp_start_rate"))?,
                    end_rate: self.ramp_end_rate.ok_or_else(|| missing("ramp_end_rate"))?,
                    burstiness: b,
                }
            }
            ArrivalName::Trace => Arrival::Trace {
                time_scale: self.trace_time_scale.unwrap_or(d::TRACE_TIME_SCALE),
            },
        })
    }

    /// Applies defaults, loads the tokenizer and dataset, and validates the result.
    /// `num_prompts` is how many requests the run will send, when known (ShareGPT samples
    /// that many entries; fewer are oversampled).
    pub fn resolve(&self, num_prompts: Option<u64>) -> Result<WorkloadSpec, WorkloadError> {
        let seed = self.seed.unwrap_or(d::SEED);
        let tokenizer = self
            .tokenizer
            .as_deref()
            .map(LoadedTokenizer::load)
            .transpose()?;
        let dataset = self.dataset_name.unwrap_or_default();
        let path = || {
            self.dataset_path
                .as_deref()
                .ok_or_else(|| WorkloadError::Invalid {
                    field: "dataset_path",
                    reason: format!(
                        "--dataset-name {} needs --dataset-path FILE",
                        serde_plain(&dataset)
                    ),
                })
        };
        if dataset != DatasetName::Random {
            for (set, flag) in [
                (
                    self.random_input_len.is_some() || self.random_output_len.is_some(),
                    "--random-input-len/--random-output-len",
                ),
                (self.scenario.is_some(), "--scenario"),
            ] {
                if set {
                    return Err(WorkloadError::Invalid {
                        field: "dataset_name",
                        reason: format!("{flag} applies only to --dataset-name random"),
                    });
                }
            }
        }
        let lengths = match dataset {
            DatasetName::Random => {
                let (pi, po) = self.scenario.unwrap_or(d::PRESET).lengths();
                Lengths::Random {
                    input_len: self.random_input_len.unwrap_or(pi),
                    output_len: self.random_output_len.unwrap_or(po),
                    range_ratio: self.random_range_ratio.unwrap_or(d::RANGE_RATIO),
                    range_mode: self.range_mode.unwrap_or_default(),
                }
            }
            DatasetName::Sharegpt => {
                let f = d::FILTERS;
                let opts = ShareGptOptions {
                    filters: Filters {
                        min_prompt_len: self.min_prompt_len.unwrap_or(f.min_prompt_len),
                        min_output_len: self.min_output_len.unwrap_or(f.min_output_len),
                        max_prompt_len: self.max_prompt_len.unwrap_or(f.max_prompt_len),
                        max_total_len: self.max_total_len.unwrap_or(f.max_total_len),
                    },
                    output_len_override: self.sharegpt_output_len,
                    wanted: num_prompts.unwrap_or(d::SHAREGPT_SAMPLE),
                    seed,
                };
                Lengths::Dataset(dataset::load_sharegpt(path()?, tokenizer.as_ref(), &opts)?)
            }
            DatasetName::SharegptSynthetic => Lengths::SharegptSynthetic,
            DatasetName::Trace => Lengths::Dataset(dataset::load_trace(path()?)?),
        };
        let format = self.prompt_format.unwrap_or_default();
        let vocab = match &tokenizer {
            Some(t) => {
                let words = t.single_token_words(d::TOKENIZER_VOCAB_WORDS);
                if words.is_empty() {
                    return Err(WorkloadError::File {
                        path: t.path.clone(),
                        reason: "the tokenizer has no single-token lowercase words to build prompts from".into(),
                    });
                }
                let (words, ids) = words.into_iter().unzip();
                Vocab {
                    source: t.path.clone(),
                    words,
                    ids,
                }
            }
            None if format == PromptFormat::TokenIds => {
                return Err(WorkloadError::Invalid {
                    field: "prompt_format",
                    reason: "token-id prompts need --tokenizer".into(),
                });
            }
            None => Vocab::default(),
        };
        let spec = WorkloadSpec {
            lengths,
            arrival: self.arrival(dataset)?,
            prompt: PromptSpec {
                format,
                vocab,
                shared_prefix_len: self.shared_prefix_len.unwrap_or(d::SHARED_PREFIX_LEN),
            },
            seed,
            ignore_eos: self.ignore_eos.unwrap_or(d::IGNORE_EOS),
        };
        spec.validate()?;
        Ok(spec)
    }
}

fn serde_plain<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_and_overrides() {
        let c = WorkloadConfig {
            scenario: Some(Preset::Summarize),
            random_output_len: Some(64),
            ..WorkloadConfig::default()
        };
        let spec = c.resolve(None).expect("valid");
        assert!(matches!(
            spec.lengths,
            Lengths::Random {
                input_len: 8192,
                output_len: 64,
                ..
            }
        ));
        assert_eq!(spec.arrival, Arrival::Closed);
    }

    #[test]
    fn flags_override_file_field_by_field() {
        let file = WorkloadConfig {
            seed: Some(1),
            request_rate: Some(5.0),
            ..WorkloadConfig::default()
        };
        let flags = WorkloadConfig {
            seed: Some(2),
            ..WorkloadConfig::default()
        };
        let m = flags.or(file);
        assert_eq!((m.seed, m.request_rate), (Some(2), Some(5.0)));
    }

    #[test]
    fn arrival_is_derived_from_rate_and_burstiness() {
        let c = |rate, b| WorkloadConfig {
            request_rate: rate,
            burstiness: b,
            ..WorkloadConfig::default()
        };
        assert_eq!(
            c(Some(4.0), None).resolve(None).map(|s| s.arrival),
            Ok(Arrival::Poisson { rate: 4.0 })
        );
        assert_eq!(
            c(Some(4.0), Some(0.5)).resolve(None).map(|s| s.arrival),
            Ok(Arrival::Gamma {
                rate: 4.0,
                burstiness: 0.5
            })
        );
        assert!(c(None, Some(0.5)).resolve(None).is_err());
        let ramp = WorkloadConfig {
            ramp_start_rate: Some(1.0),
            ..WorkloadConfig::default()
        };
        assert!(ramp.resolve(None).unwrap_err().to_string().contains("ramp"));
    }

    #[test]
    fn datasets_need_paths_and_token_ids_need_a_tokenizer() {
        let c = WorkloadConfig {
            dataset_name: Some(DatasetName::Sharegpt),
            ..WorkloadConfig::default()
        };
        let e = c.resolve(Some(10)).unwrap_err().to_string();
        assert!(e.contains("--dataset-path"), "{e}");
        let c = WorkloadConfig {
            prompt_format: Some(PromptFormat::TokenIds),
            ..WorkloadConfig::default()
        };
        assert!(
            c.resolve(None)
                .unwrap_err()
                .to_string()
                .contains("--tokenizer")
        );
        let c = WorkloadConfig {
            dataset_name: Some(DatasetName::SharegptSynthetic),
            random_input_len: Some(5),
            ..WorkloadConfig::default()
        };
        assert!(c.resolve(None).is_err());
    }
}

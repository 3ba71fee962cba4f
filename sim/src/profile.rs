//! Serving profiles: what one replica of a system × model pair can do, in the terms of the
//! continuous-batching model (`batch.rs`). A decode step costs
//! `step_fixed_us + step_per_seq_us × sequences + step_per_kv_token_ns × KV tokens read /
//! 1000`, plus `prefill tokens ÷ prefill_tokens_per_s` for the prompt chunks it carries.
//!
//! The built-in numbers are derived from public hardware and model facts (HBM bandwidth
//! and capacity, KV bytes per token, active parameters), so that the curves have the right
//! order of magnitude — single-stream speeds of a few hundred tok/s/user, a few thousand to
//! tens of thousands of tok/s per GPU when saturated — not calibrated to any one
//! measurement. Each profile's doc says where its numbers come from. Two public points the
//! default profile was checked against: NVIDIA's 1.5 M tok/s for gpt-oss-120b on a GB200
//! NVL72 (≈ 21 k tok/s/GPU at maximum throughput; the B200 profile saturates at ~10–13 k
//! output tok/s/GPU on 1 k/1 k chat), and single-stream speeds of ~500 tok/s/user reported
//! with speculative decoding (which the model leaves out; it gives ~290 without). A TOML
//! file with the same keys defines a custom one (`--profile FILE.toml`).

use serde::Deserialize;

/// One replica's serving behaviour.
#[derive(Clone, Debug, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The hardware catalog's system it stands for (for tok/s/GPU and cost), if any.
    #[serde(default)]
    pub system: String,
    /// GPUs one replica stands for (tok/s/GPU = tok/s ÷ (replicas × this)).
    pub gpus_per_replica: u32,
    /// Most sequences in the running batch (vLLM `max_num_seqs`).
    pub max_num_seqs: u32,
    /// Tokens per step, decode and prefill chunks together (vLLM `max_num_batched_tokens`).
    pub max_num_batched_tokens: u32,
    /// KV cache capacity in tokens; requests wait when it is full, and the newest running
    /// one is preempted (recomputed later) when decoding overflows it.
    pub kv_cache_tokens: u64,
    /// Fixed cost of a step (kernel launches, MoE all-to-all, sampling), µs.
    pub step_fixed_us: f64,
    /// Cost per sequence in the batch, µs.
    pub step_per_seq_us: f64,
    /// Cost per KV-cache token read by attention, ns.
    pub step_per_kv_token_ns: f64,
    /// Prompt tokens processed per second when a step carries prefill.
    pub prefill_tokens_per_s: f64,
    /// A GPU's power idle, and with a full batch (W); in between it grows with the running
    /// batch's share of `max_num_seqs` (served at `/gpu/metrics`, DCGM's way).
    #[serde(default = "default_gpu_idle_w")]
    pub gpu_idle_w: f64,
    #[serde(default = "default_gpu_max_w")]
    pub gpu_max_w: f64,
    /// The rest of the node — CPUs, NICs, fans — drawn whatever the batch (W): the sim's
    /// Redfish page reports it plus every GPU's power, as a BMC reports the whole chassis.
    #[serde(default = "default_node_base_w")]
    pub node_base_w: f64,
}

pub(crate) fn default_node_base_w() -> f64 {
    2000.0
}

pub(crate) fn default_gpu_idle_w() -> f64 {
    150.0
}

pub(crate) fn default_gpu_max_w() -> f64 {
    1000.0
}

/// A GPU's power between `idle` and `max` with its batch `running` of `capacity` full.
pub(crate) fn gpu_power(idle: f64, max: f64, running: u64, capacity: u32) -> f64 {
    let share = (running as f64 / f64::from(capacity.max(1))).min(1.0);
    idle + (max - idle) * share
}

impl Profile {
    /// One GPU's power with `running` sequences in its replica's batch.
    pub fn gpu_power_w(&self, running: u64) -> f64 {
        gpu_power(self.gpu_idle_w, self.gpu_max_w, running, self.max_num_seqs)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("unknown profile {0:?} (built-in: {names}); or give a TOML file", names = BUILT_IN_NAMES.join(", "))]
    Unknown(String),
    #[error("profile file {path}: {reason}")]
    File { path: String, reason: String },
    /// A file that could not be read (it names itself).
    #[error(transparent)]
    Read(#[from] rackload_input::ReadError),
    #[error("profile {name}: {field} {reason}")]
    Invalid {
        name: String,
        field: &'static str,
        reason: String,
    },
}

/// The profile `rackload sim` and the embedded mode use by default.
pub const DEFAULT: &str = "b200-gpt-oss-120b";

const BUILT_IN_NAMES: [&str; 4] = [
    "b200-gpt-oss-120b",
    "mi355x-gpt-oss-120b",
    "gb200-nvl72-deepseek-r1",
    "h200-llama-70b",
];

fn p(
    name: &str,
    description: &str,
    gpus_per_replica: u32,
    max_num_seqs: u32,
    kv_cache_tokens: u64,
    step: (f64, f64, f64),
    prefill_tokens_per_s: f64,
) -> Profile {
    Profile {
        // The name starts with the catalog's system name.
        system: ["gb200-nvl72", "b200", "mi355x", "h200"]
            .into_iter()
            .find(|s| name.starts_with(&format!("{s}-")))
            .unwrap_or_default()
            .to_owned(),
        name: name.to_owned(),
        description: description.to_owned(),
        gpus_per_replica,
        max_num_seqs,
        max_num_batched_tokens: 8192,
        kv_cache_tokens,
        step_fixed_us: step.0,
        step_per_seq_us: step.1,
        step_per_kv_token_ns: step.2,
        prefill_tokens_per_s,
        gpu_idle_w: default_gpu_idle_w(),
        gpu_max_w: default_gpu_max_w(),
        node_base_w: default_node_base_w(),
    }
}

/// The built-in profiles.
pub(crate) fn built_in() -> Vec<Profile> {
    vec![
        // gpt-oss-120b (5.1 B active, MXFP4) on one B200 (8 TB/s, 180 GB): ~100 GB left
        // for KV at ~25 KB/token (36 layers, 8 KV heads × 64, fp8, half the layers
        // windowed) ≈ 4 M tokens; attention reads ≈ 3 ns/token; prefill ≈ 200 k tok/s
        // (≈ 45% of FP4 peak on 10 GFLOP/token). Single stream ≈ 280 tok/s/user.
        p(
            "b200-gpt-oss-120b",
            "gpt-oss-120b class (MoE, 5 B active) on one B200, TP1",
            1,
            256,
            4_000_000,
            (3_400.0, 36.0, 3.1),
            200_000.0,
        ),
        // Same model on one MI355X (8 TB/s, 288 GB): more KV room (~6 M tokens), a slower
        // software stack: higher fixed and per-sequence costs, ~80% of B200's prefill.
        p(
            "mi355x-gpt-oss-120b",
            "gpt-oss-120b class (MoE, 5 B active) on one MI355X, TP1",
            1,
            256,
            6_000_000,
            (4_000.0, 42.0, 3.3),
            160_000.0,
        ),
        // DeepSeek-R1 (671 B, 37 B active, FP4) on 8 GB200 GPUs of an NVL72 (TP/EP 8):
        // MLA KV ≈ 35 KB/token read over 64 TB/s ≈ 0.55 ns/token; expert all-to-all makes
        // the fixed cost large; prefill ≈ 60 k tok/s for the replica. 9 replicas fill a rack.
        p(
            "gb200-nvl72-deepseek-r1",
            "DeepSeek-R1 class MoE (37 B active) on 8 GPUs of a GB200 NVL72, EP8",
            8,
            512,
            10_000_000,
            (11_000.0, 30.0, 0.55),
            60_000.0,
        ),
        // Llama-3-70B FP8 on 8 H200 (TP8, 38 TB/s, 1.1 TB): 160 KB of KV per token read
        // at ≈ 4.2 ns/token; prefill ≈ 28 k tok/s (140 GFLOP/token at ~50% of FP8 peak).
        p(
            "h200-llama-70b",
            "Llama-3-70B class dense model, FP8, on 8 H200, TP8",
            8,
            256,
            6_000_000,
            (7_000.0, 60.0, 4.2),
            28_000.0,
        ),
    ]
}

/// The longest a simulated engine step may take (a profile asking more is refused: the
/// engine would never answer).
const MAX_STEP_SECONDS: f64 = 60.0;

impl Profile {
    /// A built-in profile by name, or a TOML file's (a name ending in `.toml`).
    pub fn load(name_or_file: &str) -> Result<Profile, ProfileError> {
        let profile = if name_or_file.ends_with(".toml") {
            let file = |reason: String| ProfileError::File {
                path: name_or_file.to_owned(),
                reason,
            };
            let text = rackload_input::read_text_capped(
                std::path::Path::new(name_or_file),
                rackload_input::caps::CONFIG,
                "a sim profile",
            )?;
            toml::from_str::<Profile>(&text)
                .map_err(|e| file(rackload_input::located(&text, e.span(), e.message())))?
        } else {
            built_in()
                .into_iter()
                .find(|p| p.name == name_or_file)
                .ok_or_else(|| ProfileError::Unknown(name_or_file.to_owned()))?
        };
        profile.validate()?;
        Ok(profile)
    }

    fn validate(&self) -> Result<(), ProfileError> {
        let bad = |field: &'static str, reason: &str| ProfileError::Invalid {
            name: self.name.clone(),
            field,
            reason: reason.to_owned(),
        };
        if self.gpus_per_replica == 0 {
            return Err(bad("gpus_per_replica", "must be at least 1"));
        }
        if !(0.0..=100_000.0).contains(&self.gpu_idle_w)
            || !(self.gpu_idle_w..=100_000.0).contains(&self.gpu_max_w)
        {
            return Err(bad(
                "gpu_idle_w/gpu_max_w",
                "must be watts with 0 <= idle <= max <= 100000",
            ));
        }
        if !(0.0..=1_000_000.0).contains(&self.node_base_w) {
            return Err(bad("node_base_w", "must be watts from 0 to 1000000"));
        }
        if self.max_num_seqs == 0 {
            return Err(bad("max_num_seqs", "must be at least 1"));
        }
        if self.max_num_batched_tokens < self.max_num_seqs {
            return Err(bad(
                "max_num_batched_tokens",
                "must be at least max_num_seqs (one decode token per sequence)",
            ));
        }
        if self.kv_cache_tokens == 0 {
            return Err(bad("kv_cache_tokens", "must be at least 1"));
        }
        for (field, v) in [
            ("step_fixed_us", self.step_fixed_us),
            ("step_per_seq_us", self.step_per_seq_us),
            ("step_per_kv_token_ns", self.step_per_kv_token_ns),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(bad(field, "must be a non-negative number"));
            }
        }
        if !(self.prefill_tokens_per_s.is_finite() && self.prefill_tokens_per_s > 0.0) {
            return Err(bad("prefill_tokens_per_s", "must be a positive number"));
        }
        if self.step_fixed_us + self.step_per_seq_us <= 0.0 {
            return Err(bad("step_fixed_us", "and step_per_seq_us cannot both be 0"));
        }
        // The slowest step the engine can take (a full batch, a full cache, a full
        // prefill budget) must end: no step past a minute.
        let worst = self.step_seconds(
            self.max_num_seqs as usize,
            self.kv_cache_tokens,
            u64::from(self.max_num_batched_tokens),
        );
        if !(worst.is_finite() && worst <= MAX_STEP_SECONDS) {
            return Err(bad(
                "step_fixed_us",
                &format!(
                    "with step_per_seq_us, step_per_kv_token_ns and prefill_tokens_per_s, a full step would take {worst:.3e} s; at most {MAX_STEP_SECONDS} s"
                ),
            ));
        }
        Ok(())
    }

    /// Duration of a step over `seqs` sequences reading `kv_tokens` of cache and
    /// prefilling `prefill_tokens`, in seconds.
    pub(crate) fn step_seconds(&self, seqs: usize, kv_tokens: u64, prefill_tokens: u64) -> f64 {
        (self.step_fixed_us + self.step_per_seq_us * seqs as f64) * 1e-6
            + self.step_per_kv_token_ns * kv_tokens as f64 * 1e-9
            + prefill_tokens as f64 / self.prefill_tokens_per_s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_that_would_never_end_is_refused() {
        let mut p = built_in().remove(0);
        p.step_fixed_us = 1e30;
        let e = p.validate().expect_err("1e30 µs").to_string();
        assert!(
            e.contains("step_fixed_us") && e.contains("at most 60"),
            "{e}"
        );
        let mut p = built_in().remove(0);
        p.prefill_tokens_per_s = 1e-300;
        assert!(p.validate().is_err(), "an endless prefill");
    }

    #[test]
    fn built_ins_are_valid_and_of_the_right_order() {
        for p in built_in() {
            p.validate().expect("valid");
            // One stream with a 1 k context: a few hundred tok/s/user at most.
            let single = 1.0 / p.step_seconds(1, 1024, 0);
            assert!((20.0..600.0).contains(&single), "{}: {single}", p.name);
            // A full batch: thousands to tens of thousands of tok/s per GPU.
            let b = p.max_num_seqs as usize;
            let full =
                b as f64 / p.step_seconds(b, 1536 * b as u64, 0) / f64::from(p.gpus_per_replica);
            assert!((1_000.0..60_000.0).contains(&full), "{}: {full}", p.name);
        }
        assert!(Profile::load(DEFAULT).is_ok());
        let systems: Vec<String> = built_in().into_iter().map(|p| p.system).collect();
        assert_eq!(systems, ["b200", "mi355x", "gb200-nvl72", "h200"]);
    }

    #[test]
    fn files_and_names_are_checked() {
        let e = Profile::load("h100-nothing")
            .expect_err("unknown")
            .to_string();
        assert!(e.contains("h100-nothing") && e.contains(DEFAULT), "{e}");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tiny.toml");
        std::fs::write(
            &path,
            "name = \"tiny\"\ngpus_per_replica = 1\nmax_num_seqs = 8\nmax_num_batched_tokens = 64\n\
             kv_cache_tokens = 1000\nstep_fixed_us = 1000\nstep_per_seq_us = 10\n\
             step_per_kv_token_ns = 1\nprefill_tokens_per_s = 100000\n",
        )
        .expect("write");
        let p = Profile::load(path.to_str().expect("utf-8")).expect("loads");
        assert_eq!((p.name.as_str(), p.max_num_seqs), ("tiny", 8));
        std::fs::write(&path, "name = \"x\"\nmax_num_seqs = 0\n").expect("write");
        let e = Profile::load(path.to_str().expect("utf-8"))
            .expect_err("bad")
            .to_string();
        assert!(e.contains("tiny.toml"), "{e}");
    }
}

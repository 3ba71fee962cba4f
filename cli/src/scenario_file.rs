//! Scenario files: a TOML file that can say what the flags can, in three tables —
//! `[workload]` (the workload flags, same names with underscores), `[target]` and `[run]`.
//! Relative paths are relative to the file. Unknown keys are errors that name the key.
//!
//! ```toml
//! [workload]
//! scenario = "chat"
//! request_rate = 8.0
//! [target]
//! base_url = ["http://127.0.0.1:8000"]
//! endpoint = "/v1/chat/completions"
//! [run]
//! max_concurrency = [16, 64]     # a sweep: one point each
//! num_prompts = 640
//! ```

use std::path::{Path, PathBuf};

use anyhow::Context;
use rackload_workloads::scenario::WorkloadConfig;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub base_url: Option<Vec<String>>,
    pub endpoint: Option<String>,
    pub model: Option<String>,
    pub request_timeout: Option<f64>,
    pub connect_timeout: Option<f64>,
    pub first_byte_timeout: Option<f64>,
    pub idle_timeout: Option<f64>,
    pub http: Option<String>,
    pub lb: Option<String>,
    /// Extra headers, name = value.
    pub headers: Option<std::collections::BTreeMap<String, String>>,
    /// A table merged into every request body.
    pub extra_body: Option<toml::Table>,
    pub no_stream: Option<bool>,
    pub min_tokens: Option<bool>,
    pub tls_ca: Option<PathBuf>,
    pub insecure: Option<bool>,
}

/// One value or a list of them (`max_concurrency = 16` or `= [4, 8, 16]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T: Clone> OneOrMany<T> {
    pub fn to_vec(&self) -> Vec<T> {
        match self {
            OneOrMany::One(v) => vec![v.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub workers: Option<u32>,
    pub max_concurrency: Option<OneOrMany<u32>>,
    /// `"4:1024:x2"`, as `--concurrency-range`.
    pub concurrency_range: Option<String>,
    pub worker_wait: Option<f64>,
    pub request_rates: Option<Vec<f64>>,
    pub num_prompts: Option<u64>,
    pub warmup: Option<u64>,
    pub duration: Option<f64>,
    pub cooldown: Option<f64>,
    pub max_failure_rate: Option<f64>,
    pub on_worker_loss: Option<String>,
    /// As `--trace-sample`.
    pub trace_sample: Option<f64>,
    pub results_dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    #[serde(default)]
    pub workload: WorkloadConfig,
    #[serde(default)]
    pub target: TargetConfig,
    #[serde(default)]
    pub run: RunConfig,
}

impl ScenarioFile {
    /// Reads `path`, or returns an empty file when there is none.
    pub fn load(path: Option<&Path>) -> anyhow::Result<ScenarioFile> {
        let Some(path) = path else {
            return Ok(ScenarioFile::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read scenario file {}", path.display()))?;
        let mut file: ScenarioFile = toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "scenario file {}: {}",
                path.display(),
                e.to_string().replace('\n', " ").trim().to_owned()
            )
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        file.workload.rebase_paths(dir);
        if let Some(r) = file.target.tls_ca.as_mut()
            && r.is_relative()
        {
            *r = dir.join(&*r);
        }
        if let Some(r) = file.run.results_dir.as_mut()
            && r.is_relative()
        {
            *r = dir.join(&*r);
        }
        Ok(file)
    }
}

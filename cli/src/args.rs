//! What was typed: the `rackload` command line, parsed by clap. Defaults and interactions
//! are resolved once, in `run::resolve`; nothing else reads raw flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "rackload",
    version,
    about = "Distributed load generation for LLM inference racks",
    long_about = "Distributed load generation for LLM inference racks.\n\n\
        `rackload run` with no flags starts a simulated rack, a coordinator and two workers on \
        loopback, runs a short chat-shaped benchmark, prints a summary and writes results/."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a benchmark (the main job).
    Run(RunArgs),
    /// Serve the Fabric (workers) and Control (CLI) services until stopped.
    Coordinator(CoordinatorArgs),
    /// Dial a coordinator and run the shards it assigns.
    Worker(WorkerArgs),
    /// Serve a simulated OpenAI-compatible inference server.
    Sim(SimArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Endpoint {
    #[value(name = "/v1/completions")]
    Completions,
    #[value(name = "/v1/chat/completions")]
    Chat,
}

impl Endpoint {
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Completions => "/v1/completions",
            Endpoint::Chat => "/v1/chat/completions",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RangeModeArg {
    OneSided,
    Symmetric,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Base URL of an OpenAI-compatible server (repeat for several frontends). Without it,
    /// an embedded simulated server is started.
    #[arg(long = "base-url", value_name = "URL")]
    pub base_urls: Vec<String>,
    /// API endpoint to load.
    #[arg(long, value_enum, default_value = "/v1/completions")]
    pub endpoint: Endpoint,
    /// Model name sent with each request [default: the first model the server lists].
    #[arg(long)]
    pub model: Option<String>,
    /// API key, sent as a bearer token; never logged or written to results.
    #[arg(long, env = "RACKLOAD_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Submit to a standing coordinator instead of starting one with local workers.
    #[arg(long, value_name = "URL")]
    pub coordinator: Option<String>,
    /// Workers the run uses (started locally unless --coordinator is given).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub workers: u32,
    /// Closed-loop concurrency across all workers.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrency: u32,
    /// Measured requests [default: 10 × max-concurrency].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub num_prompts: Option<u64>,
    /// Nominal input length L_in in tokens.
    #[arg(long, default_value_t = 1024)]
    pub random_input_len: u32,
    /// Nominal output length L_out in tokens.
    #[arg(long, default_value_t = 1024)]
    pub random_output_len: u32,
    /// Length jitter r: one-sided draws U{⌊r·L⌋..L}, symmetric U{⌊L(1−r)⌋..⌈L(1+r)⌉}.
    #[arg(long, default_value_t = 0.8)]
    pub random_range_ratio: f64,
    /// How --random-range-ratio widens lengths (InferenceX one-sided, or vLLM symmetric).
    #[arg(long, value_enum, default_value = "one-sided")]
    pub range_mode: RangeModeArg,
    /// Seed of the request stream.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Let the server stop at EOS instead of forcing the requested output length.
    #[arg(long)]
    pub no_ignore_eos: bool,
    /// Per-request timeout in seconds (0 = none).
    #[arg(long, default_value_t = 600.0)]
    pub request_timeout: f64,
    /// Where results go: DIR/<run-id>/.
    #[arg(long, default_value = "results")]
    pub results_dir: PathBuf,
    /// Seconds to wait for enough workers to connect.
    #[arg(long, default_value_t = 30.0)]
    pub worker_wait: f64,
    /// Embedded sim only: time to first token in ms.
    #[arg(long, default_value_t = 50)]
    pub sim_ttft_ms: u64,
    /// Embedded sim only: inter-token latency in ms.
    #[arg(long, default_value_t = 2)]
    pub sim_itl_ms: u64,
}

#[derive(Debug, Args)]
pub struct CoordinatorArgs {
    /// Address to listen on for workers and CLIs.
    #[arg(long, default_value = "127.0.0.1:7400")]
    pub listen: SocketAddr,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Coordinator URL, e.g. http://127.0.0.1:7400.
    #[arg(long, value_name = "URL")]
    pub coordinator: String,
    /// Worker id [default: HOST-PID].
    #[arg(long)]
    pub id: Option<String>,
    /// Most concurrent requests this worker accepts in a plan (0 = no limit).
    #[arg(long, default_value_t = 0)]
    pub max_inflight: u32,
}

#[derive(Debug, Args)]
pub struct SimArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,
    /// Time to first token in ms.
    #[arg(long, default_value_t = 50)]
    pub ttft_ms: u64,
    /// Inter-token latency in ms.
    #[arg(long, default_value_t = 2)]
    pub itl_ms: u64,
    /// Model name served.
    #[arg(long, default_value = "rackload-sim")]
    pub model: String,
}

/// Validates a URL flag: it must parse and be http(s).
pub fn check_url(flag: &str, value: &str) -> anyhow::Result<()> {
    let url = url::Url::parse(value)
        .map_err(|e| anyhow::anyhow!("{flag} {value:?} is not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        anyhow::bail!("{flag} {value:?} must be an http:// or https:// URL with a host");
    }
    Ok(())
}

//! What was typed: the `rackload` command line, parsed by clap. A run's flags become a
//! raw run ([`RunArgs::raw`]) that `rackload-spec` merges over the scenario file and
//! resolves once; nothing else reads raw flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use rackload_spec::raw::{OneOrMany, RawRunTable, RawTarget};
use rackload_spec::{Endpoint, HttpVersion, LoadBalance, OnWorkerLoss, Origin, RawRun};
use rackload_workloads::RangeMode;
use rackload_workloads::prompt::PromptFormat;
use rackload_workloads::scenario::{ArrivalName, DatasetName, Preset, WorkloadConfig};

#[derive(Debug, Parser)]
#[command(
    name = "rackload",
    version,
    about = "Distributed load generation for LLM inference racks",
    long_about = "Distributed load generation for LLM inference racks.\n\n\
        `rackload run` with no flags starts a simulated rack, a coordinator and two workers on \
        loopback, sweeps a few concurrencies of a chat-shaped benchmark, prints a summary and \
        writes results/ (run.json, report.html, frontier.svg)."
)]
pub struct Cli {
    /// Log lines for people (human) or one JSON object per line (json).
    #[arg(long, global = true, value_enum, default_value = "human")]
    pub log_format: LogFormat,
    /// Export traces over OTLP to this collector (gRPC `http://host:4317`, or with
    /// OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf `http://host:4318`). The standard
    /// OTEL_EXPORTER_OTLP_ENDPOINT does the same; without either, nothing is exported.
    #[arg(long, global = true, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a benchmark (the main job).
    Run(Box<RunArgs>),
    /// Make a development CA and certificates for mutual TLS on the fabric.
    Certs(CertsArgs),
    /// Serve the Fabric (workers) and Control (CLI) services until stopped.
    Coordinator(CoordinatorArgs),
    /// Dial a coordinator and run the shards it assigns.
    Worker(WorkerArgs),
    /// Serve a simulated OpenAI-compatible inference server.
    Sim(SimArgs),
    /// Inspect request streams.
    #[command(subcommand)]
    Workload(WorkloadCommand),
    /// List the workers connected to a coordinator.
    Workers(WorkersArgs),
    /// Abort a run on a coordinator.
    Abort(AbortArgs),
    /// Pareto frontiers, cost per token and power per token of benchmark results.
    Frontier(FrontierArgs),
    /// Write a self-contained HTML report (and frontier.svg) of a run's results.
    Report(ReportArgs),
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A run's directory (with run.json), or a results directory of runs.
    #[arg(value_name = "RESULTS_DIR")]
    pub results: PathBuf,
    /// Cost tier of the catalog.
    #[arg(long, default_value = "owning")]
    pub tier: String,
    /// A hardware catalog TOML whose systems replace or join the embedded ones.
    #[arg(long, value_name = "FILE")]
    pub catalog: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FrontierFormat {
    Table,
    Json,
    Csv,
    /// InferenceX-style aggregate rows (JSON lines).
    Inferencex,
}

/// `--interpolation`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum InterpolationArg {
    Steffen,
    Inferencex,
}

#[derive(Debug, Args)]
pub struct FrontierArgs {
    /// rackload result directories or run.json files, vLLM bench serve result files,
    /// InferenceX aggregate rows (JSON or JSON lines).
    #[arg(value_name = "INPUT", required = true)]
    pub inputs: Vec<PathBuf>,
    /// Catalog system of inputs that do not say (e.g. b200, mi355x, gb200-nvl72).
    #[arg(long)]
    pub system: Option<String>,
    /// GPUs that served inputs that do not say.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..), conflicts_with_all = ["prefill_gpus", "decode_gpus"])]
    pub gpus: Option<u32>,
    /// Disaggregated serving: prefill GPUs (with --decode-gpus).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..), requires = "decode_gpus")]
    pub prefill_gpus: Option<u32>,
    /// Disaggregated serving: decode GPUs (with --prefill-gpus).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..), requires = "prefill_gpus")]
    pub decode_gpus: Option<u32>,
    /// Cost tier of the catalog: owning, rental, or one a --catalog file defines.
    #[arg(long, default_value = "owning")]
    pub tier: String,
    /// Interactivity targets (tok/s/user) to read off each frontier, e.g. 35,90.
    #[arg(long, value_delimiter = ',')]
    pub at: Vec<f64>,
    /// One group name for all inputs [default: system · engine · precision · spec-decode,
    /// as far as each input says].
    #[arg(long)]
    pub group: Option<String>,
    /// Serving engine of inputs that do not say (vllm, sglang, trt-llm, dynamo…).
    #[arg(long)]
    pub engine: Option<String>,
    /// Precision of inputs that do not say (fp8, fp4…).
    #[arg(long)]
    pub precision: Option<String>,
    /// Speculative decoding of inputs that do not say (e.g. mtp, eagle, off).
    #[arg(long)]
    pub spec_decode: Option<String>,
    /// A hardware catalog TOML whose systems replace or join the embedded ones.
    #[arg(long, value_name = "FILE")]
    pub catalog: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: FrontierFormat,
    /// How figures are read off a frontier at --at targets: steffen (monotone; cost =
    /// price ÷ throughput there, so the two agree) or inferencex (the InferenceX
    /// dashboard calculator's end slopes and two-point rule, cost splined from the
    /// points' own costs: its numbers, to compare with it).
    #[arg(long, value_enum, default_value = "steffen")]
    pub interpolation: InterpolationArg,
    /// Also draw the frontiers (throughput per GPU, and cost) into this .svg or .png file.
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
}

/// A parser for one of the wire's named enums (`--endpoint`, `--http`, `--lb`,
/// `--on-worker-loss`): `--help` lists the names, and a wrong one is refused by clap.
fn named<T>(names: &'static [&'static str]) -> impl clap::builder::TypedValueParser<Value = T>
where
    T: std::str::FromStr<Err = rackload_proto::names::UnknownName> + Clone + Send + Sync + 'static,
{
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(names).try_map(|s| s.parse::<T>())
}

/// Parses a kebab-case name into one of the workloads crate's enums.
fn kebab<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|e| e.to_string())
}

/// `--request-rate`: requests per second, or `None` for `inf` (vLLM's spelling of a
/// closed loop).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RequestRate(pub Option<f64>);

fn rate(s: &str) -> Result<RequestRate, String> {
    let r: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if r.is_infinite() && r > 0.0 {
        return Ok(RequestRate(None));
    }
    if !(r.is_finite() && r > 0.0) {
        return Err(format!(
            "{s} must be a positive number of requests per second, or inf"
        ));
    }
    Ok(RequestRate(Some(r)))
}

/// What the request stream is: lengths, dataset, arrivals, prompts. Every flag is optional
/// so that a scenario file can give it; `WorkloadConfig::resolve` applies the defaults.
#[derive(Debug, Default, Args)]
pub struct WorkloadArgs {
    /// InferenceX v1 preset: chat (1024/1024), reasoning (1024/8192), summarize (8192/1024).
    #[arg(long, value_parser = kebab::<Preset>, help_heading = "Workload")]
    pub scenario: Option<Preset>,
    /// Nominal input length L_in in tokens [default: from --scenario, chat = 1024].
    #[arg(long, help_heading = "Workload")]
    pub random_input_len: Option<u32>,
    /// Nominal output length L_out in tokens [default: from --scenario, chat = 1024].
    #[arg(long, help_heading = "Workload")]
    pub random_output_len: Option<u32>,
    /// Length jitter r [default: 0.8].
    #[arg(long, help_heading = "Workload")]
    pub random_range_ratio: Option<f64>,
    /// one-sided: U{⌊r·L⌋..L} (InferenceX, default); symmetric: U{⌊L(1−r)⌋..⌈L(1+r)⌉} (vLLM).
    #[arg(long, value_parser = kebab::<RangeMode>, help_heading = "Workload")]
    pub range_mode: Option<RangeMode>,
    /// random (default), sharegpt, sharegpt-synthetic, or trace (Mooncake JSONL).
    #[arg(long, value_parser = kebab::<DatasetName>, help_heading = "Workload")]
    pub dataset_name: Option<DatasetName>,
    /// Dataset file (ShareGPT JSON or trace JSONL).
    #[arg(long, help_heading = "Workload")]
    pub dataset_path: Option<PathBuf>,
    /// Hugging Face tokenizer.json: exact token counts and exact-length prompts.
    #[arg(long, help_heading = "Workload")]
    pub tokenizer: Option<PathBuf>,
    /// ShareGPT: fixed output length instead of the conversation's.
    #[arg(long, help_heading = "Workload")]
    pub sharegpt_output_len: Option<u32>,
    /// ShareGPT filter: drop prompts shorter than this [default: 4].
    #[arg(long, help_heading = "Workload")]
    pub min_prompt_len: Option<u32>,
    /// ShareGPT filter: drop outputs shorter than this [default: 4].
    #[arg(long, help_heading = "Workload")]
    pub min_output_len: Option<u32>,
    /// ShareGPT filter: drop prompts longer than this [default: 1024].
    #[arg(long, help_heading = "Workload")]
    pub max_prompt_len: Option<u32>,
    /// ShareGPT filter: drop prompt + output longer than this [default: 2048].
    #[arg(long, help_heading = "Workload")]
    pub max_total_len: Option<u32>,
    /// closed, poisson, gamma, constant, ramp, trace [default: closed; poisson with
    /// --request-rate; gamma with --burstiness; trace for a trace dataset].
    #[arg(long, value_parser = kebab::<ArrivalName>, help_heading = "Arrivals")]
    pub arrival: Option<ArrivalName>,
    /// Open loop at this many requests/s (`inf` = closed loop); a list (10,20,40) sweeps.
    #[arg(long, value_parser = rate, value_delimiter = ',', help_heading = "Arrivals")]
    pub request_rate: Vec<RequestRate>,
    /// Gamma shape b: gaps ~ Gamma(b, 1/(λb)); 1 = Poisson, < 1 burstier.
    #[arg(long, help_heading = "Arrivals")]
    pub burstiness: Option<f64>,
    /// Linear ramp: rate at the first request.
    #[arg(long, help_heading = "Arrivals")]
    pub ramp_start_rate: Option<f64>,
    /// Linear ramp: rate at the last request.
    #[arg(long, help_heading = "Arrivals")]
    pub ramp_end_rate: Option<f64>,
    /// Trace replay: multiply timestamps by this (0.5 = twice as fast) [default: 1].
    #[arg(long, help_heading = "Arrivals")]
    pub trace_time_scale: Option<f64>,
    /// text (default) or token-ids (needs --tokenizer; /v1/completions only).
    #[arg(long, value_parser = kebab::<PromptFormat>, help_heading = "Prompts")]
    pub prompt_format: Option<PromptFormat>,
    /// Leading tokens shared by every synthesised prompt [default: 0].
    #[arg(long, help_heading = "Prompts")]
    pub shared_prefix_len: Option<u32>,
    /// Seed of the request stream [default: 0].
    #[arg(long, help_heading = "Workload")]
    pub seed: Option<u64>,
    /// Let the server stop at EOS instead of forcing the requested output length.
    #[arg(long, help_heading = "Workload")]
    pub no_ignore_eos: bool,
}

impl WorkloadArgs {
    /// The workload settings these flags give.
    pub fn config(&self) -> WorkloadConfig {
        let (request_rate, closed) = match self.request_rate.first() {
            Some(RequestRate(Some(r))) => (Some(*r), false),
            Some(RequestRate(None)) => (None, true),
            None => (None, false),
        };
        WorkloadConfig {
            scenario: self.scenario,
            random_input_len: self.random_input_len,
            random_output_len: self.random_output_len,
            random_range_ratio: self.random_range_ratio,
            range_mode: self.range_mode,
            dataset_name: self.dataset_name,
            dataset_path: self.dataset_path.clone(),
            tokenizer: self.tokenizer.clone(),
            sharegpt_output_len: self.sharegpt_output_len,
            min_prompt_len: self.min_prompt_len,
            min_output_len: self.min_output_len,
            max_prompt_len: self.max_prompt_len,
            max_total_len: self.max_total_len,
            arrival: self.arrival.or(closed.then_some(ArrivalName::Closed)),
            request_rate,
            burstiness: self.burstiness,
            ramp_start_rate: self.ramp_start_rate,
            ramp_end_rate: self.ramp_end_rate,
            trace_time_scale: self.trace_time_scale,
            prompt_format: self.prompt_format,
            shared_prefix_len: self.shared_prefix_len,
            seed: self.seed,
            ignore_eos: self.no_ignore_eos.then_some(false),
        }
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Scenario file (TOML) with [workload], [target] and [run] tables; flags override it.
    #[arg(value_name = "SCENARIO.toml")]
    pub scenario_file: Option<PathBuf>,
    /// Base URL of an OpenAI-compatible server (repeat for several frontends). Without it,
    /// an embedded simulated server is started.
    #[arg(long = "base-url", value_name = "URL")]
    pub base_urls: Vec<String>,
    /// API endpoint to load [default: /v1/completions].
    #[arg(long, value_parser = named::<Endpoint>(Endpoint::NAMES))]
    pub endpoint: Option<Endpoint>,
    /// Model name sent with each request [default: the first model the server lists].
    #[arg(long)]
    pub model: Option<String>,
    /// API key, sent as a bearer token; never logged or written to results.
    #[arg(long, env = "RACKLOAD_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Submit to a standing coordinator instead of starting one with local workers.
    #[arg(long, value_name = "URL")]
    pub coordinator: Option<String>,
    /// Workers the run uses, started locally unless --coordinator is given [default: 2].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub workers: Option<u32>,
    /// Closed loop: requests in flight across all workers [default: 16]. Open loop: a cap
    /// on them [default: none]. A list (4,8,16) sweeps, one point each.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..), value_delimiter = ',')]
    pub max_concurrency: Vec<u32>,
    /// Sweep concurrency from START to END, multiplying (xF) or adding (+N): 4:1024:x2.
    #[arg(long, value_name = "START:END:STEP", value_parser = parse_range, conflicts_with = "max_concurrency")]
    pub concurrency_range: Option<String>,
    /// Measured requests per point [default: 10 × concurrency closed, 1000 open, the whole trace].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub num_prompts: Option<u64>,
    /// Warmup requests per point, excluded from metrics [default: 2 × concurrency closed, 0 open].
    #[arg(long)]
    pub warmup: Option<u64>,
    /// Per point, send nothing new after this many seconds (warmup included). Without
    /// --num-prompts the clock alone ends the point: an open loop sends the requests its
    /// schedule puts inside the duration, a closed loop keeps its streams busy until it.
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// Seconds of rest between points [default: 0].
    #[arg(long)]
    pub cooldown: Option<f64>,
    /// A point fails (exit code 1) when more than this share of its requests failed
    /// [default: 0.05, InferenceX's gate].
    #[arg(long)]
    pub max_failure_rate: Option<f64>,
    /// When a worker is lost: carry on with the others, or abort the run [default: continue].
    #[arg(long, value_parser = named::<OnWorkerLoss>(OnWorkerLoss::NAMES))]
    pub on_worker_loss: Option<OnWorkerLoss>,
    /// Share of requests traced (0..1) when OTLP is configured: each sampled request gets a
    /// span and a W3C traceparent header [default: OTEL_TRACES_SAMPLER(_ARG), else every
    /// request of a run of up to 1,000, then about 1,000 spans a run, never under 0.01].
    #[arg(long, value_name = "RATIO")]
    pub trace_sample: Option<f64>,
    /// Keep one record per request (index, worker, endpoint, intended and actual send,
    /// TTFT, TTFO, E2EL, tokens, cached tokens, error class) in
    /// requests/<point>.jsonl.gz; the README documents the format.
    #[arg(long, help_heading = "Output")]
    pub save_requests: bool,
    /// Also write vLLM's per-request arrays (input_lens, output_lens, ttfts, itls,
    /// start_times, errors) into each point file, as `vllm bench serve --save-detailed`;
    /// implies --save-requests.
    #[arg(long, help_heading = "Output")]
    pub save_detailed: bool,
    /// vLLM's goodput SLOs in milliseconds, e.g. `--goodput ttft:2000,tpot:50` (any of
    /// ttft, tpot, e2el; comma-separated or repeated): each point reports
    /// `request_goodput`, the completed requests meeting every one per second.
    #[arg(long, value_name = "KEY:MS[,KEY:MS]", help_heading = "Output")]
    pub goodput: Vec<String>,
    /// A GPU exporter's Prometheus endpoint (NVIDIA's DCGM exporter, AMD's device-metrics
    /// exporter; repeatable): its power is read during every point, and each point reports
    /// the measured GPU power, energy and J/token.
    #[arg(long = "gpu-metrics", value_name = "URL", help_heading = "Output")]
    pub gpu_metrics: Vec<String>,
    /// A server's own Prometheus page (vLLM's, SGLang's names; repeatable) [default: each
    /// http:// --base-url's /metrics]: each point reports the server's mean running and
    /// waiting requests, KV-cache use, preemptions, prefix-cache hit rate and its own TTFT
    /// and ITL quantiles.
    #[arg(long = "server-metrics", value_name = "URL", help_heading = "Output")]
    pub server_metrics: Vec<String>,
    /// A node's BMC power page over Redfish (`https://BMC/redfish/v1/Chassis/ID/Power`, or
    /// its `EnvironmentMetrics`; repeatable, one per node): each point reports the measured
    /// whole-node power, energy and J/token. Basic-auth credentials come from
    /// RACKLOAD_REDFISH_USERNAME and RACKLOAD_REDFISH_PASSWORD in the coordinator's
    /// environment; https pages use the run's --tls-ca and --insecure.
    #[arg(long = "node-power", value_name = "URL", help_heading = "Output")]
    pub node_power: Vec<String>,
    /// Seconds between readings of --gpu-metrics, --node-power and --server-metrics
    /// [default: 1].
    #[arg(long, value_name = "S", help_heading = "Output")]
    pub telemetry_interval: Option<f64>,
    /// Embedded mode: the coordinator serves Prometheus metrics at GET /metrics on this
    /// address while the run goes (a standing coordinator has its own flag).
    #[arg(long, value_name = "ADDR", conflicts_with = "coordinator")]
    pub metrics_listen: Option<SocketAddr>,
    #[command(flatten)]
    pub security: ClientSecurity,
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// Per-request timeout in seconds (0 = none) [default: 600].
    #[arg(long, help_heading = "Target")]
    pub request_timeout: Option<f64>,
    /// Seconds to open a connection, TLS included [default: 10].
    #[arg(long, value_name = "SECONDS", help_heading = "Target")]
    pub connect_timeout: Option<f64>,
    /// Seconds from a send to the response's first bytes (0 = none) [default: none].
    #[arg(long, value_name = "SECONDS", help_heading = "Target")]
    pub first_byte_timeout: Option<f64>,
    /// Longest silence inside a stream, in seconds (0 = none) [default: none].
    #[arg(long, value_name = "SECONDS", help_heading = "Target")]
    pub idle_timeout: Option<f64>,
    /// HTTP version: auto (HTTP/1.1 on http://, ALPN on https://), http1, or http2
    /// (h2c prior knowledge on http://) [default: auto].
    #[arg(long, value_parser = named::<HttpVersion>(HttpVersion::NAMES), help_heading = "Target")]
    pub http: Option<HttpVersion>,
    /// Spread requests over several --base-url: round-robin or least-outstanding
    /// [default: round-robin].
    #[arg(long, value_parser = named::<LoadBalance>(LoadBalance::NAMES), help_heading = "Target")]
    pub lb: Option<LoadBalance>,
    /// Extra request header "Name: value" (repeatable); values are never logged or written.
    #[arg(long = "header", value_name = "NAME: VALUE", help_heading = "Target")]
    pub headers: Vec<String>,
    /// JSON object merged into every request body (its keys win); @FILE reads it from a file.
    #[arg(long, value_name = "JSON", help_heading = "Target")]
    pub extra_body: Option<String>,
    /// Ask for whole responses instead of streams (TTFT is then E2EL).
    #[arg(long, help_heading = "Target")]
    pub no_stream: bool,
    /// Also send min_tokens equal to the requested output length.
    #[arg(long, help_heading = "Target")]
    pub min_tokens: bool,
    /// Do not ask for usage on every chunk (stream_options.continuous_usage_stats, which
    /// tells how many tokens each chunk carries), for a server that refuses it; per-token
    /// ITL then spreads each request's usage evenly over its chunks.
    #[arg(long, help_heading = "Target")]
    pub no_continuous_usage_stats: bool,
    /// PEM file of extra trusted root certificates for https targets.
    #[arg(long, value_name = "FILE", help_heading = "Target")]
    pub tls_ca: Option<PathBuf>,
    /// Accept any certificate from https targets (testing only).
    #[arg(long, help_heading = "Target")]
    pub insecure: bool,
    /// Where results go: DIR/<run-id>/ [default: results].
    #[arg(long)]
    pub results_dir: Option<PathBuf>,
    /// Seconds to wait for enough workers to connect [default: 30].
    #[arg(long)]
    pub worker_wait: Option<f64>,
    /// The catalog system the target runs on (e.g. b200, gb200-nvl72), for per-GPU figures,
    /// cost and the frontier in the report [default: the embedded sim's].
    #[arg(long, help_heading = "Analysis")]
    pub system: Option<String>,
    /// GPUs serving the target, for per-GPU figures [default: the embedded sim's].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..), help_heading = "Analysis")]
    pub gpus: Option<u32>,
    /// Embedded sim: serving profile (a built-in name or a TOML file) of its
    /// continuous-batching model [default: b200-gpt-oss-120b].
    #[arg(long, value_name = "NAME|FILE", help_heading = "Embedded sim")]
    pub sim_profile: Option<String>,
    /// Embedded sim: replicas of the profile behind it [default: 1].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024), help_heading = "Embedded sim")]
    pub sim_replicas: Option<u32>,
    /// Embedded sim: fixed time to first token in ms instead of the batch model.
    #[arg(long, help_heading = "Embedded sim", conflicts_with = "sim_profile")]
    pub sim_ttft_ms: Option<u64>,
    /// Embedded sim: fixed inter-token latency in ms instead of the batch model.
    #[arg(long, help_heading = "Embedded sim", conflicts_with = "sim_profile")]
    pub sim_itl_ms: Option<u64>,
    /// Embedded sim: a reasoning model whose chat answers begin with N reasoning tokens.
    #[arg(long, value_name = "N", help_heading = "Embedded sim")]
    pub sim_reasoning_tokens: Option<u32>,
    /// Embedded sim: speculative decoding, 1..=K tokens per event, K × ITL apart (implies
    /// fixed latencies).
    #[arg(long, value_name = "K", help_heading = "Embedded sim", conflicts_with = "sim_profile",
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub sim_tokens_per_chunk: Option<u32>,
}

impl RunArgs {
    /// What the flags say, as a raw run (nothing defaulted), each value checked and named
    /// by its flag.
    /// `--goodput KEY:MS[,KEY:MS]`, repeatable.
    fn goodput(&self) -> anyhow::Result<Option<rackload_spec::raw::GoodputSlo>> {
        if self.goodput.is_empty() {
            return Ok(None);
        }
        rackload_spec::raw::GoodputSlo::parse(self.goodput.iter().flat_map(|g| g.split([',', ' '])))
            .map(Some)
            .map_err(|e| anyhow::anyhow!("--goodput: {e}"))
    }

    pub fn raw(&self) -> anyhow::Result<RawRun> {
        let rates: Vec<f64> = self
            .workload
            .request_rate
            .iter()
            .filter_map(|r| r.0)
            .collect();
        if self.workload.request_rate.len() > 1 && rates.len() != self.workload.request_rate.len() {
            anyhow::bail!("--request-rate: inf cannot be part of a rate sweep");
        }
        let mut unique: Vec<f64> = Vec::new();
        for r in rates {
            if !unique.contains(&r) {
                unique.push(r);
            }
        }
        let mut headers = std::collections::BTreeMap::new();
        for h in &self.headers {
            let (name, value) = h
                .split_once(':')
                .ok_or_else(|| anyhow::anyhow!("--header {h:?} must look like \"Name: value\""))?;
            let name = name.trim();
            if name.is_empty() {
                anyhow::bail!("--header {h:?} has no name before ':'");
            }
            headers.insert(name.to_owned(), value.trim().to_owned());
        }
        let extra_body = self.extra_body()?;
        let flag = |b: bool| b.then_some(true);
        let raw = RawRun {
            workload: self.workload.config(),
            target: RawTarget {
                base_url: given(&self.base_urls),
                endpoint: self.endpoint,
                model: self.model.clone(),
                request_timeout: self.request_timeout,
                connect_timeout: self.connect_timeout,
                first_byte_timeout: self.first_byte_timeout,
                idle_timeout: self.idle_timeout,
                http: self.http,
                lb: self.lb,
                headers: (!headers.is_empty()).then_some(headers),
                extra_body,
                no_stream: flag(self.no_stream),
                min_tokens: flag(self.min_tokens),
                continuous_usage_stats: self.no_continuous_usage_stats.then_some(false),
                tls_ca: self.tls_ca.clone(),
                insecure: flag(self.insecure),
                api_key: self.api_key.clone(),
            },
            run: RawRunTable {
                workers: self.workers,
                max_concurrency: (!self.max_concurrency.is_empty()).then(|| {
                    OneOrMany::Many(self.max_concurrency.iter().map(|&c| i64::from(c)).collect())
                }),
                concurrency_range: self.concurrency_range.clone(),
                worker_wait: self.worker_wait,
                request_rates: (!unique.is_empty()).then_some(unique),
                num_prompts: self.num_prompts,
                warmup: self.warmup,
                duration: self.duration,
                cooldown: self.cooldown,
                max_failure_rate: self.max_failure_rate,
                on_worker_loss: self.on_worker_loss,
                trace_sample: self.trace_sample,
                results_dir: self.results_dir.clone(),
                save_requests: flag(self.save_requests),
                save_detailed: flag(self.save_detailed),
                goodput: self.goodput()?,
                gpu_metrics: given(&self.gpu_metrics),
                telemetry_interval: self.telemetry_interval,
                server_metrics: given(&self.server_metrics),
                node_power: given(&self.node_power),
            },
        };
        raw.check(&Origin::Flags)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(raw)
    }

    /// `--extra-body`: its JSON object, given inline or as `@FILE`.
    fn extra_body(&self) -> anyhow::Result<Option<serde_json::Map<String, serde_json::Value>>> {
        Ok(match &self.extra_body {
            None => None,
            Some(text) => {
                let (what, text) = match text.strip_prefix('@') {
                    Some(path) => (
                        format!("--extra-body file {path}"),
                        rackload_input::read_text_capped(
                            std::path::Path::new(path),
                            rackload_input::caps::EXTRA_BODY,
                            "--extra-body",
                        )
                        .map_err(|e| anyhow::anyhow!("--extra-body: {e}"))?,
                    ),
                    None => ("--extra-body".to_owned(), text.clone()),
                };
                match serde_json::from_str::<serde_json::Value>(&text) {
                    Ok(serde_json::Value::Object(m)) => Some(m),
                    Ok(other) => anyhow::bail!("{what} must be a JSON object, not {other}"),
                    Err(e) => anyhow::bail!("{what} is not JSON: {e}"),
                }
            }
        })
    }
}

/// A repeatable flag's values, `None` when it was not given.
fn given(values: &[String]) -> Option<Vec<String>> {
    (!values.is_empty()).then(|| values.to_vec())
}

#[derive(Debug, Subcommand)]
pub enum WorkloadCommand {
    /// Print the request stream without sending anything.
    Sample(Box<SampleArgs>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SampleFormat {
    Jsonl,
    Table,
}

#[derive(Debug, Args)]
pub struct SampleArgs {
    /// Scenario file (TOML); flags override it.
    #[arg(value_name = "SCENARIO.toml")]
    pub scenario_file: Option<PathBuf>,
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// Requests to print [default: as `run` would send].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub num_prompts: Option<u64>,
    /// Closed-loop concurrency, for the default number of requests [default: 16].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..), value_delimiter = ',')]
    pub max_concurrency: Vec<u32>,
    /// Only shard K of N (0 <= K < N, equal weights): the requests worker K would send.
    #[arg(long, value_name = "K/N", value_parser = shard)]
    pub shard: Option<(u64, u64)>,
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: SampleFormat,
    /// Add each request's prompt ("prompt_tokens" ids when known, else "prompt" text).
    #[arg(long)]
    pub with_prompts: bool,
}

/// `--concurrency-range`, checked as typed (the spec expands it).
fn parse_range(s: &str) -> Result<String, String> {
    rackload_spec::raw::concurrency_range(s).map(|_| s.to_owned())
}

fn shard(s: &str) -> Result<(u64, u64), String> {
    let (k, n) = s.split_once('/').ok_or("expected K/N, e.g. 0/4")?;
    let k: u64 = k
        .trim()
        .parse()
        .map_err(|_| format!("{k:?} is not a shard number"))?;
    let n: u64 = n
        .trim()
        .parse()
        .map_err(|_| format!("{n:?} is not a shard count"))?;
    if n == 0 || k >= n {
        return Err(format!("shard {k}/{n}: need 0 <= K < N"));
    }
    let most = u64::from(rackload_spec::defaults::MAX_WORKERS);
    if n > most {
        return Err(format!(
            "shard {k}/{n}: a run has at most {most} workers, so at most {most} shards"
        ));
    }
    Ok((k, n))
}

#[cfg(test)]
mod shard_tests {
    use super::shard;

    #[test]
    fn shard_counts_are_bounded_by_the_workers_a_run_may_have() {
        assert_eq!(shard("1/4"), Ok((1, 4)));
        let e = shard("0/18446744073709551615").expect_err("too many");
        assert!(e.contains("at most 10000"), "{e}");
        assert!(shard("4/4").is_err() && shard("x/4").is_err() && shard("0/0").is_err());
    }
}

#[derive(Debug, Args)]
pub struct CoordinatorArgs {
    /// Address to listen on for workers and CLIs.
    #[arg(long, default_value = "127.0.0.1:7400")]
    pub listen: SocketAddr,
    /// Hard limit: a run still going after this many seconds is aborted.
    #[arg(long, value_name = "SECONDS", default_value_t = rackload_spec::defaults::MAX_RUN_DURATION.as_secs_f64())]
    pub max_run_duration: f64,
    /// Serve Prometheus metrics (live rates, in-flight, errors, latency histograms per
    /// run and point, workers) at GET /metrics on this address.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    #[command(flatten)]
    pub security: ServerSecurity,
}

/// Who may talk to a coordinator (or whom a worker trusts): mutual TLS and/or a token.
#[derive(Debug, Args, Clone, Default)]
pub struct ServerSecurity {
    /// Shared bearer token every worker and CLI must present (prefer the environment
    /// variable: a flag shows in `ps`).
    #[arg(
        long,
        env = "RACKLOAD_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// This process's certificate (PEM) for mutual TLS (`rackload certs` makes a dev set).
    #[arg(long, env = "RACKLOAD_TLS_CERT", value_name = "PEM")]
    pub tls_cert: Option<String>,
    /// Its private key (PEM).
    #[arg(long, env = "RACKLOAD_TLS_KEY", value_name = "PEM")]
    pub tls_key: Option<String>,
    /// The CA that signs the other side's certificates (PEM).
    #[arg(long, env = "RACKLOAD_TLS_CA", value_name = "PEM")]
    pub tls_ca: Option<String>,
    /// Allow plaintext off loopback: without a token anyone who reaches the fabric could
    /// aim the workers, and a token travels in clear. Use TLS on untrusted networks.
    #[arg(long)]
    pub insecure: bool,
}

impl ServerSecurity {
    pub fn tls(&self) -> rackload_proto::auth::TlsFiles {
        rackload_proto::auth::TlsFiles {
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
            ca: self.tls_ca.clone(),
        }
    }

    pub fn client(&self) -> rackload_proto::auth::ClientAuth {
        rackload_proto::auth::ClientAuth {
            token: self.token.clone(),
            tls: self.tls(),
            insecure: self.insecure,
        }
    }
}

/// How the CLI reaches a standing coordinator (`run --coordinator`, `workers`, `abort`).
/// Named `--fabric-*` because `run`'s `--tls-ca` and `--insecure` are about the target.
#[derive(Debug, Args, Clone, Default)]
pub struct ClientSecurity {
    /// Bearer token the coordinator requires (prefer the environment variable).
    #[arg(
        long,
        env = "RACKLOAD_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// This client's certificate (PEM) for mutual TLS with the coordinator.
    #[arg(long, env = "RACKLOAD_TLS_CERT", value_name = "PEM")]
    pub fabric_tls_cert: Option<String>,
    /// Its private key (PEM).
    #[arg(long, env = "RACKLOAD_TLS_KEY", value_name = "PEM")]
    pub fabric_tls_key: Option<String>,
    /// The CA that signed the coordinator's certificate (PEM).
    #[arg(long, env = "RACKLOAD_TLS_CA", value_name = "PEM")]
    pub fabric_tls_ca: Option<String>,
    /// Allow plaintext to a coordinator off loopback (a token then travels in clear).
    #[arg(long)]
    pub fabric_insecure: bool,
    /// Seconds to keep trying to reach the coordinator (a job started beside it); 0
    /// tries once.
    #[arg(long, value_name = "SECS", default_value_t = 0.0, value_parser = wait_seconds)]
    pub connect_wait: f64,
}

/// A wait in seconds: finite, 0 to a day.
fn wait_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if (0.0..=86_400.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is not between 0 and 86400 seconds"))
    }
}

impl ClientSecurity {
    pub fn client(&self) -> rackload_proto::auth::ClientAuth {
        rackload_proto::auth::ClientAuth {
            token: self.token.clone(),
            tls: rackload_proto::auth::TlsFiles {
                cert: self.fabric_tls_cert.clone(),
                key: self.fabric_tls_key.clone(),
                ca: self.fabric_tls_ca.clone(),
            },
            insecure: self.fabric_insecure,
        }
    }
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Coordinator URL, e.g. http://127.0.0.1:7400.
    #[arg(long, value_name = "URL")]
    pub coordinator: String,
    /// Worker id: up to 128 letters, digits and - _ . : @ [default: HOST-PID].
    #[arg(long)]
    pub id: Option<String>,
    /// Cap: most concurrent requests this worker accepts in a plan (0 = no limit).
    #[arg(long, default_value_t = 0)]
    pub max_inflight: u32,
    /// Cap: highest request rate (req/s) this worker sends; larger plans are refused.
    #[arg(long)]
    pub max_rate: Option<f64>,
    /// Send only to this target: HOST, HOST:PORT or a network such as 10.0.0.0/8
    /// (repeatable); plans naming another target are refused.
    #[arg(long = "allow-target", value_name = "HOST[:PORT]|CIDR", value_parser = parse_allowed)]
    pub allow_targets: Vec<rackload_worker::allow::Allowed>,
    /// Cap: longest a shard may run, in seconds; it is aborted then.
    #[arg(long, value_name = "SECONDS")]
    pub max_duration: Option<f64>,
    /// Seconds in-flight requests may finish after the coordinator is lost (none new are sent).
    #[arg(long, default_value_t = 5.0)]
    pub lease: f64,
    /// Seconds to keep trying to reach the coordinator at start-up.
    #[arg(long, default_value_t = 10.0)]
    pub connect_wait: f64,
    /// Wire protocol version to announce (for testing refusals).
    #[arg(long, hide = true)]
    pub protocol_version: Option<u32>,
    #[command(flatten)]
    pub security: ServerSecurity,
}

#[derive(Debug, Args)]
pub struct WorkersArgs {
    /// Coordinator URL.
    #[arg(long, value_name = "URL")]
    pub coordinator: String,
    #[command(flatten)]
    pub security: ClientSecurity,
}

#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Directory to write the PEM files to.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Names and addresses the coordinator is reached by (its certificate's SANs).
    #[arg(long, value_name = "HOST,...", default_value = "127.0.0.1,localhost")]
    pub hosts: String,
    /// Replace a set already in DIR (its CA then no longer vouches for anything).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct AbortArgs {
    /// Coordinator URL.
    #[arg(long, value_name = "URL")]
    pub coordinator: String,
    /// The run id to abort.
    pub run: String,
    #[command(flatten)]
    pub security: ClientSecurity,
}

#[derive(Debug, Args)]
pub struct SimArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,
    /// Also serve the simulated rack's meters on this address, as a rack serves them apart
    /// from its model server: the GPUs' power at /metrics (DCGM exporter's names) and the
    /// chassis' over Redfish at /redfish/v1/Chassis/1/Power (both are also on --listen,
    /// at /gpu/metrics and the same Redfish path).
    #[arg(long, value_name = "ADDR")]
    pub gpu_metrics_listen: Option<SocketAddr>,
    /// Serving profile of the continuous-batching model: a built-in name
    /// (b200-gpt-oss-120b, mi355x-gpt-oss-120b, gb200-nvl72-deepseek-r1, h200-llama-70b) or
    /// a TOML file [default: b200-gpt-oss-120b].
    #[arg(long, value_name = "NAME|FILE", conflicts_with_all = ["ttft_ms", "itl_ms"])]
    pub profile: Option<String>,
    /// Replicas of the profile (each its own batch, KV cache and GPUs).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub replicas: u32,
    /// Serve replica k on port PORT+k instead of all behind one address (least-loaded).
    #[arg(long)]
    pub ports_per_replica: bool,
    /// Answer 429 when a replica has this many requests waiting (0 = never).
    #[arg(long, default_value_t = 0)]
    pub max_waiting: u64,
    /// Tokens per SSE event (SGLang/TRT-LLM stream interval; batch model only).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub stream_interval: u32,
    /// Fixed time to first token in ms, instead of the batch model [with --itl-ms: 50].
    #[arg(long)]
    pub ttft_ms: Option<u64>,
    /// Fixed inter-token latency in ms, instead of the batch model [with --ttft-ms: 2].
    #[arg(long)]
    pub itl_ms: Option<u64>,
    /// Model name served.
    #[arg(long, default_value = "rackload-sim")]
    pub model: String,
    /// No model delays: every token at once, many events per write (for benchmarking a client).
    #[arg(long)]
    pub fast: bool,
    /// Inject failures: NAME=RATE,... with NAME one of 429, 500, reset, malformed, stall,
    /// no-done, slow (a response 250 ms late, e.g. to miss a goodput SLO) (e.g.
    /// 429=0.05,reset=0.01).
    #[arg(long, value_name = "SPEC", value_parser = parse_faults)]
    pub faults: Option<rackload_sim::Faults>,
    /// Seed choosing which requests suffer the injected failures.
    #[arg(long, default_value_t = 0)]
    pub fault_seed: u64,
    /// Record when each token event is sent and show TTFT/ITL quantiles at /stats.
    #[arg(long)]
    pub stamp: bool,
    /// Behave like a server that ignores `ignore_eos`: end outputs early anyway (to check a
    /// client notices).
    #[arg(long)]
    pub disregard_ignore_eos: bool,
    /// A reasoning model: on chat, the first N output tokens of every answer stream as
    /// reasoning deltas (`reasoning`), and usage says so.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub reasoning_tokens: u32,
    /// Speculative decoding: each event carries the 1..=K tokens a step accepted, events
    /// K × ITL apart (the fixed-latency model, which it implies; not with --profile or --fast).
    #[arg(long, value_name = "K", default_value_t = 1, conflicts_with_all = ["profile", "fast"],
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub tokens_per_chunk: u32,
    /// Count prompt tokens with this Hugging Face tokenizer.json (without it: ⌈bytes / 4⌉).
    #[arg(long, value_name = "FILE")]
    pub tokenizer: Option<PathBuf>,
    /// Serve https with this PEM certificate chain (needs --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

fn parse_allowed(s: &str) -> Result<rackload_worker::allow::Allowed, String> {
    s.parse()
}

fn parse_faults(s: &str) -> Result<rackload_sim::Faults, String> {
    s.parse()
        .map_err(|e: rackload_sim::faults::FaultsError| e.to_string())
}

/// Validates a URL flag: it must parse and be http(s).
pub fn check_url(flag: &str, value: &str) -> anyhow::Result<()> {
    rackload_spec::resolve::check_url(flag, value).map_err(|e| anyhow::anyhow!("{e}"))
}

//! Every default of a run, in one table: nothing below the resolver (the coordinator, the
//! workers) defaults a setting again. The README's flag table quotes these values.

use std::time::Duration;

use rackload_proto::v1::{Endpoint, HttpVersion, LoadBalance, OnWorkerLoss};

/// The workload's defaults (lengths, jitter, seed, ShareGPT filters, …), kept beside the
/// code that applies them and read here with the rest.
pub use rackload_workloads::scenario::defaults as workload;

/// Worker processes a run uses (`--workers`).
pub const WORKERS: u32 = 2;
/// Most workers one run may ask for.
pub const MAX_WORKERS: u32 = 10_000;
/// Most requests (warmup included) one point may send: 100 million. An open loop's
/// schedule is held by every worker, 8 bytes a request (800 MB at the cap); at 10,000
/// requests a second the cap is almost three hours.
pub const MAX_REQUESTS_PER_POINT: u64 = 100_000_000;
/// How often GPU exporters are read during a point (`--telemetry-interval`).
pub const TELEMETRY_INTERVAL: Duration = Duration::from_secs(1);
/// The longest any time setting may be (a duration, a timeout, a wait): 30 days.
pub const MAX_SECONDS: f64 = 30.0 * 86_400.0;
/// How long the coordinator waits for the run's workers to connect (`--worker-wait`).
pub(crate) const WORKER_WAIT: Duration = Duration::from_secs(30);
/// A point whose failed share is above this fails its gate (InferenceX's 5%).
pub const MAX_FAILURE_RATE: f64 = 0.05;
/// Rest between points (`--cooldown`).
pub(crate) const COOLDOWN: Duration = Duration::ZERO;
pub(crate) const ON_WORKER_LOSS: OnWorkerLoss = OnWorkerLoss::Continue;

pub const ENDPOINT: Endpoint = Endpoint::Completions;
pub const HTTP: HttpVersion = HttpVersion::Auto;
pub(crate) const LB: LoadBalance = LoadBalance::RoundRobin;
/// Ask streams for usage on every chunk (vLLM, SGLang and TRT-LLM honour it).
pub(crate) const CONTINUOUS_USAGE_STATS: bool = true;
/// Whole-request timeout (`--request-timeout`; 0 = none).
pub const REQUEST_TIMEOUT: Option<Duration> = Some(Duration::from_secs(600));
/// Opening a connection, TLS included (`--connect-timeout`; 0 = none).
pub const CONNECT_TIMEOUT: Option<Duration> = Some(Duration::from_secs(10));
/// From the send to the first bytes (`--first-byte-timeout`; 0 = none).
pub(crate) const FIRST_BYTE_TIMEOUT: Option<Duration> = None;
/// Longest silence inside a stream (`--idle-timeout`; 0 = none).
pub(crate) const IDLE_TIMEOUT: Option<Duration> = None;

/// Closed-loop concurrency when none is given.
pub const CONCURRENCY: u32 = 16;
/// Concurrencies of `rackload run` on the embedded batch-model sim when no load is given.
pub const SIM_SWEEP: [u32; 4] = [1, 8, 32, 128];
/// Measured requests of an open-loop point when no count is given (vLLM's 1000).
pub(crate) const OPEN_NUM_PROMPTS: u64 = 1000;
/// Measured requests of a closed-loop point per stream (InferenceX's 10·C).
pub(crate) const CLOSED_PROMPTS_PER_STREAM: u64 = 10;
/// Warmup requests of a closed-loop point per stream (InferenceX's 2·C).
pub(crate) const CLOSED_WARMUP_PER_STREAM: u64 = 2;
/// A closed-loop stream sends at most this many requests a second (0.1 ms each, faster
/// than any real server answers); it sizes a point that only a duration bounds, so that
/// the duration, not the count, ends it.
pub(crate) const CLOSED_CEILING_PER_STREAM_S: f64 = 10_000.0;

/// The embedded sim: its replicas when no fixed latency is given (`--sim-replicas`; the
/// profile's default is the sim's own), and the fixed latencies when only one of
/// `--sim-ttft-ms` / `--sim-itl-ms` is.
pub const SIM_REPLICAS: u32 = 1;
pub const SIM_TTFT_MS: u64 = 50;
pub const SIM_ITL_MS: u64 = 2;

/// Where results go (`--results-dir`).
pub const RESULTS_DIR: &str = "results";
/// A standing coordinator aborts any run still going after this long.
pub const MAX_RUN_DURATION: Duration = Duration::from_secs(24 * 3600);
/// Seconds between a worker's interval reports.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(1);

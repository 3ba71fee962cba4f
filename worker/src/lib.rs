//! A rackload worker: dials its coordinator over the Fabric session, receives shard
//! plans, streams requests at OpenAI-compatible endpoints, times every token, and sends
//! interval HdrHistograms back.
//!
//! Layout: [`sse`] parses event streams, [`target`] speaks OpenAI over HTTP,
//! [`recorder`] keeps histograms and counters, [`request_log`] one line per request when
//! asked, [`schedule`] runs the closed and open loops,
//! [`caps`] and [`allow`] hold the worker to its own limits, [`session`] is the Fabric
//! client that ties them together.

pub mod allow;
pub mod caps;
pub mod error;
pub mod limits;
pub mod middleware;
pub mod recorder;
pub mod request_log;
pub mod schedule;
pub mod session;
pub mod sse;
pub mod target;
pub mod trace;

pub use error::ErrorClass;
pub use session::{WorkerConfig, WorkerError};

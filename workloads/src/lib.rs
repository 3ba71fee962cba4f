//! The request stream of a run, as a pure function of its spec: request `i` is
//! `WorkloadSpec::request(i)`, whatever worker sends it. Knows nothing of processes or
//! the wire; the coordinator shards it with [`shard`], workers generate their stripe.
//!
//! Layout: [`lengths`] (random lengths and their jitter modes), [`dataset`] (ShareGPT,
//! traces), [`synthetic`] (the embedded ShareGPT-like distribution), [`arrival`] (closed
//! and open loops), [`prompt`] (exact-length prompts), [`tokenizer`] (token counts),
//! [`scenario`] (presets and scenario files), [`spec`] (the whole), [`shard`].

pub mod arrival;
pub mod dataset;
pub mod lengths;
pub mod prompt;
pub mod scenario;
pub mod shard;
pub mod spec;
pub mod synthetic;
pub mod tokenizer;

pub use arrival::Arrival;
pub use lengths::RangeMode;
pub use shard::Stripe;
pub use spec::{Lengths, RequestSpec, WorkloadError, WorkloadSpec};

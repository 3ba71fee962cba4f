//! The request stream of a run, as a pure function of its spec: request `i` is
//! `WorkloadSpec::request(i)`, whatever worker sends it. Knows nothing of processes or
//! the wire; the coordinator shards it with [`shard`], workers generate their stripe.

pub mod lengths;
pub mod prompt;
pub mod shard;
pub mod spec;

pub use lengths::RangeMode;
pub use shard::Stripe;
pub use spec::{RequestSpec, WorkloadError, WorkloadSpec};

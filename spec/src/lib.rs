//! A run, resolved once (DESIGN.md §3): raw settings from flags and a scenario file, every
//! field optional ([`raw`]) → a resolved run with every default applied from one table
//! ([`defaults`]), enums for every choice and `Option` wherever "none" is a value
//! ([`resolve`], [`resolved`]) → each point's shard plans, a pure function of the point
//! and the workers' capacities ([`plan`]). The CLI resolves; the coordinator reads the
//! resolved run back from the wire ([`ResolvedRun::from_proto`]) and defaults nothing.

pub mod defaults;
pub mod plan;
pub mod raw;
pub mod resolve;
pub mod resolved;

pub use rackload_proto::v1::{Endpoint, HttpVersion, LoadBalance, OnWorkerLoss};
pub use raw::{Origin, RawRun};
pub use resolve::{Context, Resolved, resolve};
pub use resolved::{Point, ResolvedRun, Target};

/// A setting that cannot be resolved: which one (as the user spelled it: a flag, a
/// scenario file's key, or a wire field) and what was expected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}{reason}", if field.is_empty() { String::new() } else { format!("{field}: ") })]
pub struct SpecError {
    pub field: String,
    pub reason: String,
}

/// The longest a field's name or a reason may be shown (values a user typed are echoed
/// in reasons: a huge one is cut, not repeated).
const SHOWN: usize = 400;

impl SpecError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> SpecError {
        SpecError {
            field: rackload_input::printable(&rackload_input::clip(&field.into(), SHOWN)),
            reason: rackload_input::printable(&rackload_input::clip(&reason.into(), SHOWN)),
        }
    }
}

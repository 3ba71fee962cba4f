//! How long the simulated server takes to produce each token of a request. The fixed
//! model gives every request the same TTFT and inter-token delay, whatever the load.

use std::time::Duration;

/// Fixed time to first token and fixed inter-token latency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixedLatency {
    pub ttft: Duration,
    pub itl: Duration,
}

impl FixedLatency {
    /// Offset from the request's arrival at which token `k` (0-based) is emitted.
    pub(crate) fn token_offset(&self, k: u32) -> Duration {
        self.ttft + self.itl * k
    }
}

//! Where a shard's measurements accumulate between interval reports: one latency set
//! (TTFT, ITL, TPOT, E2EL in µs) and counters behind a short mutex, taken and reset each
//! interval. A request records once, at its end, from its task's reused ITL buffer, so the
//! per-token path touches no lock and allocates nothing.

use std::sync::Mutex;

use rackload_proto::histogram::{LatencySet, METRICS};
use rackload_proto::v1::{Counters, Metric};
use tokio::time::Instant;

use crate::error::ErrorClass;
use crate::target::Completed;

#[derive(Debug, Default)]
struct Inner {
    lat: LatencySet,
    sent: u64,
    completed: u64,
    failed: [u64; ErrorClass::ALL.len()],
    input_tokens: u64,
    output_tokens: u64,
    usage_missing: u64,
    warmup_done: u64,
    last_end: Option<Instant>,
    first_send: Option<Instant>,
}

/// A shard's recorder, shared by its request tasks and its reporter.
#[derive(Debug, Default)]
pub struct Recorder {
    inner: Mutex<Inner>,
}

/// What was recorded in one interval.
#[derive(Debug)]
pub struct Snapshot {
    pub lat: LatencySet,
    pub counters: Counters,
    /// End of the latest request completed so far in the shard.
    pub last_end: Option<Instant>,
    /// Send of the first measured request of the shard.
    pub first_send: Option<Instant>,
}

fn slot(m: Metric) -> usize {
    METRICS.iter().position(|&x| x == m).unwrap_or(0)
}

impl Recorder {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the counters inconsistent in a way
        // worth refusing to report; keep going with the data.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A measured request is about to be sent.
    pub fn sent(&self, at: Instant) {
        let mut g = self.lock();
        g.sent += 1;
        g.first_send.get_or_insert(at);
    }

    /// A warmup request finished (completed or failed); it is measured nowhere.
    pub fn warmup_done(&self) {
        self.lock().warmup_done += 1;
    }

    pub fn completed(&self, c: &Completed, input_len: u32, itl_us: &[u64], ended: Instant) {
        let mut g = self.lock();
        let lat = &mut g.lat;
        lat.hists[slot(Metric::Ttft)].saturating_record(c.ttft_us);
        lat.hists[slot(Metric::E2el)].saturating_record(c.e2el_us);
        if c.output_tokens > 1 {
            let tpot = (c.e2el_us - c.ttft_us) / (c.output_tokens - 1);
            lat.hists[slot(Metric::Tpot)].saturating_record(tpot);
        }
        let itl = &mut lat.hists[slot(Metric::Itl)];
        for &v in itl_us {
            itl.saturating_record(v);
        }
        g.completed += 1;
        g.input_tokens += u64::from(input_len);
        g.output_tokens += c.output_tokens;
        if !c.usage_present {
            g.usage_missing += 1;
        }
        g.last_end = Some(g.last_end.map_or(ended, |t| t.max(ended)));
    }

    pub fn failed(&self, class: ErrorClass) {
        let k = ErrorClass::ALL
            .iter()
            .position(|&c| c == class)
            .unwrap_or(0);
        self.lock().failed[k] += 1;
    }

    /// Takes what was recorded since the last call and starts afresh.
    pub fn take(&self) -> Snapshot {
        let mut g = self.lock();
        let mut counters = Counters {
            sent: g.sent,
            completed: g.completed,
            input_tokens: g.input_tokens,
            output_tokens: g.output_tokens,
            usage_missing: g.usage_missing,
            warmup_done: g.warmup_done,
            ..Counters::default()
        };
        for (k, class) in ErrorClass::ALL.iter().enumerate() {
            if g.failed[k] > 0 {
                counters
                    .failed_by_class
                    .insert(class.as_str().to_owned(), g.failed[k]);
            }
        }
        let lat = std::mem::take(&mut g.lat);
        let (last_end, first_send) = (g.last_end, g.first_send);
        *g = Inner {
            last_end,
            first_send,
            ..Inner::default()
        };
        Snapshot {
            lat,
            counters,
            last_end,
            first_send,
        }
    }
}

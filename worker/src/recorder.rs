//! Where a shard's measurements accumulate between interval reports: latency histograms
//! (TTFT, TTFO, ITL per chunk and per token, TPOT, E2EL in µs, plus schedule lag and
//! latencies from the intended send instant for open loops) and counters, merged and per target endpoint. Each runtime
//! thread records into its own stripe behind an uncontended mutex; the reporter takes and
//! merges the stripes once per interval. A request records once, at its end, from its
//! task's reused buffer of chunk gaps, so the per-token path touches no lock and allocates nothing.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use rackload_proto::histogram::{HistogramError, LatencySet};
use rackload_proto::v1::{Counters, EndpointReport, Metric};
use tokio::time::Instant;

use crate::error::ErrorClass;
use crate::target::{Completed, Failed, Gap};

/// A send this much later than its schedule is a late start (open loop).
pub(crate) const LATE_START_US: u64 = 5_000;

/// Counters and histograms of one view (all endpoints, or one).
#[derive(Debug, Default)]
pub struct Part {
    pub lat: LatencySet,
    pub sent: u64,
    pub completed: u64,
    pub failed: [u64; ErrorClass::ALL.len()],
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub usage_missing: u64,
    pub warmup_done: u64,
    pub late_starts: u64,
    /// Completions whose length differs from the one forced with `ignore_eos`.
    pub output_len_mismatch: u64,
    pub reasoning_tokens: u64,
    pub output_chunks: u64,
    /// Completions that met every goodput SLO of the run.
    pub good_completed: u64,
}

/// What the sender judged of a completed request, beyond its measurements.
#[derive(Clone, Copy, Debug, Default)]
pub struct Judged {
    /// Its length differs from the one forced with `ignore_eos`.
    pub length_mismatch: bool,
    /// It met every goodput SLO of the run.
    pub good: bool,
}

impl Part {
    fn add(&mut self, o: &Part) -> Result<(), HistogramError> {
        self.lat.merge(&o.lat)?;
        self.sent += o.sent;
        self.completed += o.completed;
        for (a, b) in self.failed.iter_mut().zip(o.failed) {
            *a += b;
        }
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
        self.usage_missing += o.usage_missing;
        self.warmup_done += o.warmup_done;
        self.late_starts += o.late_starts;
        self.output_len_mismatch += o.output_len_mismatch;
        self.reasoning_tokens += o.reasoning_tokens;
        self.output_chunks += o.output_chunks;
        self.good_completed += o.good_completed;
        Ok(())
    }

    pub fn counters(&self) -> Counters {
        let mut c = Counters {
            sent: self.sent,
            completed: self.completed,
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            usage_missing: self.usage_missing,
            warmup_done: self.warmup_done,
            late_starts: self.late_starts,
            output_len_mismatch: self.output_len_mismatch,
            reasoning_tokens: self.reasoning_tokens,
            output_chunks: self.output_chunks,
            good_completed: self.good_completed,
            ..Counters::default()
        };
        for (k, class) in ErrorClass::ALL.iter().enumerate() {
            if self.failed[k] > 0 {
                c.failed_by_class
                    .insert(class.as_str().to_owned(), self.failed[k]);
            }
        }
        c
    }

    fn completed(
        &mut self,
        c: &Completed,
        input_len: u32,
        gaps: &[Gap],
        lag_us: Option<u64>,
        judged: Judged,
    ) {
        let lat = &mut self.lat;
        lat.record(Metric::Ttft, c.ttft_us);
        if let Some(ttfo) = c.ttfo_us {
            lat.record(Metric::Ttfo, ttfo);
        }
        lat.record(Metric::E2el, c.e2el_us);
        if c.output_tokens > 1 && c.e2el_us > c.ttft_us {
            lat.record(
                Metric::Tpot,
                (c.e2el_us - c.ttft_us) / (c.output_tokens - 1),
            );
        }
        if let Some(lag) = lag_us {
            lat.record(Metric::TtftIntended, c.ttft_us.saturating_add(lag));
            lat.record(Metric::E2elIntended, c.e2el_us.saturating_add(lag));
        }
        if let Some(itl) = lat.get_mut(Metric::Itl) {
            for g in gaps {
                itl.saturating_record(u64::from(g.us));
            }
        }
        if let Some(per_token) = lat.get_mut(Metric::ItlPerToken) {
            record_per_token(per_token, gaps, c.spread_tokens);
        }
        self.completed += 1;
        self.reasoning_tokens += c.reasoning_tokens;
        self.output_chunks += c.chunks;
        self.input_tokens += u64::from(input_len);
        self.output_tokens += c.output_tokens;
        if !c.usage_present {
            self.usage_missing += 1;
        }
        if judged.length_mismatch {
            self.output_len_mismatch += 1;
        }
        if judged.good {
            self.good_completed += 1;
        }
    }
}

/// Per-token ITL: a chunk of k tokens arriving g after the previous one gives k samples
/// of g/k (rounded, at least 1 µs, as the sim stamps it). A gap whose tokens are unknown
/// stands for `spread` tokens; its samples are whole, the fractions carried from gap to
/// gap so that the request's samples add up to its tokens.
fn record_per_token(h: &mut hdrhistogram::Histogram<u64>, gaps: &[Gap], spread: f64) {
    let mut carry = 0.0;
    for g in gaps {
        let (k, samples) = match g.tokens {
            Gap::UNKNOWN if spread > 0.0 => {
                carry += spread;
                let n = carry.floor();
                carry -= n;
                (spread, n as u64)
            }
            Gap::UNKNOWN | 0 => continue,
            k => (f64::from(k), u64::from(k)),
        };
        if samples > 0 {
            h.saturating_record_n(per_token_us(g.us, k), samples);
        }
    }
}

/// One token's share of a gap of `us` µs carrying `k` tokens.
fn per_token_us(us: u32, k: f64) -> u64 {
    ((f64::from(us) / k).round() as u64).max(1)
}

#[derive(Debug, Default)]
struct Stripe {
    all: Part,
    endpoints: Vec<Part>,
    last_end: Option<Instant>,
    first_send: Option<Instant>,
}

/// A shard's recorder, shared by its request tasks and its reporter.
#[derive(Debug)]
pub struct Recorder {
    stripes: Box<[Mutex<Stripe>]>,
    endpoints: usize,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new(1)
    }
}

/// What was recorded in one interval.
#[derive(Debug)]
pub struct Snapshot {
    pub all: Part,
    /// Per endpoint, when the target has more than one.
    pub endpoints: Vec<Part>,
    /// End of the latest request completed so far in the shard.
    pub last_end: Option<Instant>,
    /// Send of the first measured request of the shard.
    pub first_send: Option<Instant>,
}

impl Snapshot {
    pub fn counters(&self) -> Counters {
        self.all.counters()
    }

    /// Per-endpoint wire reports for endpoints named `urls`.
    pub(crate) fn endpoint_reports(
        &self,
        urls: &[String],
    ) -> Result<Vec<EndpointReport>, HistogramError> {
        self.endpoints
            .iter()
            .zip(urls)
            .map(|(p, url)| {
                Ok(EndpointReport {
                    base_url: url.clone(),
                    counters: Some(p.counters()),
                    histograms: p.lat.to_wire()?,
                })
            })
            .collect()
    }
}

/// This thread's stripe number, assigned on first use.
fn thread_slot() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    SLOT.with(|s| *s)
}

impl Recorder {
    /// A recorder for a target with `endpoints` base URLs, striped over the threads that
    /// may record into it.
    pub fn new(endpoints: usize) -> Recorder {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let per_endpoint = if endpoints > 1 { endpoints } else { 0 };
        Recorder {
            stripes: (0..threads)
                .map(|_| {
                    Mutex::new(Stripe {
                        endpoints: (0..per_endpoint).map(|_| Part::default()).collect(),
                        ..Stripe::default()
                    })
                })
                .collect(),
            endpoints: per_endpoint,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Stripe> {
        let k = thread_slot() % self.stripes.len();
        // A panic while holding this lock cannot leave the counters inconsistent in a way
        // worth refusing to report; keep going with the data.
        self.stripes[k].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A measured request is about to be sent; `lag_us` is how late it is against its
    /// schedule (open loop only).
    pub fn sent(&self, at: Instant, lag_us: Option<u64>) {
        let mut g = self.lock();
        g.all.sent += 1;
        g.first_send.get_or_insert(at);
        if let Some(lag) = lag_us {
            g.all.lat.record(Metric::ScheduleLag, lag);
            if lag > LATE_START_US {
                g.all.late_starts += 1;
            }
        }
    }

    /// A warmup request finished (completed or failed); it is measured nowhere.
    pub(crate) fn warmup_done(&self) {
        self.lock().all.warmup_done += 1;
    }

    /// A completed request; `mismatch`: its length, as the server counted it, differs
    /// from the one forced with `ignore_eos`.
    #[allow(clippy::too_many_arguments)]
    pub fn completed(
        &self,
        c: &Completed,
        input_len: u32,
        gaps: &[Gap],
        ended: Instant,
        lag_us: Option<u64>,
        judged: Judged,
    ) {
        let mut g = self.lock();
        g.all.completed(c, input_len, gaps, lag_us, judged);
        if let Some(p) = g.endpoints.get_mut(c.endpoint) {
            p.sent += 1;
            p.completed(c, input_len, gaps, None, judged);
        }
        g.last_end = Some(g.last_end.map_or(ended, |t| t.max(ended)));
    }

    pub fn failed(&self, f: &Failed) {
        let k = ErrorClass::ALL
            .iter()
            .position(|&c| c == f.class)
            .unwrap_or(0);
        let mut g = self.lock();
        g.all.failed[k] += 1;
        if let Some(p) = f.endpoint.and_then(|e| g.endpoints.get_mut(e)) {
            p.sent += 1;
            p.failed[k] += 1;
        }
    }

    /// Takes what was recorded since the last call and starts afresh.
    pub fn take(&self) -> Snapshot {
        let mut snap = Snapshot {
            all: Part::default(),
            endpoints: (0..self.endpoints).map(|_| Part::default()).collect(),
            last_end: None,
            first_send: None,
        };
        for stripe in &self.stripes[..] {
            let mut g = stripe.lock().unwrap_or_else(|p| p.into_inner());
            let all = std::mem::take(&mut g.all);
            let endpoints: Vec<Part> = g.endpoints.iter_mut().map(std::mem::take).collect();
            let (last_end, first_send) = (g.last_end, g.first_send);
            drop(g);
            let merge = |into: &mut Part, from: &Part| {
                if let Err(e) = into.add(from) {
                    tracing::error!("cannot merge recorder stripes: {e}");
                }
            };
            merge(&mut snap.all, &all);
            for (into, from) in snap.endpoints.iter_mut().zip(&endpoints) {
                merge(into, from);
            }
            snap.last_end = snap.last_end.max(last_end);
            snap.first_send = match (snap.first_send, first_send) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        snap
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn done(endpoint: usize, ttft_us: u64) -> Completed {
        Completed {
            ttft_us,
            ttfo_us: Some(ttft_us),
            e2el_us: ttft_us + 1000,
            output_tokens: 11,
            reasoning_tokens: 0,
            cached_tokens: None,
            chunks: 11,
            spread_tokens: 1.0,
            usage_present: true,
            endpoint,
            sent_at: Instant::now(),
            finish_reason: None,
        }
    }

    #[test]
    fn stripes_from_many_threads_merge_into_one_snapshot() {
        let rec = Arc::new(Recorder::new(2));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let rec = rec.clone();
                std::thread::spawn(move || {
                    for i in 0..1000u64 {
                        rec.sent(Instant::now(), Some(if i % 100 == 0 { 9_000 } else { 10 }));
                        rec.completed(
                            &done((i % 2) as usize, 100 + t),
                            7,
                            &[Gap {
                                us: 100,
                                tokens: Gap::UNKNOWN,
                            }; 10],
                            Instant::now(),
                            Some(10),
                            Judged::default(),
                        );
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        rec.failed(&Failed {
            class: ErrorClass::Http5xx,
            message: String::new(),
            endpoint: Some(1),
        });
        let s = rec.take();
        let c = s.counters();
        assert_eq!((c.sent, c.completed, c.failed()), (4000, 4000, 1));
        assert_eq!(c.late_starts, 40);
        assert_eq!(c.output_tokens, 44_000);
        let itl = s.all.lat.get(Metric::Itl).expect("itl");
        assert_eq!(itl.len(), 40_000);
        let lag = s.all.lat.get(Metric::ScheduleLag).expect("lag");
        assert_eq!(lag.len(), 4000);
        assert_eq!(s.endpoints.len(), 2);
        assert_eq!(s.endpoints[0].completed, 2000);
        assert_eq!(s.endpoints[1].counters().failed(), 1);
        assert_eq!(s.endpoints[1].sent, 2001);
        let per_token = s.all.lat.get(Metric::ItlPerToken).expect("per token");
        assert_eq!(
            per_token.len(),
            40_000,
            "one token per chunk: one sample per gap"
        );
        // Taking resets.
        assert_eq!(rec.take().counters().sent, 0);
    }

    #[test]
    fn per_token_itl_spreads_each_gap_over_its_tokens() {
        let mut h = rackload_proto::histogram::LatencySet::default();
        let per_token = h.get_mut(Metric::ItlPerToken).expect("slot");
        let gaps = [
            Gap {
                us: 9000,
                tokens: 3,
            },
            Gap {
                us: 4000,
                tokens: 1,
            },
            Gap { us: 500, tokens: 0 },
            Gap {
                us: 6000,
                tokens: Gap::UNKNOWN,
            },
        ];
        record_per_token(per_token, &gaps, 2.0);
        // 3 × 3 ms, 1 × 4 ms, nothing for an empty chunk, 2 × 3 ms at the spread.
        assert_eq!(per_token.len(), 6);
        assert_eq!(per_token.count_at(3000), 5);
        assert_eq!(per_token.count_at(4000), 1);
        // Fractions carry: 4 gaps at 1.5 tokens each are 6 samples, not 8.
        per_token.reset();
        let unknown = [Gap {
            us: 3000,
            tokens: Gap::UNKNOWN,
        }; 4];
        record_per_token(per_token, &unknown, 1.5);
        assert_eq!(per_token.len(), 6);
        assert_eq!(per_token.count_at(2000), 6);
    }
}

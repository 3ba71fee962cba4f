//! The sim's own stamps of what it sent (with `--stamp`), the server's side of every
//! timing-fidelity check: per request, TTFT and TTFO from arrival, the gap between
//! consecutive events (per chunk) and that gap spread over the event's tokens (per token:
//! k samples of gap/k), and TPOT = (last event − first event) / (tokens − 1). Quantiles
//! at `/stats`. The definitions are the client's (DESIGN.md §5), so the two must agree to
//! within the network's share.

use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::time::Instant;

/// One request's stamps while it streams.
#[derive(Debug)]
pub(crate) struct StreamStamps {
    pub arrival: Instant,
    first: Option<Instant>,
    prev: Option<Instant>,
    reasoned: bool,
    answered: bool,
}

impl StreamStamps {
    pub fn new(arrival: Instant) -> StreamStamps {
        StreamStamps {
            arrival,
            first: None,
            prev: None,
            reasoned: false,
            answered: false,
        }
    }

    /// The gap since the previous event (None for the first), and records `now` as the
    /// latest.
    pub fn gap(&mut self, now: Instant) -> Option<Duration> {
        let gap = self.prev.map(|p| now - p);
        self.first.get_or_insert(now);
        self.prev = Some(now);
        gap
    }
}

fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Histograms of the stamps, shared by all streams.
#[derive(Debug)]
pub(crate) struct Timing {
    hists: Mutex<Hists>,
}

#[derive(Debug)]
struct Hists {
    ttft: Histogram<u64>,
    ttfo: Histogram<u64>,
    itl: Histogram<u64>,
    itl_per_token: Histogram<u64>,
    tpot: Histogram<u64>,
}

#[derive(Serialize)]
pub(crate) struct Quantiles {
    count: u64,
    p50_us: u64,
    p90_us: u64,
    p99_us: u64,
    max_us: u64,
}

/// `/stats`' `timing`.
#[derive(Serialize)]
pub(crate) struct TimingView {
    ttft: Quantiles,
    ttfo: Quantiles,
    itl: Quantiles,
    itl_per_token: Quantiles,
    tpot: Quantiles,
}

fn quantiles(h: &Histogram<u64>) -> Quantiles {
    Quantiles {
        count: h.len(),
        p50_us: h.value_at_quantile(0.5),
        p90_us: h.value_at_quantile(0.9),
        p99_us: h.value_at_quantile(0.99),
        max_us: h.max(),
    }
}

impl Timing {
    pub fn new() -> Timing {
        // 1 µs .. 1 h at 3 significant figures, as the client records.
        let h = || {
            Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .unwrap_or_else(|_| unreachable!("constant bounds are valid"))
        };
        Timing {
            hists: Mutex::new(Hists {
                ttft: h(),
                ttfo: h(),
                itl: h(),
                itl_per_token: h(),
                tpot: h(),
            }),
        }
    }

    /// An event of `tokens` tokens (reasoning ones when `reasoning`) was handed to its
    /// connection at `now`, `gap` after the previous one.
    pub fn event(
        &self,
        st: &mut StreamStamps,
        now: Instant,
        gap: Option<Duration>,
        tokens: u32,
        reasoning: bool,
    ) {
        let mut g = self.hists.lock().unwrap_or_else(|p| p.into_inner());
        match gap {
            None => g.ttft.saturating_record(us(now - st.arrival)),
            Some(gap) => {
                g.itl.saturating_record(us(gap));
                if tokens > 0 {
                    // Rounded, at least 1 µs: the worker's rule.
                    let per = (us(gap) as f64 / f64::from(tokens)).round().max(1.0) as u64;
                    g.itl_per_token.saturating_record_n(per, u64::from(tokens));
                }
            }
        }
        if reasoning {
            st.reasoned = true;
        } else if !st.answered {
            st.answered = true;
            // A model that did not reason answers with its first token.
            let at = if st.reasoned {
                now
            } else {
                st.first.unwrap_or(now)
            };
            g.ttfo.saturating_record(us(at - st.arrival));
        }
    }

    /// The stream of `tokens` tokens ended: its TPOT.
    pub fn finish(&self, st: &StreamStamps, tokens: u32) {
        if let (Some(first), Some(last), 2..) = (st.first, st.prev, tokens) {
            let mut g = self.hists.lock().unwrap_or_else(|p| p.into_inner());
            g.tpot
                .saturating_record(us(last - first) / u64::from(tokens - 1));
        }
    }

    pub fn view(&self) -> TimingView {
        let g = self.hists.lock().unwrap_or_else(|p| p.into_inner());
        TimingView {
            ttft: quantiles(&g.ttft),
            ttfo: quantiles(&g.ttfo),
            itl: quantiles(&g.itl),
            itl_per_token: quantiles(&g.itl_per_token),
            tpot: quantiles(&g.tpot),
        }
    }
}

//! The live line under a running point: requests done out of expected, request and token
//! rates over the last report, TTFT p50/p99, errors, ETA. Drawn on stderr, hidden when
//! stderr is not a terminal.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use rackload_proto::v1::Progress;

#[derive(Debug)]
pub struct PointProgress {
    bar: ProgressBar,
    last: Option<(f64, u64, u64)>,
}

impl PointProgress {
    pub fn new(label: &str, expected: u64) -> PointProgress {
        let bar = ProgressBar::new(expected);
        let style = ProgressStyle::with_template(
            "{prefix:>6} [{bar:30}] {pos}/{len} req · {msg} · ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(label.to_owned());
        bar.enable_steady_tick(Duration::from_millis(250));
        PointProgress { bar, last: None }
    }

    pub fn update(&mut self, p: &Progress) {
        let c = p.counters.clone().unwrap_or_default();
        let failed = c.failed();
        let done = c.completed + failed;
        let (req_s, tok_s) = match self.last {
            Some((t, n, tok)) if p.elapsed_s > t => {
                let dt = p.elapsed_s - t;
                (
                    (c.completed.saturating_sub(n)) as f64 / dt,
                    (c.output_tokens.saturating_sub(tok)) as f64 / dt,
                )
            }
            _ => (0.0, 0.0),
        };
        self.last = Some((p.elapsed_s, c.completed, c.output_tokens));
        self.bar.set_position(done);
        self.bar.set_message(format!(
            "{req_s:.1} req/s · {tok_s:.0} out tok/s · TTFT p50 {:.0} ms p99 {:.0} ms · {} in flight · {failed} err",
            p.ttft_p50_ms, p.ttft_p99_ms, p.in_flight
        ));
    }

    pub fn finish(self) {
        self.bar.finish_and_clear();
    }
}

//! The live line under a running point: how far it is (requests done out of expected, or
//! seconds out of its duration when only a duration bounds it), request and token rates
//! over the last report, TTFT p50/p99, errors, ETA. Drawn on stderr, hidden when stderr is
//! not a terminal.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use rackload_proto::v1::Progress;

#[derive(Debug)]
pub struct PointProgress {
    bar: ProgressBar,
    /// The point ends at a duration: the bar counts seconds, the message requests.
    timed: bool,
    last: Option<(f64, u64, u64)>,
}

impl PointProgress {
    /// A bar over `expected` requests, or over `duration_s` seconds when that is set.
    pub fn new(label: &str, expected: u64, duration_s: f64) -> PointProgress {
        let timed = duration_s > 0.0;
        let (len, template) = if timed {
            (
                duration_s.ceil() as u64,
                "{prefix:>6} [{bar:30}] {pos}/{len} s · {msg}",
            )
        } else {
            (
                expected,
                "{prefix:>6} [{bar:30}] {pos}/{len} req · {msg} · ETA {eta}",
            )
        };
        let bar = ProgressBar::new(len);
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(label.to_owned());
        bar.enable_steady_tick(Duration::from_millis(250));
        PointProgress {
            bar,
            timed,
            last: None,
        }
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
        let done_msg = if self.timed {
            self.bar.set_position(p.elapsed_s as u64);
            format!("{done} req · ")
        } else {
            self.bar.set_position(done);
            String::new()
        };
        self.bar.set_message(format!(
            "{done_msg}{req_s:.1} req/s · {tok_s:.0} out tok/s · TTFT p50 {:.0} ms p99 {:.0} ms · {} in flight · {failed} err",
            p.ttft_p50_ms, p.ttft_p99_ms, p.in_flight
        ));
    }

    pub fn finish(self) {
        self.bar.finish_and_clear();
    }
}

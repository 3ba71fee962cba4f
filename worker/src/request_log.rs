//! Per-request records (`--save-requests`): one JSON line per measured request — its
//! index, worker, endpoint, intended and actual send, TTFT, TTFO, E2EL, tokens in and out
//! (reasoning and cached among them), chunks, and error class; with `--save-detailed`
//! also its chunk gaps — appended as requests end, gzip-compressed once per report
//! interval and shipped in the report. The CLI appends the gzip members, in arrival order,
//! to `requests/<point>.jsonl.gz` (concatenated members are one valid gzip file). The
//! format is in the README ("Per-request records"). Off by default: the per-token path
//! never touches it, and a request writes one line at its end.

use std::io::Write;
use std::sync::Mutex;

use serde::Serialize;
use tokio::time::Instant;

use crate::target::{Completed, Failed, Gap};

/// The log of one shard.
#[derive(Debug)]
pub struct RequestLog {
    worker: String,
    urls: Vec<String>,
    /// `anchor` on the coordinator's clock, in Unix µs: times are comparable across
    /// workers.
    anchor: Instant,
    anchor_unix_us: i64,
    /// Keep each request's chunk gaps (for vLLM's `itls`).
    detailed: bool,
    lines: Mutex<Vec<u8>>,
}

/// One line.
#[derive(Serialize)]
struct Record<'a> {
    index: u64,
    worker: &'a str,
    endpoint: Option<&'a str>,
    /// Open loop: when the schedule meant it to be sent (Unix µs, coordinator's clock).
    #[serde(skip_serializing_if = "Option::is_none")]
    intended_us: Option<i64>,
    /// When it was sent (Unix µs, coordinator's clock).
    sent_us: i64,
    ttft_ms: Option<f64>,
    ttfo_ms: Option<f64>,
    e2el_ms: Option<f64>,
    input_tokens: u32,
    output_tokens: Option<u64>,
    reasoning_tokens: Option<u64>,
    cached_tokens: Option<u64>,
    chunks: Option<u64>,
    /// The error class of a failed request (DESIGN.md: connect, tls, timeout, …).
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    /// With `--save-detailed`: gaps between consecutive chunks, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    itl_ms: Option<GapsMs<'a>>,
}

/// Chunk gaps written as a list of ms, without a list of them being made.
struct GapsMs<'a>(&'a [Gap]);

impl Serialize for GapsMs<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|g| ms(u64::from(g.us))))
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl RequestLog {
    /// A log for `worker`'s shard whose start instant `anchor` is `anchor_unix_ns` on the
    /// coordinator's clock.
    pub fn new(
        worker: String,
        urls: Vec<String>,
        anchor: Instant,
        anchor_unix_ns: i64,
        detailed: bool,
    ) -> RequestLog {
        RequestLog {
            worker,
            urls,
            anchor,
            anchor_unix_us: anchor_unix_ns / 1000,
            detailed,
            lines: Mutex::new(Vec::new()),
        }
    }

    fn unix_us(&self, t: Instant) -> i64 {
        let us = |d: std::time::Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        if t >= self.anchor {
            self.anchor_unix_us.saturating_add(us(t - self.anchor))
        } else {
            self.anchor_unix_us.saturating_sub(us(self.anchor - t))
        }
    }

    /// Serializes `r` into this thread's buffer, then appends it under the lock (which
    /// is held for a copy, never for the serialization).
    fn write(&self, r: &Record<'_>) {
        thread_local! {
            static LINE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        LINE.with_borrow_mut(|line| {
            line.clear();
            if serde_json::to_writer(&mut *line, r).is_ok() {
                line.push(b'\n');
                let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
                lines.extend_from_slice(line);
            }
        });
    }

    /// A completed request, its chunk gaps in `gaps`.
    pub fn completed(
        &self,
        index: u64,
        intended: Option<Instant>,
        c: &Completed,
        input_len: u32,
        gaps: &[Gap],
    ) {
        self.write(&Record {
            index,
            worker: &self.worker,
            endpoint: self.urls.get(c.endpoint).map(String::as_str),
            intended_us: intended.map(|t| self.unix_us(t)),
            sent_us: self.unix_us(c.sent_at),
            ttft_ms: Some(ms(c.ttft_us)),
            ttfo_ms: c.ttfo_us.map(ms),
            e2el_ms: Some(ms(c.e2el_us)),
            input_tokens: input_len,
            output_tokens: Some(c.output_tokens),
            reasoning_tokens: Some(c.reasoning_tokens),
            cached_tokens: c.cached_tokens,
            chunks: Some(c.chunks),
            error: None,
            message: None,
            itl_ms: self.detailed.then_some(GapsMs(gaps)),
        });
    }

    /// A failed request, sent (or about to be) at `sent`.
    pub fn failed(
        &self,
        index: u64,
        intended: Option<Instant>,
        sent: Instant,
        input_len: u32,
        f: &Failed,
    ) {
        self.write(&Record {
            index,
            worker: &self.worker,
            endpoint: f
                .endpoint
                .and_then(|k| self.urls.get(k))
                .map(String::as_str),
            intended_us: intended.map(|t| self.unix_us(t)),
            sent_us: self.unix_us(sent),
            ttft_ms: None,
            ttfo_ms: None,
            e2el_ms: None,
            input_tokens: input_len,
            output_tokens: None,
            reasoning_tokens: None,
            cached_tokens: None,
            chunks: None,
            error: Some(f.class.as_str()),
            message: Some(&f.message),
            itl_ms: None,
        });
    }

    /// What was written since the last call, as one gzip member (empty when nothing was).
    pub fn take_gz(&self) -> Vec<u8> {
        let lines = std::mem::take(&mut *self.lines.lock().unwrap_or_else(|p| p.into_inner()));
        if lines.is_empty() {
            return Vec::new();
        }
        let mut gz = flate2::write::GzEncoder::new(
            Vec::with_capacity(lines.len() / 4),
            flate2::Compression::fast(),
        );
        match gz.write_all(&lines).and_then(|()| gz.finish()) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::error!("cannot compress request records: {e}");
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorClass;
    use std::io::Read;
    use std::time::Duration;

    #[test]
    fn records_are_gzipped_json_lines_on_the_coordinators_clock() {
        let t0 = Instant::now();
        let log = RequestLog::new(
            "w1".into(),
            vec!["http://a".into()],
            t0,
            1_000_000_000_000,
            true,
        );
        assert!(log.take_gz().is_empty(), "nothing written yet");
        let done = Completed {
            ttft_us: 1500,
            ttfo_us: Some(4000),
            e2el_us: 9000,
            output_tokens: 4,
            reasoning_tokens: 2,
            cached_tokens: Some(16),
            chunks: 3,
            spread_tokens: 4.0 / 3.0,
            usage_present: true,
            endpoint: 0,
            sent_at: t0 + Duration::from_millis(2),
            finish_reason: None,
        };
        let gaps = [
            Gap {
                us: 2500,
                tokens: 1,
            },
            Gap {
                us: 5000,
                tokens: 2,
            },
        ];
        log.completed(7, Some(t0 + Duration::from_millis(1)), &done, 32, &gaps);
        let mut fail = Failed::new(ErrorClass::Http5xx, "HTTP 503");
        fail.endpoint = Some(0);
        log.failed(8, None, t0, 32, &fail);
        let gz = log.take_gz();
        let mut text = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut text)
            .expect("gzip");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect();
        assert_eq!(lines.len(), 2);
        let ok = &lines[0];
        assert_eq!(ok["index"], 7);
        assert_eq!(ok["worker"], "w1");
        assert_eq!(ok["endpoint"], "http://a");
        assert_eq!(ok["intended_us"], 1_000_001_000i64);
        assert_eq!(ok["sent_us"], 1_000_002_000i64);
        assert_eq!(
            (ok["ttft_ms"].as_f64(), ok["ttfo_ms"].as_f64()),
            (Some(1.5), Some(4.0))
        );
        assert_eq!(ok["cached_tokens"], 16);
        assert_eq!(ok["itl_ms"], serde_json::json!([2.5, 5.0]));
        let bad = &lines[1];
        assert_eq!(
            (bad["error"].as_str(), bad["ttft_ms"].is_null()),
            (Some("http_5xx"), true)
        );
        assert!(bad.get("intended_us").is_none());
        assert!(log.take_gz().is_empty(), "taking empties the log");
    }
}

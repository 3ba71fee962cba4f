//! `GET /metrics` for the coordinator and the sim, through `prometheus-client`: each
//! serves a [`Collector`] that reads its live state at scrape time (atomics, merged
//! histograms) and writes families with the helpers here, so the text — names, escaping,
//! cumulative buckets, `+Inf`, the OpenMetrics `# EOF` — is the crate's, not hand-rolled.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// The `Content-Type` of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The `Content-Type` of [`classic`]'s text (Prometheus text format 0.0.4).
pub(crate) const CLASSIC_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The exposition a scraper asked for by its `Accept` header: OpenMetrics when it names
/// it (Prometheus does), else the classic text format, which every older tool and
/// `promtool check metrics` read. Returns the content type and the text.
pub fn negotiate(accept: Option<&str>, collector: impl Collector) -> (&'static str, String) {
    let text = render(collector);
    if accept.is_some_and(|a| a.contains("application/openmetrics-text")) {
        (CONTENT_TYPE, text)
    } else {
        (CLASSIC_CONTENT_TYPE, classic(&text))
    }
}

/// OpenMetrics text as the classic format: a counter family is named with its `_total`
/// (OpenMetrics names the family without it), and there is no `# EOF`. Samples are
/// unchanged.
pub fn classic(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        if line.starts_with("# HELP ") {
            help = Some(line);
            continue;
        }
        if let Some(t) = line.strip_prefix("# TYPE ") {
            let (name, kind) = t.split_once(' ').unwrap_or((t, ""));
            let name = if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_owned()
            };
            if let Some(h) = help.take() {
                let text = h
                    .strip_prefix("# HELP ")
                    .and_then(|r| r.split_once(' '))
                    .map_or("", |(_, text)| text);
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Label pairs of one series.
pub type Labels = Vec<(String, String)>;

/// The exposition of `collector` (OpenMetrics text, which Prometheus scrapes).
pub fn render(collector: impl Collector) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(collector));
    let mut out = String::with_capacity(16 * 1024);
    // Writing to a String fails only if a collector does.
    if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
        out.clear();
    }
    out
}

/// One value of a series: a counter (`_total` is appended to the family name), a gauge,
/// or a histogram (per-bucket counts at upper bounds, `+Inf` last, and the sum).
#[derive(Clone, Debug)]
pub enum Value {
    Counter(u64),
    Gauge(f64),
    Histogram {
        buckets: Vec<(f64, u64)>,
        count: u64,
        sum: f64,
    },
}

impl Value {
    fn metric_type(&self) -> MetricType {
        match self {
            Value::Counter(_) => MetricType::Counter,
            Value::Gauge(_) => MetricType::Gauge,
            Value::Histogram { .. } => MetricType::Histogram,
        }
    }
}

/// Writes one family: its name, help and every series (labels, value).
pub fn family(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Labels, Value)>,
) -> Result<(), fmt::Error> {
    let mut series = series.into_iter().peekable();
    let Some((_, first)) = series.peek() else {
        return Ok(());
    };
    let mut metric = enc.encode_descriptor(name, help, None, first.metric_type())?;
    for (labels, value) in series {
        let mut m = metric.encode_family(&labels)?;
        write_value(&mut m, &value)?;
    }
    Ok(())
}

/// Writes a family with one unlabelled series.
pub fn single(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: Value,
) -> Result<(), fmt::Error> {
    family(enc, name, help, [(Labels::new(), value)])
}

fn write_value(
    m: &mut prometheus_client::encoding::MetricEncoder<'_>,
    value: &Value,
) -> Result<(), fmt::Error> {
    match value {
        Value::Counter(v) => m.encode_counter::<NoLabelSet, _, u64>(v, None),
        Value::Gauge(v) => m.encode_gauge(v),
        Value::Histogram {
            buckets,
            count,
            sum,
        } => m.encode_histogram::<NoLabelSet>(*sum, *count, buckets, None),
    }
}

/// Per-bucket counts from cumulative counts at `bounds` and the total (`+Inf` added).
pub fn buckets_from_cumulative(bounds: &[f64], cumulative: &[u64], count: u64) -> Vec<(f64, u64)> {
    let mut prev = 0;
    let mut out: Vec<(f64, u64)> = bounds
        .iter()
        .zip(cumulative)
        .map(|(&b, &c)| {
            let n = c.saturating_sub(prev);
            prev = c.max(prev);
            (b, n)
        })
        .collect();
    out.push((f64::INFINITY, count.saturating_sub(prev)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Two;

    impl Collector for Two {
        fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
            single(&mut enc, "x_requests", "Requests.", Value::Counter(3))?;
            family(
                &mut enc,
                "x_latency_seconds",
                "Latency.",
                [(
                    vec![("run".to_owned(), "a\"b".to_owned())],
                    Value::Histogram {
                        buckets: buckets_from_cumulative(&[0.1, 1.0], &[2, 5], 6),
                        count: 6,
                        sum: 2.5,
                    },
                )],
            )
        }
    }

    #[test]
    fn families_are_written_by_the_crate_with_cumulative_buckets() {
        let text = render(Two);
        for want in [
            "# TYPE x_requests counter",
            "x_requests_total 3",
            "x_latency_seconds_bucket{le=\"0.1\",run=\"a\\\"b\"} 2",
            "x_latency_seconds_bucket{le=\"1.0\",run=\"a\\\"b\"} 5",
            "x_latency_seconds_bucket{le=\"+Inf\",run=\"a\\\"b\"} 6",
            "x_latency_seconds_count{run=\"a\\\"b\"} 6",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == want), "{want} missing in\n{text}");
        }
        let old = classic(&text);
        for want in [
            "# HELP x_requests_total Requests.",
            "# TYPE x_requests_total counter",
            "x_requests_total 3",
            "# TYPE x_latency_seconds histogram",
        ] {
            assert!(old.lines().any(|l| l == want), "{want} missing in\n{old}");
        }
        assert!(!old.contains("# EOF"));
        let (kind, _) = negotiate(Some("application/openmetrics-text;version=1.0.0"), Two);
        assert_eq!(kind, CONTENT_TYPE);
        assert_eq!(negotiate(None, Two).0, CLASSIC_CONTENT_TYPE);
    }
}

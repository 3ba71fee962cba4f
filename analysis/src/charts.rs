//! The report's pictures beyond the frontier: latency by percentile on HdrHistogram's
//! "nines" axis (one chart per metric, a line per point, read from `histograms.hlog`),
//! and per-point timelines (the client's tok/s and TTFT per second, in-flight against
//! the server's running and waiting requests, KV-cache use, GPU and node power, read from
//! `telemetry/<label>.jsonl.gz`). Every chart is an SVG string to inline.

use std::collections::BTreeMap;
use std::path::Path;

use hdrhistogram::Histogram;
use plotters::prelude::*;
use serde_json::Value;

use crate::plot::{PlotError, register_fonts};

/// One named line of a chart.
pub(crate) type Series = (String, Vec<(f64, f64)>);

/// A chart: its title, axis words, lines, and how x is labelled.
pub(crate) struct Chart {
    pub title: String,
    pub x_desc: &'static str,
    pub y_desc: String,
    pub series: Vec<Series>,
    /// Latency by percentile: x is nines, labelled as percentiles, y on a log scale.
    pub nines: bool,
}

/// The metrics drawn by percentile, with their hlog tag names.
pub(crate) const NINES_METRICS: [(&str, &str); 4] = [
    ("ttft", "TTFT"),
    ("tpot", "TPOT"),
    ("itl", "ITL"),
    ("e2el", "E2EL"),
];

/// Percentile for `nines` (1 → 90%, 2 → 99%, ...).
fn percentile_label(nines: f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-nines));
    let digits = (nines - 2.0).ceil().clamp(0.0, 6.0) as usize;
    format!("{p:.digits$}%")
}

impl Chart {
    /// The chart as an SVG document; `None` when it has nothing to draw.
    pub(crate) fn svg(&self) -> Result<Option<String>, PlotError> {
        let points = self.series.iter().flat_map(|s| &s.1);
        let finite: Vec<(f64, f64)> = points
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .copied()
            .collect();
        if finite.is_empty() {
            return Ok(None);
        }
        register_fonts();
        let (x_max, y_max) = finite
            .iter()
            .fold((0.0f64, 0.0f64), |(a, b), (x, y)| (a.max(*x), b.max(*y)));
        let y_min = finite
            .iter()
            .map(|p| p.1)
            .filter(|y| *y > 0.0)
            .fold(f64::INFINITY, f64::min);
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (640, 320)).into_drawing_area();
            root.fill(&WHITE).map_err(draw_err)?;
            let mut builder = ChartBuilder::on(&root);
            builder
                .caption(&self.title, ("sans-serif", 18))
                .margin(10)
                .margin_right(28)
                .x_label_area_size(36)
                .y_label_area_size(64);
            // Nines end on a whole nine, one label each (90%, 99%, ...).
            let (x_end, x_labels) = if self.nines {
                let top = x_max.ceil().max(1.0);
                (top, top as usize + 1)
            } else {
                ((x_max * 1.02).max(1.0), 10)
            };
            // A log scale only where the values span more than a decade or so.
            if self.nines && y_min.is_finite() && y_max / y_min > 20.0 {
                let mut chart = builder
                    .build_cartesian_2d(0.0..x_end, (y_min * 0.9..y_max * 1.1).log_scale())
                    .map_err(draw_err)?;
                chart
                    .configure_mesh()
                    .x_desc(self.x_desc)
                    .y_desc(&self.y_desc)
                    .x_labels(x_labels)
                    .x_label_formatter(&|x| percentile_label(*x))
                    .y_label_formatter(&|y| short(*y))
                    .draw()
                    .map_err(draw_err)?;
                self.lines(&mut chart)?;
            } else {
                let mut chart = builder
                    .build_cartesian_2d(0.0..x_end, 0.0..(y_max * 1.08).max(1e-9))
                    .map_err(draw_err)?;
                let mut mesh = chart.configure_mesh();
                mesh.x_desc(self.x_desc)
                    .y_desc(&self.y_desc)
                    .x_labels(x_labels)
                    .y_label_formatter(&|y| short(*y));
                if self.nines {
                    mesh.x_label_formatter(&|x| percentile_label(*x));
                }
                mesh.draw().map_err(draw_err)?;
                self.lines(&mut chart)?;
            }
            root.present().map_err(draw_err)?;
        }
        Ok(Some(svg))
    }

    fn lines<'a, DB: DrawingBackend + 'a, Y: plotters::coord::ranged1d::Ranged<ValueType = f64>>(
        &self,
        chart: &mut ChartContext<'a, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
    ) -> Result<(), PlotError>
    where
        DB::ErrorType: 'static,
    {
        for (k, (name, line)) in self.series.iter().enumerate() {
            let color = Palette99::pick(k).to_rgba();
            let line: Vec<(f64, f64)> = line
                .iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite() && (!self.nines || *y > 0.0))
                .copied()
                .collect();
            // A line of a few readings is drawn as its points too (one reading is no line).
            if line.len() <= 3 {
                chart
                    .draw_series(line.iter().map(|p| Circle::new(*p, 4, color.filled())))
                    .map_err(draw_err)?;
            }
            chart
                .draw_series(LineSeries::new(line, color.stroke_width(2)))
                .map_err(draw_err)?
                .label(name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(draw_err)
    }
}

/// A tick value with the digits it needs.
fn short(y: f64) -> String {
    match y.abs() {
        a if a >= 100.0 || a == 0.0 => format!("{y:.0}"),
        a if a >= 1.0 => format!("{y:.1}"),
        _ => format!("{y:.3}"),
    }
}

fn draw_err(e: impl std::fmt::Display) -> PlotError {
    PlotError::Draw(e.to_string())
}

/// The run's point histograms from `histograms.hlog`, by `(label, metric)`; empty when
/// the file is absent or unreadable (the report then says so).
pub(crate) fn read_hlog(dir: &Path) -> BTreeMap<(String, String), Histogram<u64>> {
    use hdrhistogram::serialization::Deserializer;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    let mut out = BTreeMap::new();
    let Ok(bytes) = rackload_input::read_capped(
        &dir.join("histograms.hlog"),
        rackload_input::caps::DATASET,
        "a run's histograms",
    ) else {
        return out;
    };
    let mut de = Deserializer::new();
    for entry in IntervalLogIterator::new(&bytes) {
        let Ok(LogEntry::Interval(h)) = entry else {
            continue;
        };
        let Some((label, metric)) = h.tag().and_then(|t| t.as_str().split_once('/')) else {
            continue;
        };
        let key = (label.to_owned(), metric.to_owned());
        let Ok(decoded) = base64_decode(h.encoded_histogram()) else {
            continue;
        };
        if let Ok(hist) = de.deserialize::<u64, _>(&mut &decoded[..]) {
            out.insert(key, hist);
        }
    }
    out
}

fn base64_decode(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s)
}

/// A histogram (µs) as latency in ms by nines, up to the nines its count resolves.
fn by_nines(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    let top = (h.len().max(1) as f64).log10().clamp(1.0, 6.0);
    let mut line = Vec::new();
    let mut x = 0.0;
    while x <= top + 1e-9 {
        let q = 1.0 - 10f64.powf(-x);
        line.push((x, h.value_at_quantile(q) as f64 / 1000.0));
        x += 0.05;
    }
    line
}

/// One chart per metric, a line per point (in `labels`' order).
pub(crate) fn nines_charts(
    hists: &BTreeMap<(String, String), Histogram<u64>>,
    labels: &[String],
) -> Vec<Chart> {
    NINES_METRICS
        .iter()
        .map(|(metric, name)| Chart {
            title: format!("{name} by percentile"),
            x_desc: "percentile",
            y_desc: format!("{name} (ms)"),
            series: labels
                .iter()
                .filter_map(|l| {
                    let h = hists.get(&(l.clone(), (*metric).to_owned()))?;
                    (!h.is_empty()).then(|| (l.clone(), by_nines(h)))
                })
                .collect(),
            nines: true,
        })
        .filter(|c| !c.series.is_empty())
        .collect()
}

/// A point's telemetry lines, from `telemetry/<label>.jsonl.gz` (empty when absent).
pub(crate) fn read_telemetry(dir: &Path, label: &str) -> Vec<Value> {
    use std::io::BufRead;
    let path = dir.join("telemetry").join(format!("{label}.jsonl.gz"));
    let Ok(bytes) =
        rackload_input::read_capped(&path, rackload_input::caps::DATASET, "a point's telemetry")
    else {
        return Vec::new();
    };
    let gz = flate2::read::MultiGzDecoder::new(&bytes[..]);
    std::io::BufReader::new(gz)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect()
}

/// Most points a timeline line is drawn with.
const MAX_LINE_POINTS: usize = 1500;

/// `line` with at most about `max` points: in buckets of consecutive points, each
/// bucket's lowest and highest kept (in time order), so spikes survive the thinning.
fn thin(line: Vec<(f64, f64)>, max: usize) -> Vec<(f64, f64)> {
    if line.len() <= max {
        return line;
    }
    let per = line.len().div_ceil(max / 2);
    line.chunks(per)
        .flat_map(|c| {
            let lo = c.iter().copied().min_by(|a, b| a.1.total_cmp(&b.1));
            let hi = c.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1));
            let mut pair: Vec<(f64, f64)> = lo.into_iter().chain(hi).collect();
            pair.sort_by(|a, b| a.0.total_cmp(&b.0));
            pair.dedup();
            pair
        })
        .collect()
}

/// A point's timeline charts: the requests ended each second (counted at their end, as the
/// workers report them) with their output tokens and TTFT, requests in
/// flight (client) against running and waiting (server), KV-cache use, and measured
/// power. Seconds from the point's start instant; a chart without data is left out.
pub(crate) fn timeline_charts(label: &str, lines: &[Value]) -> Vec<Chart> {
    let client: Vec<&Value> = lines.iter().filter(|l| l["kind"] == "client").collect();
    // The start instant: a client line's time less its offset.
    let start = client
        .first()
        .and_then(|l| Some(l["unix_nanos"].as_f64()? - l["t_s"].as_f64()? * 1e9))
        .or_else(|| {
            lines
                .iter()
                .filter_map(|l| l["unix_nanos"].as_f64())
                .reduce(f64::min)
        });
    let Some(start) = start else {
        return Vec::new();
    };
    // Readings before the start instant (the meters are read from the point's plan on)
    // are left out; a long point's lines are thinned to what a chart can show.
    let series = |kind: &str, key: &str, scale: f64| -> Vec<(f64, f64)> {
        let line: Vec<(f64, f64)> = lines
            .iter()
            .filter(|l| l["kind"] == kind)
            .filter_map(|l| {
                let t = (l["unix_nanos"].as_f64()? - start) / 1e9;
                Some((t, l[key].as_f64()? * scale))
            })
            .filter(|(t, _)| *t >= 0.0)
            .collect();
        thin(line, MAX_LINE_POINTS)
    };
    let named = |name: &str, s: Vec<(f64, f64)>| (name.to_owned(), s);
    let chart = |title: &str, y: &str, series: Vec<Series>| Chart {
        title: format!("{label}: {title}"),
        x_desc: "seconds from the point's start",
        y_desc: y.to_owned(),
        series: series.into_iter().filter(|s| !s.1.is_empty()).collect(),
        nines: false,
    };
    vec![
        chart(
            "requests ended per second (counted as they end)",
            "tokens, requests",
            vec![
                named(
                    "their output tokens",
                    series("client", "output_tokens", 1.0),
                ),
                named("completed requests", series("client", "completed", 1.0)),
            ],
        ),
        chart(
            "TTFT of the requests ended each second",
            "ms",
            vec![
                named("TTFT p50", series("client", "ttft_p50_ms", 1.0)),
                named("TTFT p99", series("client", "ttft_p99_ms", 1.0)),
            ],
        ),
        chart(
            "requests",
            "requests",
            vec![
                named("client in flight", series("client", "in_flight", 1.0)),
                named("server running", series("server", "running", 1.0)),
                named("server waiting", series("server", "waiting", 1.0)),
            ],
        ),
        chart(
            "server KV-cache use",
            "% of the cache",
            vec![named("KV use", series("server", "kv_usage", 100.0))],
        ),
        chart(
            "measured power",
            "W",
            vec![
                named("GPUs (summed)", series("gpu", "watts", 1.0)),
                named("nodes (summed)", series("node", "watts", 1.0)),
            ],
        ),
    ]
    .into_iter()
    .filter(|c| !c.series.is_empty())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_line_is_thinned_keeping_its_extremes() {
        let mut line: Vec<(f64, f64)> = (0..100_000).map(|k| (f64::from(k), 1.0)).collect();
        line[54_321].1 = 50.0;
        let thinned = thin(line, 1500);
        assert!(thinned.len() <= 1500, "{}", thinned.len());
        assert!(thinned.contains(&(54_321.0, 50.0)), "the spike survives");
        assert!(thinned.windows(2).all(|w| w[0].0 < w[1].0), "in time order");
    }

    #[test]
    fn percentiles_are_labelled_by_their_nines() {
        assert_eq!(percentile_label(0.0), "0%");
        assert_eq!(percentile_label(1.0), "90%");
        assert_eq!(percentile_label(2.0), "99%");
        assert_eq!(percentile_label(3.0), "99.9%");
        assert_eq!(percentile_label(4.0), "99.99%");
    }

    #[test]
    fn a_histogram_by_nines_rises_to_its_tail() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("bounds");
        for v in 1..=10_000u64 {
            h.record(v * 100).expect("record");
        }
        let line = by_nines(&h);
        assert_eq!(line.first().map(|p| p.0), Some(0.0));
        assert!((line.last().expect("points").0 - 4.0).abs() < 0.05);
        assert!(line.windows(2).all(|w| w[1].1 >= w[0].1), "monotone");
        let p99 = line.iter().find(|p| (p.0 - 2.0).abs() < 1e-6).expect("p99");
        assert!((p99.1 - 990.0).abs() < 2.0, "{p99:?}");
        let svg = nines_charts(
            &BTreeMap::from([(("c1".to_owned(), "ttft".to_owned()), h)]),
            &["c1".to_owned()],
        )[0]
        .svg()
        .expect("draws")
        .expect("has data");
        assert!(svg.contains("<svg") && svg.contains("99.9%"), "{svg}");
    }
}

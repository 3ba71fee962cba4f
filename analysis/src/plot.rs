//! Frontier charts: throughput per GPU against interactivity (every point, each group's
//! frontier drawn through its Steffen interpolation), and $ per million tokens on a second
//! chart. SVG or PNG by the file's extension; the DejaVu font is embedded, so nothing is
//! read from the system and nothing from the network.

use std::path::Path;
use std::sync::Once;

use crate::analyze::{Analysis, PointOut, frontier_knots};
use crate::frontier::Steffen;
use plotters::coord::Shift;
use plotters::prelude::*;

/// Why a chart was not drawn.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("{0}: the file must end in .svg or .png")]
    Extension(String),
    #[error("nothing to plot")]
    Empty,
    #[error("cannot draw the chart: {0}")]
    Draw(String),
}

pub(crate) fn register_fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The embedded bytes are a valid TrueType font; a failure only loses text.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
        let _ = plotters::style::register_font("sans-serif", FontStyle::Bold, dejavu::sans::bold());
    });
}

/// Draws `analysis` into `path` (`.svg` or `.png`).
pub fn frontier_chart(analysis: &Analysis, path: &Path) -> Result<(), PlotError> {
    register_fonts();
    let size = (1000, 900);
    match path.extension().and_then(|e| e.to_str()) {
        Some("svg") => {
            let root = SVGBackend::new(path, size).into_drawing_area();
            draw(analysis, &root)?;
            root.present()
                .map_err(|e| PlotError::Draw(format!("{}: {e}", path.display())))?;
        }
        Some("png") => {
            let root = BitMapBackend::new(path, size).into_drawing_area();
            draw(analysis, &root)?;
            root.present()
                .map_err(|e| PlotError::Draw(format!("{}: {e}", path.display())))?;
        }
        _ => return Err(PlotError::Extension(path.display().to_string())),
    }
    Ok(())
}

/// The same chart as an SVG document in a string (for inlining in a report).
pub(crate) fn frontier_svg(analysis: &Analysis) -> Result<String, PlotError> {
    register_fonts();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1000, 900)).into_drawing_area();
        draw(analysis, &root)?;
        root.present().map_err(|e| PlotError::Draw(e.to_string()))?;
    }
    Ok(svg)
}

/// The frontier of `points` sampled along its interpolation, for drawing.
fn frontier_line(points: &[PointOut], y: impl Fn(&PointOut) -> f64) -> Vec<(f64, f64)> {
    let knots = frontier_knots(points, y);
    let Some(curve) = Steffen::new(&knots) else {
        return knots.iter().map(|k| (k.x, k.y)).collect();
    };
    let mut line = Vec::new();
    for w in knots.windows(2) {
        for j in 0..20 {
            let x = w[0].x + (w[1].x - w[0].x) * f64::from(j) / 20.0;
            if let Some(v) = curve.at(x) {
                line.push((x, v));
            }
        }
    }
    if let Some(k) = knots.last() {
        line.push((k.x, k.y));
    }
    line
}

fn draw<DB: DrawingBackend>(a: &Analysis, root: &DrawingArea<DB, Shift>) -> Result<(), PlotError>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)
        .map_err(|e| PlotError::Draw(e.to_string()))?;
    let (top, bottom) = root.split_vertically(450);
    let all: Vec<&PointOut> = a.groups.iter().flat_map(|g| &g.points).collect();
    if all.is_empty() {
        return Err(PlotError::Empty);
    }
    let max_x = all
        .iter()
        .map(|p| p.figures.interactivity)
        .fold(0.0, f64::max)
        * 1.08;
    let max_y = all
        .iter()
        .map(|p| p.figures.tput_per_gpu)
        .fold(0.0, f64::max)
        * 1.08;
    let costs: Vec<f64> = all
        .iter()
        .map(|p| p.figures.cost_per_mtok)
        .filter(|c| c.is_finite() && *c > 0.0)
        .collect();
    let (min_c, max_c) = (
        costs.iter().copied().fold(f64::INFINITY, f64::min) * 0.8,
        costs.iter().copied().fold(0.0, f64::max) * 1.25,
    );
    throughput_chart(a, &top, max_x, max_y)?;
    if costs.is_empty() {
        return Ok(());
    }
    cost_chart(a, &bottom, max_x, (min_c, max_c))
}

fn err<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> PlotError {
    PlotError::Draw(e.to_string())
}

/// Throughput per GPU against interactivity: every point, each group's frontier.
fn throughput_chart<DB: DrawingBackend>(
    a: &Analysis,
    area: &DrawingArea<DB, Shift>,
    max_x: f64,
    max_y: f64,
) -> Result<(), PlotError>
where
    DB::ErrorType: 'static,
{
    let mut chart = ChartBuilder::on(area)
        .caption("Throughput vs interactivity", ("sans-serif", 22))
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..max_x.max(1.0), 0.0..max_y.max(1.0))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("interactivity (tok/s/user, median)")
        .y_desc("tok/s per GPU")
        .draw()
        .map_err(err)?;
    for (k, g) in a.groups.iter().enumerate() {
        let color = Palette99::pick(k).to_rgba();
        chart
            .draw_series(g.points.iter().map(|p| {
                Circle::new(
                    (p.figures.interactivity, p.figures.tput_per_gpu),
                    4,
                    color.filled(),
                )
            }))
            .map_err(err)?
            .label(g.title())
            .legend(move |(x, y)| Circle::new((x, y), 4, color.filled()));
        chart
            .draw_series(LineSeries::new(
                frontier_line(&g.points, |p| p.figures.tput_per_gpu),
                color.stroke_width(2),
            ))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)
}

/// Cost per million tokens against interactivity (log scale), each group's frontier.
fn cost_chart<DB: DrawingBackend>(
    a: &Analysis,
    area: &DrawingArea<DB, Shift>,
    max_x: f64,
    (min_c, max_c): (f64, f64),
) -> Result<(), PlotError>
where
    DB::ErrorType: 'static,
{
    let tier = a.groups.first().map_or("", |g| g.tier.as_str());
    let mut cost = ChartBuilder::on(area)
        .caption(
            format!("Cost per million tokens ({tier})"),
            ("sans-serif", 22),
        )
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..max_x.max(1.0), (min_c..max_c).log_scale())
        .map_err(err)?;
    cost.configure_mesh()
        .x_desc("interactivity (tok/s/user, median)")
        .y_desc("$ per M tokens")
        .y_label_formatter(&|v| format!("{v:.3}"))
        .draw()
        .map_err(err)?;
    for (k, g) in a.groups.iter().enumerate() {
        let color = Palette99::pick(k).to_rgba();
        cost.draw_series(
            g.points
                .iter()
                .filter(|p| p.figures.cost_per_mtok.is_finite())
                .map(|p| {
                    Circle::new(
                        (p.figures.interactivity, p.figures.cost_per_mtok),
                        4,
                        color.filled(),
                    )
                }),
        )
        .map_err(err)?
        .label(g.title())
        .legend(move |(x, y)| Circle::new((x, y), 4, color.filled()));
        cost.draw_series(LineSeries::new(
            frontier_line(&g.points, |p| p.figures.cost_per_mtok),
            color.stroke_width(2),
        ))
        .map_err(err)?;
    }
    cost.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::{Options, analyze};
    use crate::catalog::Catalog;
    use crate::inputs::Point;
    use crate::tco::{Gpus, Measured};

    fn analysis() -> Analysis {
        let point = |system: &str, label: &str, tps: f64, tpot: f64| Point {
            source: format!("test#{label}"),
            label: label.into(),
            system: Some(system.into()),
            gpus: Some(Gpus::Aggregated(8)),
            measured: Measured {
                input_tps: tps,
                output_tps: tps,
                median_tpot_ms: tpot,
                gpu_power: None,
            },
            concurrency: None,
            isl: None,
            osl: None,
            format: "test",
            tpot_mean_ms: None,
            tpot_p90_ms: None,
            tpot_p99_ms: None,
            meta: Default::default(),
            model: None,
            latency_ms: Default::default(),
            nominal_lengths: false,
        };
        let points = vec![
            point("b200", "c4", 8_000.0, 4.0),
            point("b200", "c64", 60_000.0, 9.0),
            point("b200", "c256", 120_000.0, 25.0),
            point("mi355x", "c4", 7_000.0, 4.5),
            point("mi355x", "c64", 64_000.0, 10.0),
        ];
        let opts = Options {
            tier: "owning".into(),
            ..Options::default()
        };
        analyze(&points, &Catalog::embedded(), &opts).expect("analysis")
    }

    #[test]
    fn svg_and_png_render_every_series_without_system_fonts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let svg = dir.path().join("f.svg");
        frontier_chart(&analysis(), &svg).expect("svg");
        let text = std::fs::read_to_string(&svg).expect("read svg");
        assert!(text.starts_with("<svg"), "{}", &text[..80.min(text.len())]);
        // Both groups in both legends, five points on each of the two charts, and a
        // frontier line per group per chart.
        assert!(text.matches("b200").count() >= 2 && text.matches("mi355x").count() >= 2);
        assert!(text.matches("<circle").count() >= 2 * 5, "points drawn");
        assert!(text.matches("<polyline").count() >= 4, "frontier lines");
        assert!(text.contains("Cost per million tokens (owning)"));

        let png = dir.path().join("f.png");
        frontier_chart(&analysis(), &png).expect("png");
        let bytes = std::fs::read(&png).expect("read png");
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert!(bytes.len() > 10_000, "a drawn chart, not an empty image");

        let e = frontier_chart(&analysis(), &dir.path().join("f.pdf")).expect_err("pdf");
        assert!(e.to_string().contains(".svg or .png"), "{e}");
    }
}

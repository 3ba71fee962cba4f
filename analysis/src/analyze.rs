//! Points → groups → frontiers, figures at target interactivities and crossovers: the
//! document `rackload frontier` prints (JSON, table, CSV) and InferenceX-style rows.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::catalog::{Catalog, CatalogError};
use crate::frontier::{Curve, Steffen, Xy, crossovers, frontier};
use crate::inferencex_spline::CalculatorSpline;
use crate::inputs::Point;
use crate::tco::{self, Gpus, RackFigures};

#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    #[error("{source_name}: the file does not say which system it ran on; give --system NAME")]
    NoSystem { source_name: String },
    #[error(
        "{source_name}: the file does not say how many GPUs served it; give --gpus N (or --prefill-gpus and --decode-gpus)"
    )]
    NoGpus { source_name: String },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// What the command line says about the points.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub tier: String,
    /// Interactivity targets (tok/s/user).
    pub at: Vec<f64>,
    /// For files that do not say.
    pub system: Option<String>,
    pub gpus: Option<Gpus>,
    /// One group name for every input (else: the system and the inputs' engine,
    /// precision and spec-decode).
    pub group: Option<String>,
    /// Engine, precision, spec_decode of inputs that do not say.
    pub meta: BTreeMap<String, String>,
    /// How figures are read off a frontier at a target.
    pub interpolation: Interpolation,
}

/// How figures are read off a frontier at a target interactivity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    /// rackload's: Steffen's monotone cubic (one-sided end slopes, a line between two
    /// points) for throughput, and cost = price ÷ that throughput, so the two agree.
    #[default]
    Steffen,
    /// The InferenceX dashboard calculator's: d3's end slopes, its two-point rule, and
    /// cost splined from the points' own costs ([`crate::inferencex_spline`]).
    Inferencex,
}

impl Interpolation {
    pub fn name(self) -> &'static str {
        match self {
            Interpolation::Steffen => "steffen",
            Interpolation::Inferencex => "inferencex",
        }
    }

    /// A curve through `knots` of this kind.
    fn curve(self, knots: &[Xy]) -> Option<Box<dyn Curve>> {
        match self {
            Interpolation::Steffen => Steffen::new(knots).map(|c| Box::new(c) as Box<dyn Curve>),
            Interpolation::Inferencex => {
                CalculatorSpline::new(knots).map(|c| Box::new(c) as Box<dyn Curve>)
            }
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct PointOut {
    pub source: String,
    pub label: String,
    pub system: String,
    pub concurrency: Option<u32>,
    /// Throughput per GPU, cost, power and per-rack figures.
    #[serde(flatten)]
    pub figures: RackFigures,
    /// Interactivity at mean, p90 and p99 TPOT, when known.
    pub interactivity_mean: Option<f64>,
    pub interactivity_p90: Option<f64>,
    pub interactivity_p99: Option<f64>,
    pub on_frontier: bool,
    #[serde(skip)]
    pub isl: Option<f64>,
    #[serde(skip)]
    pub osl: Option<f64>,
    #[serde(skip)]
    pub median_tpot_ms: f64,
    /// Engine, precision, spec_decode: the input's, else the command line's.
    #[serde(skip)]
    pub meta: BTreeMap<String, String>,
    #[serde(skip)]
    pub model: Option<String>,
    #[serde(skip)]
    pub gpus: Gpus,
    #[serde(skip)]
    pub latency_ms: BTreeMap<String, f64>,
    /// Its configuration (chart and series, whatever `--group` says): duplicates are
    /// points of one configuration and concurrency.
    #[serde(skip)]
    pub config: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct AtOut {
    pub interactivity: f64,
    pub tput_per_gpu: f64,
    pub cost_per_mtok: f64,
    pub tok_per_s_per_mw: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct GroupOut {
    /// The chart the group belongs to: its model and nominal ISL/OSL, as far as the
    /// inputs say (frontiers of different charts are never compared).
    pub chart: String,
    /// The series: system · framework · precision · spec decoding · disagg.
    pub name: String,
    pub system: String,
    pub tier: String,
    pub points: Vec<PointOut>,
    /// Figures read off the frontier at each target inside its range.
    pub at: Vec<AtOut>,
    /// Points of one configuration and concurrency given more than once: which was kept
    /// (the last given, as InferenceX keeps the latest).
    pub duplicates: Vec<String>,
}

impl GroupOut {
    /// `chart — series`, or the series alone when the inputs name no chart.
    pub fn title(&self) -> String {
        if self.chart.is_empty() {
            self.name.clone()
        } else {
            format!("{} — {}", self.chart, self.name)
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Crossover {
    pub a: String,
    pub b: String,
    /// Where the cheaper of the two (by $/M tokens along their frontiers) flips.
    pub interactivity: f64,
    /// Which one is cheaper just above that interactivity.
    pub cheaper_above: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Analysis {
    /// How the figures at targets and the crossovers were read.
    pub interpolation: Interpolation,
    pub groups: Vec<GroupOut>,
    pub crossovers: Vec<Crossover>,
}

/// A group's frontier points as (interactivity, `y`) knots, in increasing interactivity.
pub(crate) fn frontier_knots(points: &[PointOut], y: impl Fn(&PointOut) -> f64) -> Vec<Xy> {
    points
        .iter()
        .filter(|p| p.on_frontier)
        .map(|p| Xy {
            x: p.figures.interactivity,
            y: y(p),
        })
        .collect()
}

/// A group's cost per million tokens along its frontier: price ÷ throughput (Steffen), or
/// the points' own costs splined (InferenceX).
struct CostCurve {
    tput: Option<Box<dyn Curve>>,
    dollars: f64,
    direct: Option<Box<dyn Curve>>,
}

impl Curve for CostCurve {
    fn at(&self, x: f64) -> Option<f64> {
        match &self.direct {
            Some(c) => c.at(x),
            None => Some(tco::cost_per_mtok(self.dollars, self.tput.as_ref()?.at(x)?)),
        }
    }

    fn range(&self) -> (f64, f64) {
        match (&self.direct, &self.tput) {
            (Some(c), _) | (None, Some(c)) => c.range(),
            (None, None) => (0.0, 0.0),
        }
    }
}

fn cost_curve(points: &[PointOut], dollars: f64, how: Interpolation) -> CostCurve {
    let tput = how.curve(&frontier_knots(points, |p| p.figures.tput_per_gpu));
    let direct = match how {
        Interpolation::Steffen => None,
        Interpolation::Inferencex => {
            how.curve(&frontier_knots(points, |p| p.figures.cost_per_mtok))
        }
    };
    CostCurve {
        tput,
        dollars,
        direct,
    }
}

pub fn analyze(
    points: &[Point],
    catalog: &Catalog,
    opts: &Options,
) -> Result<Analysis, AnalysisError> {
    let mut groups: BTreeMap<(String, String), (String, Vec<PointOut>)> = BTreeMap::new();
    for p in points {
        let (key, out) = point_out(p, catalog, opts)?;
        groups
            .entry(key)
            .or_insert_with(|| (out.system.clone(), Vec::new()))
            .1
            .push(out);
    }
    let mut out = Vec::new();
    let mut cost_curves = Vec::new();
    for ((chart, name), (system_name, pts)) in groups {
        let (g, cost) = group_out(chart, name, system_name, pts, catalog, opts)?;
        cost_curves.push((g.chart.clone(), g.name.clone(), cost));
        out.push(g);
    }
    Ok(Analysis {
        interpolation: opts.interpolation,
        groups: out,
        crossovers: crossovers_of(&cost_curves),
    })
}

/// One point's rack figures, and the (chart, series) it belongs to: as the InferenceX
/// dashboard draws them, one chart per model and nominal ISL/OSL, one series per system ·
/// framework · precision · spec decoding · disaggregation (names normalised as the
/// dashboard does); or the group asked for.
fn point_out(
    p: &Point,
    catalog: &Catalog,
    opts: &Options,
) -> Result<((String, String), PointOut), AnalysisError> {
    let system_name = p
        .system
        .clone()
        .or_else(|| opts.system.clone())
        .ok_or_else(|| AnalysisError::NoSystem {
            source_name: p.source.clone(),
        })?;
    let gpus = p.gpus.or(opts.gpus).ok_or_else(|| AnalysisError::NoGpus {
        source_name: p.source.clone(),
    })?;
    let system = catalog.system(&system_name)?;
    let dollars = system.cost(&opts.tier)?;
    let f = tco::figures(
        &p.measured,
        gpus,
        system,
        dollars,
        catalog.electricity_usd_per_kwh,
    );
    let mut meta = opts.meta.clone();
    meta.extend(p.meta.clone());
    let (meta, disagg) = normalised(meta, gpus);
    let (chart, series) = (chart_of(p), series_of(&system.name, &meta, disagg));
    let config = format!("{chart} — {series}");
    let key = match &opts.group {
        Some(g) => (String::new(), g.clone()),
        None => (chart, series),
    };
    let intvty = |t: Option<f64>| t.filter(|t| *t > 0.0).map(|t| 1000.0 / t);
    let out = PointOut {
        source: p.source.clone(),
        label: p.label.clone(),
        system: system.name.clone(),
        concurrency: p.concurrency,
        interactivity_mean: intvty(p.tpot_mean_ms),
        interactivity_p90: intvty(p.tpot_p90_ms),
        interactivity_p99: intvty(p.tpot_p99_ms),
        figures: f,
        on_frontier: false,
        isl: p.isl,
        osl: p.osl,
        median_tpot_ms: p.measured.median_tpot_ms,
        meta,
        model: p.model.clone(),
        gpus,
        latency_ms: p.latency_ms.clone(),
        config,
    };
    Ok((key, out))
}

/// The chart a point is drawn on: its model and nominal lengths, as far as known.
fn chart_of(p: &Point) -> String {
    let lengths = match (p.nominal_lengths, p.isl, p.osl) {
        (true, Some(i), Some(o)) => Some(format!("{}/{}", i.round(), o.round())),
        _ => None,
    };
    // A Hugging Face id and a bare name are one model: `openai/gpt-oss-120b` is
    // `gpt-oss-120b`.
    let model = p
        .model
        .as_deref()
        .and_then(|m| m.rsplit('/').next())
        .filter(|m| !m.is_empty())
        .map(str::to_lowercase);
    [model, lengths]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" · ")
}

/// A series name: the system, then framework, precision and spec decoding when known and
/// not "none", then "disagg".
fn series_of(system: &str, meta: &BTreeMap<String, String>, disagg: bool) -> String {
    std::iter::once(system.to_owned())
        .chain(
            ["engine", "precision", "spec_decode"]
                .iter()
                .filter_map(|k| meta.get(*k).cloned())
                .filter(|v| v != "none"),
        )
        .chain(disagg.then(|| "disagg".into()))
        .collect::<Vec<_>>()
        .join(" · ")
}

/// The grouping keys as the InferenceX dashboard normalises them
/// (`packages/db/src/etl/normalizers.ts`, `framework-aliases.ts`): lower case; precision
/// `mxfp4`/`nvfp4` → `fp4`; framework `trtllm` → `trt`, `dynamo-trtllm` → `dynamo-trt`,
/// `sglang-disagg` → `mori-sglang` (disaggregated); spec decoding empty → `none`. Also
/// whether the point is disaggregated (its GPUs apart, or its framework says so).
fn normalised(mut meta: BTreeMap<String, String>, gpus: Gpus) -> (BTreeMap<String, String>, bool) {
    for v in meta.values_mut() {
        *v = v.trim().to_lowercase();
    }
    if let Some(p) = meta.get_mut("precision")
        && matches!(p.as_str(), "mxfp4" | "nvfp4")
    {
        *p = "fp4".into();
    }
    let mut disagg = matches!(gpus, Gpus::Disaggregated { .. });
    if let Some(e) = meta.get_mut("engine") {
        let canonical = match e.as_str() {
            "trtllm" | "trt-llm" => Some("trt"),
            "dynamo-trtllm" => Some("dynamo-trt"),
            "sglang-disagg" => {
                disagg = true;
                Some("mori-sglang")
            }
            _ => None,
        };
        if let Some(c) = canonical {
            *e = c.into();
        }
    }
    if let Some(s) = meta.get_mut("spec_decode")
        && s.is_empty()
    {
        *s = "none".into();
    }
    (meta, disagg)
}

/// A group: its points in order of interactivity, which are on the frontier, and the
/// figures read off it at the targets asked for; and its cost curve, for crossovers.
fn group_out(
    chart: String,
    name: String,
    system_name: String,
    pts: Vec<PointOut>,
    catalog: &Catalog,
    opts: &Options,
) -> Result<(GroupOut, CostCurve), AnalysisError> {
    let (mut pts, duplicates) = without_duplicates(pts);
    pts.sort_by(|a, b| a.figures.interactivity.total_cmp(&b.figures.interactivity));
    let xy: Vec<Xy> = pts
        .iter()
        .map(|p| Xy {
            x: p.figures.interactivity,
            y: p.figures.tput_per_gpu,
        })
        .collect();
    for i in frontier(&xy) {
        pts[i].on_frontier = true;
    }
    let system = catalog.system(&system_name)?;
    let dollars = system.cost(&opts.tier)?;
    let cost = cost_curve(&pts, dollars, opts.interpolation);
    let at = opts
        .at
        .iter()
        .filter_map(|&x| {
            let t = cost.tput.as_ref()?.at(x)?;
            Some(AtOut {
                interactivity: x,
                tput_per_gpu: t,
                cost_per_mtok: cost.at(x)?,
                tok_per_s_per_mw: tco::tok_per_s_per_mw(t, system.all_in_kw_per_gpu),
            })
        })
        .collect();
    let g = GroupOut {
        chart,
        name,
        system: system_name,
        tier: opts.tier.clone(),
        points: pts,
        at,
        duplicates,
    };
    Ok((g, cost))
}

/// One point per configuration and concurrency (open loops: per label): the last given
/// wins, as the dashboard keeps a configuration's latest result; each one dropped is
/// said.
fn without_duplicates(pts: Vec<PointOut>) -> (Vec<PointOut>, Vec<String>) {
    let key = |p: &PointOut| match p.concurrency {
        Some(c) if c > 0 => format!("{} c{c}", p.config),
        _ => format!("{} {}", p.config, p.label),
    };
    let mut kept: Vec<PointOut> = Vec::with_capacity(pts.len());
    let mut said = Vec::new();
    for p in pts {
        match kept.iter_mut().find(|k| key(k) == key(&p)) {
            Some(old) => {
                said.push(format!(
                    "{}: {} kept, {} dropped",
                    key(&p),
                    p.source,
                    old.source
                ));
                *old = p;
            }
            None => kept.push(p),
        }
    }
    (kept, said)
}

/// Where two groups' cost curves cross, and which is cheaper above (groups of one chart
/// only).
fn crossovers_of(cost_curves: &[(String, String, CostCurve)]) -> Vec<Crossover> {
    let mut crosses = Vec::new();
    for (i, (chart_a, a, ca)) in cost_curves.iter().enumerate() {
        for (chart_b, b, cb) in &cost_curves[i + 1..] {
            if chart_a != chart_b || ca.tput.is_none() || cb.tput.is_none() {
                continue;
            }
            for x in crossovers(ca, cb) {
                let above = x + 1e-6 * x.max(1.0);
                let cheaper = match (ca.at(above), cb.at(above)) {
                    (Some(p), Some(q)) if p < q => a.clone(),
                    _ => b.clone(),
                };
                crosses.push(Crossover {
                    a: a.clone(),
                    b: b.clone(),
                    interactivity: x,
                    cheaper_above: cheaper,
                });
            }
        }
    }
    crosses
}

impl Analysis {
    /// A table for people.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut t = String::new();
        let _ = writeln!(
            t,
            "figures at targets read by {} interpolation",
            self.interpolation.name()
        );
        for g in &self.groups {
            let _ = writeln!(t, "{} ({} tier)", g.title(), g.tier);
            for d in &g.duplicates {
                let _ = writeln!(t, "  duplicate {d}");
            }
            let _ = writeln!(
                t,
                "  {:>10} {:>12} {:>12} {:>10} {:>12} {:>9}  frontier",
                "point", "tok/s/user", "tok/s/GPU", "$/M tok", "tok/s/MW", "J/tok"
            );
            for p in &g.points {
                let _ = writeln!(
                    t,
                    "  {:>10} {:>12.1} {:>12.1} {:>10.4} {:>12.0} {:>9.4}  {}",
                    p.label,
                    p.figures.interactivity,
                    p.figures.tput_per_gpu,
                    p.figures.cost_per_mtok,
                    p.figures.tok_per_s_per_mw,
                    p.figures.joules_per_token,
                    if p.on_frontier { "*" } else { "" }
                );
                if let Some(m) = &p.figures.measured_power {
                    let energy = |c: Option<f64>| {
                        c.map(|c| format!(", energy ${c:.4}/M tok"))
                            .unwrap_or_default()
                    };
                    let _ = writeln!(
                        t,
                        "  {:>10} measured: {:.0} tok/s/MW, {:.4} J/tok{} ({:.3} kW/GPU all-in: measured GPU power × {:.2} overhead; provisioned{})",
                        "",
                        m.tok_per_s_per_mw,
                        m.joules_per_token,
                        energy(m.energy_cost_per_mtok),
                        m.kw_per_gpu,
                        m.overhead,
                        energy(p.figures.energy_cost_per_mtok)
                    );
                }
            }
            for a in &g.at {
                let _ = writeln!(
                    t,
                    "  at {:.0} tok/s/user: {:.1} tok/s/GPU, ${:.4}/M tokens, {:.0} tok/s/MW",
                    a.interactivity, a.tput_per_gpu, a.cost_per_mtok, a.tok_per_s_per_mw
                );
            }
        }
        for c in &self.crossovers {
            let _ = writeln!(
                t,
                "crossover {} / {} at {:.1} tok/s/user: {} is cheaper above it",
                c.a, c.b, c.interactivity, c.cheaper_above
            );
        }
        t
    }

    /// CSV, one row per point.
    pub fn csv(&self) -> String {
        let mut t = String::from(
            "group,source,label,system,concurrency,interactivity,tput_per_gpu,output_tput_per_gpu,input_tput_per_gpu,cost_per_mtok,output_cost_per_mtok,tok_per_s_per_mw,joules_per_token,on_frontier,measured_tok_per_s_per_mw,measured_joules_per_token,energy_cost_per_mtok,measured_energy_cost_per_mtok\n",
        );
        for g in &self.groups {
            for p in &g.points {
                let measured = |f: fn(&crate::tco::MeasuredPower) -> f64| {
                    p.figures
                        .measured_power
                        .as_ref()
                        .map(|m| f(m).to_string())
                        .unwrap_or_default()
                };
                let energy = |c: Option<f64>| c.map(|c| c.to_string()).unwrap_or_default();
                t.push_str(&format!(
                    "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
                    csv_field(&g.name),
                    csv_field(&p.source),
                    csv_field(&p.label),
                    csv_field(&p.system),
                    p.concurrency.map(|c| c.to_string()).unwrap_or_default(),
                    p.figures.interactivity,
                    p.figures.tput_per_gpu,
                    p.figures.output_tput_per_gpu,
                    p.figures.input_tput_per_gpu,
                    p.figures.cost_per_mtok,
                    p.figures.output_cost_per_mtok,
                    p.figures.tok_per_s_per_mw,
                    p.figures.joules_per_token,
                    p.on_frontier,
                    measured(|m| m.tok_per_s_per_mw),
                    measured(|m| m.joules_per_token),
                    energy(p.figures.energy_cost_per_mtok),
                    energy(
                        p.figures
                            .measured_power
                            .and_then(|m| m.energy_cost_per_mtok)
                    ),
                ));
            }
        }
        t
    }

    /// InferenceX aggregate rows, one JSON object per point, with every field of
    /// InferenceX's `process_result.py` that rackload knows: hardware, concurrency, model,
    /// framework, precision, spec decoding, nominal lengths, per-GPU throughputs (and a
    /// disaggregated point's prefill and decode GPUs), and latency statistics in seconds
    /// with interactivity (1000 / TPOT ms) at each. Not known here, so not written: `tp`,
    /// `ep`, `pp`, `dp_attention`, `image`, `recipe_fingerprint`; nor `std_intvty`, which
    /// InferenceX computes as 1000 / std and means nothing.
    pub fn inferencex_rows(&self) -> Vec<serde_json::Value> {
        self.groups
            .iter()
            .flat_map(|g| g.points.iter().map(inferencex_row))
            .collect()
    }
}

/// One point as an InferenceX aggregate row (see [`Analysis::inferencex_rows`]).
fn inferencex_row(p: &PointOut) -> serde_json::Value {
    use serde_json::{Value, json};
    let mut row = serde_json::Map::new();
    let mut put = |k: &str, v: Value| {
        row.insert(k.to_owned(), v);
    };
    put("hw", json!(p.system));
    put("conc", json!(p.concurrency));
    put("model", json!(p.model));
    for (key, meta) in [
        ("framework", "engine"),
        ("precision", "precision"),
        ("spec_decoding", "spec_decode"),
    ] {
        put(key, json!(p.meta.get(meta)));
    }
    put("isl", json!(p.isl.map(f64::round)));
    put("osl", json!(p.osl.map(f64::round)));
    match p.gpus {
        Gpus::Aggregated(_) => put("disagg", json!(false)),
        Gpus::Disaggregated { prefill, decode } => {
            put("disagg", json!(true));
            put("num_prefill_gpu", json!(prefill));
            put("num_decode_gpu", json!(decode));
        }
    }
    put("tput_per_gpu", json!(p.figures.tput_per_gpu));
    put("output_tput_per_gpu", json!(p.figures.output_tput_per_gpu));
    put("input_tput_per_gpu", json!(p.figures.input_tput_per_gpu));
    for (key, ms) in &p.latency_ms {
        put(key.trim_end_matches("_ms"), json!(ms / 1000.0));
    }
    for stat in ["mean", "median", "p90", "p99", "p99.9"] {
        if let Some(tpot) = p
            .latency_ms
            .get(&format!("{stat}_tpot_ms"))
            .filter(|t| **t > 0.0)
        {
            put(&format!("{stat}_intvty"), json!(1000.0 / tpot));
        }
    }
    put("median_intvty", json!(p.figures.interactivity));
    put("median_tpot", json!(p.median_tpot_ms / 1000.0));
    put("source", json!(p.source));
    Value::Object(row)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

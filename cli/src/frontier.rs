//! `rackload frontier`: reads results of any supported origin, groups them as the
//! InferenceX dashboard draws them (chart: model and ISL/OSL; series: system, framework,
//! precision, spec decoding, disaggregation), and prints each group's points with their rack figures, the Pareto frontier, figures at
//! target interactivities and the crossovers between groups (DESIGN.md §6).

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, bail};
use rackload_analysis::analyze::{Interpolation, Options, analyze};
use rackload_analysis::catalog::Catalog;
use rackload_analysis::inputs;
use rackload_analysis::tco::Gpus;

use crate::args::{FrontierArgs, FrontierFormat, InterpolationArg};

pub fn main(args: FrontierArgs) -> anyhow::Result<ExitCode> {
    if let Some(x) = args.at.iter().find(|x| !(x.is_finite() && **x > 0.0)) {
        bail!("--at {x}: interactivity targets must be positive tok/s/user");
    }
    let catalog = Catalog::load(args.catalog.as_deref())?;
    let mut points = Vec::new();
    for input in &args.inputs {
        points.extend(inputs::read(input)?);
    }
    if points.is_empty() {
        bail!("no measured point in the inputs (every point failed or was empty)");
    }
    let gpus = match (args.gpus, args.prefill_gpus, args.decode_gpus) {
        (Some(n), _, _) => Some(Gpus::Aggregated(n)),
        (None, Some(prefill), Some(decode)) => Some(Gpus::Disaggregated { prefill, decode }),
        _ => None,
    };
    let opts = Options {
        tier: args.tier.clone(),
        at: args.at.clone(),
        system: args.system.clone(),
        gpus,
        group: args.group.clone(),
        meta: [
            ("engine", &args.engine),
            ("precision", &args.precision),
            ("spec_decode", &args.spec_decode),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_owned(), v.clone()?)))
        .collect(),
        interpolation: match args.interpolation {
            InterpolationArg::Steffen => Interpolation::Steffen,
            InterpolationArg::Inferencex => Interpolation::Inferencex,
        },
    };
    let analysis = analyze(&points, &catalog, &opts)?;
    if let Some(path) = &args.plot {
        rackload_analysis::plot::frontier_chart(&analysis, path).context("--plot")?;
    }
    let mut out = std::io::stdout().lock();
    match args.format {
        FrontierFormat::Table => out.write_all(analysis.table().as_bytes()),
        FrontierFormat::Csv => out.write_all(analysis.csv().as_bytes()),
        FrontierFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&analysis)?),
        FrontierFormat::Inferencex => analysis
            .inferencex_rows()
            .iter()
            .try_for_each(|row| writeln!(out, "{row}")),
    }
    .context("cannot write the output")?;
    Ok(ExitCode::SUCCESS)
}

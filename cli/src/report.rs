//! `rackload report RUN_DIR`: writes the self-contained HTML report (and `frontier.svg`) of
//! one run, or of every run under a results directory.

use crate::console::say;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use rackload_analysis::catalog::Catalog;
use rackload_analysis::html::write;

use crate::args::ReportArgs;

pub fn main(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let catalog = Catalog::load(args.catalog.as_deref())?;
    let dirs: Vec<PathBuf> = if args.results.join("run.json").is_file() {
        vec![args.results.clone()]
    } else {
        let mut d: Vec<PathBuf> = std::fs::read_dir(&args.results)
            .with_context(|| format!("cannot read {}", args.results.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join("run.json").is_file())
            .collect();
        d.sort();
        d
    };
    if dirs.is_empty() {
        bail!(
            "{} holds no run.json (give a run's directory or a results directory)",
            args.results.display()
        );
    }
    for dir in dirs {
        let path = write(&dir, &args.tier, &catalog)?;
        say!("{}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

//! Rack-scale analysis of finished runs, apart from any running process (DESIGN.md §6, §7):
//! result files written atomically as points finish ([`results`]), their vLLM-style
//! summaries ([`summary`]) and, from per-request records, vLLM's detailed arrays
//! ([`detailed`]); reading results of any origin ([`inputs`]); the hardware
//! catalog, per-point cost and power figures ([`tco`]); Pareto frontiers with monotone
//! interpolation ([`frontier`]) or the InferenceX dashboard's ([`inferencex_spline`]);
//! groups, targets and crossovers ([`analyze`]); and the HTML report and charts
//! ([`html`], [`plot`]). The CLI's `run`, `frontier` and `report` build on it; the
//! coordinator never does.

pub mod analyze;
pub mod catalog;
mod charts;
pub mod detailed;
pub mod frontier;
pub mod html;
pub mod inferencex_spline;
pub mod inputs;
pub mod plot;
pub mod results;
pub mod summary;
pub mod tco;

//! Rack-scale analysis of finished runs (DESIGN.md §6): the hardware catalog, per-point
//! throughput per GPU and cost/power figures, Pareto frontiers with monotone interpolation,
//! and crossovers between systems. The `rackload frontier` and `report` commands build on it.

pub mod catalog;
pub mod frontier;
pub mod inputs;
pub mod report;
pub mod tco;

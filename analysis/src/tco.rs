//! A point in rack terms (DESIGN.md §6): throughput per GPU with disaggregated
//! denominators, interactivity, $ per million tokens per cost tier, tokens per second per
//! provisioned megawatt, joules per token, and per-rack figures.

use serde::Serialize;

use crate::catalog::System;

/// How many GPUs served a point: all in one pool, or prefill and decode apart.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum Gpus {
    Aggregated(u32),
    Disaggregated { prefill: u32, decode: u32 },
}

impl Gpus {
    pub fn total(self) -> u32 {
        match self {
            Gpus::Aggregated(n) => n,
            Gpus::Disaggregated { prefill, decode } => prefill + decode,
        }
    }
    fn prefill(self) -> u32 {
        match self {
            Gpus::Aggregated(n) => n,
            Gpus::Disaggregated { prefill, .. } => prefill,
        }
    }
    fn decode(self) -> u32 {
        match self {
            Gpus::Aggregated(n) => n,
            Gpus::Disaggregated { decode, .. } => decode,
        }
    }
}

/// What a point measured, in the units the analysis needs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Measured {
    /// Input tokens per second over the measurement window.
    pub input_tps: f64,
    /// Output tokens per second.
    pub output_tps: f64,
    /// Median TPOT in ms (interactivity = 1000 / it).
    pub median_tpot_ms: f64,
    /// Measured GPU power over the window, summed, and over how many GPUs (rackload
    /// points with `--gpu-metrics`; none for other inputs).
    pub gpu_power: Option<(f64, u32)>,
}

/// A point's power figures from its measured GPU power, beside the provisioned ones.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct MeasuredPower {
    /// Measured power per GPU times the catalog's overhead, kW.
    pub kw_per_gpu: f64,
    /// The catalog's all-in kW per GPU over its TDP: what the facility, CPUs and network
    /// add to a GPU's own draw, applied to the measured draw.
    pub overhead: f64,
    pub tok_per_s_per_mw: f64,
    pub joules_per_token: f64,
    /// The energy part of $/M tokens at the measured power (absent: no price).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub energy_cost_per_mtok: Option<f64>,
}

/// A point's rack-scale figures.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RackFigures {
    /// Median interactivity, tok/s/user.
    pub interactivity: f64,
    /// Total (input + output) tokens per second per GPU (all GPUs).
    pub tput_per_gpu: f64,
    /// Output tokens per second per decode GPU.
    pub output_tput_per_gpu: f64,
    /// Input tokens per second per prefill GPU.
    pub input_tput_per_gpu: f64,
    /// $ per million total tokens at the tier.
    pub cost_per_mtok: f64,
    /// $ per million output tokens (all GPUs' cost over output tokens).
    pub output_cost_per_mtok: f64,
    /// $ per million input tokens (all GPUs' cost over input tokens).
    pub input_cost_per_mtok: f64,
    /// Total tokens per second per provisioned MW.
    pub tok_per_s_per_mw: f64,
    /// Provisioned energy per total token, J.
    pub joules_per_token: f64,
    /// The energy part of $/M tokens at the provisioned power and the catalog's price of
    /// electricity (absent: no price); inside `cost_per_mtok`, not added to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub energy_cost_per_mtok: Option<f64>,
    /// From the measured power, when the point has it (labelled *measured*; the figures
    /// above stay the provisioned ones).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measured_power: Option<MeasuredPower>,
    /// Per rack: tokens/s, $/hour and kW for a rack full of such GPUs.
    pub rack_tok_per_s: f64,
    pub rack_cost_per_hour: f64,
    pub rack_kw: f64,
}

/// $ per million tokens at `tput` tokens/s per GPU and `dollars_per_gpu_hour`.
pub(crate) fn cost_per_mtok(dollars_per_gpu_hour: f64, tput_per_gpu: f64) -> f64 {
    if tput_per_gpu > 0.0 {
        dollars_per_gpu_hour / (tput_per_gpu * 3600.0 / 1e6)
    } else {
        f64::INFINITY
    }
}

/// Tokens per second per provisioned MW.
pub(crate) fn tok_per_s_per_mw(tput_per_gpu: f64, kw_per_gpu: f64) -> f64 {
    tput_per_gpu * 1000.0 / kw_per_gpu
}

pub fn figures(
    m: &Measured,
    gpus: Gpus,
    system: &System,
    dollars_per_gpu_hour: f64,
    usd_per_kwh: Option<f64>,
) -> RackFigures {
    let total = f64::from(gpus.total().max(1));
    let tput_per_gpu = (m.input_tps + m.output_tps) / total;
    let output_tput_per_gpu = m.output_tps / f64::from(gpus.decode().max(1));
    let input_tput_per_gpu = m.input_tps / f64::from(gpus.prefill().max(1));
    let kw = system.all_in_kw_per_gpu;
    let rack = f64::from(system.gpus_per_rack);
    // An hour of a GPU's power at the price, over the tokens it makes in that hour.
    let energy_cost = |kw: f64| usd_per_kwh.map(|p| cost_per_mtok(kw * p, tput_per_gpu));
    RackFigures {
        interactivity: if m.median_tpot_ms > 0.0 {
            1000.0 / m.median_tpot_ms
        } else {
            0.0
        },
        tput_per_gpu,
        output_tput_per_gpu,
        input_tput_per_gpu,
        cost_per_mtok: cost_per_mtok(dollars_per_gpu_hour, tput_per_gpu),
        output_cost_per_mtok: cost_per_mtok(dollars_per_gpu_hour, m.output_tps / total),
        input_cost_per_mtok: cost_per_mtok(dollars_per_gpu_hour, m.input_tps / total),
        tok_per_s_per_mw: tok_per_s_per_mw(tput_per_gpu, kw),
        joules_per_token: if tput_per_gpu > 0.0 {
            kw * 1000.0 / tput_per_gpu
        } else {
            f64::INFINITY
        },
        energy_cost_per_mtok: energy_cost(kw),
        measured_power: m.gpu_power.and_then(|(watts, n)| {
            let overhead = if system.tdp_kw > 0.0 {
                system.all_in_kw_per_gpu / system.tdp_kw
            } else {
                1.0
            };
            let kw = watts / f64::from(n.max(1)) / 1000.0 * overhead;
            (kw > 0.0 && tput_per_gpu > 0.0).then(|| MeasuredPower {
                kw_per_gpu: kw,
                overhead,
                tok_per_s_per_mw: tok_per_s_per_mw(tput_per_gpu, kw),
                joules_per_token: kw * 1000.0 / tput_per_gpu,
                energy_cost_per_mtok: energy_cost(kw),
            })
        }),
        rack_tok_per_s: tput_per_gpu * rack,
        rack_cost_per_hour: dollars_per_gpu_hour * rack,
        rack_kw: kw * rack,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    /// 1 kW of measured GPU power with the catalog's overhead (all-in kW over TDP).
    fn overhead_kw(s: &System) -> f64 {
        s.all_in_kw_per_gpu / s.tdp_kw
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn gb200_nvl72_by_hand() {
        let cat = Catalog::embedded();
        let gb = cat.system("gb200-nvl72").expect("gb200");
        // 72 GPUs do 360,000 tok/s in and 360,000 out: 10,000 tok/s/GPU in total.
        let m = Measured {
            input_tps: 360_000.0,
            output_tps: 360_000.0,
            median_tpot_ms: 20.0,
            gpu_power: None,
        };
        let f = figures(
            &m,
            Gpus::Aggregated(72),
            gb,
            gb.cost("owning").expect("tier"),
            None,
        );
        assert!(close(f.tput_per_gpu, 10_000.0));
        assert!(close(f.interactivity, 50.0));
        // $2.21/h ÷ (10,000 × 3600 / 1e6 = 36 M tokens/h) = $0.061389 per M tokens
        assert!(close(f.cost_per_mtok, 2.21 / 36.0), "{}", f.cost_per_mtok);
        // output only: 5,000 tok/s/GPU → 18 M/h → $0.122778; input the same here
        assert!(close(f.output_cost_per_mtok, 2.21 / 18.0));
        assert!(close(f.input_cost_per_mtok, 2.21 / 18.0));
        // 10,000 × 1000 / 2.10 kW = 4,761,904.76 tok/s per MW
        assert!(close(f.tok_per_s_per_mw, 10_000.0 * 1000.0 / 2.10));
        // 2.10 kW × 1000 / 10,000 = 0.21 J/token
        assert!(close(f.joules_per_token, 0.21));
        // a rack: 72 × 10,000 tok/s, 72 × $2.21/h = $159.12/h, 72 × 2.10 = 151.2 kW
        assert!(close(f.rack_tok_per_s, 720_000.0));
        assert!(close(f.rack_cost_per_hour, 159.12));
        assert!(close(f.rack_kw, 151.2));
        assert_eq!(f.measured_power, None);
        // Measured: 72 GPUs drawing 72 kW in all (1 kW each), times the catalog's
        // overhead (all-in 2.10 kW over TDP): 2.10 / TDP kW per GPU.
        let measured = figures(
            &Measured {
                gpu_power: Some((72_000.0, 72)),
                ..m
            },
            Gpus::Aggregated(72),
            gb,
            gb.cost("owning").expect("tier"),
            Some(0.08),
        );
        // The energy part of $/M tokens: 2.10 kW × $0.08/kWh = $0.168 per GPU-hour,
        // over 36 M tokens an hour.
        assert!(close(
            measured.energy_cost_per_mtok.expect("priced"),
            2.10 * 0.08 / 36.0
        ));
        let measured = measured.measured_power.expect("measured");
        assert!(close(
            measured.energy_cost_per_mtok.expect("priced"),
            overhead_kw(gb) * 0.08 / 36.0
        ));
        let overhead = overhead_kw(gb);
        assert!(close(measured.overhead, overhead));
        assert!(close(measured.kw_per_gpu, overhead));
        assert!(close(
            measured.tok_per_s_per_mw,
            10_000.0 * 1000.0 / overhead
        ));
        assert!(close(
            measured.joules_per_token,
            overhead * 1000.0 / 10_000.0
        ));
    }

    #[test]
    fn mi355x_disaggregated_by_hand() {
        let cat = Catalog::embedded();
        let mi = cat.system("mi355x").expect("mi355x");
        // 8 prefill + 24 decode GPUs; 160,000 tok/s in, 96,000 out.
        let m = Measured {
            input_tps: 160_000.0,
            output_tps: 96_000.0,
            median_tpot_ms: 10.0,
            gpu_power: None,
        };
        let gpus = Gpus::Disaggregated {
            prefill: 8,
            decode: 24,
        };
        let f = figures(&m, gpus, mi, mi.cost("rental").expect("tier"), None);
        assert!(close(f.tput_per_gpu, 256_000.0 / 32.0)); // 8,000 over all GPUs
        assert!(close(f.output_tput_per_gpu, 4_000.0)); // 96,000 / 24 decode GPUs
        assert!(close(f.input_tput_per_gpu, 20_000.0)); // 160,000 / 8 prefill GPUs
        // $2.10/h ÷ (8,000 × 3600 / 1e6 = 28.8 M/h) = $0.0729167
        assert!(close(f.cost_per_mtok, 2.10 / 28.8));
        // 8,000 × 1000 / 2.65 = 3,018,867.9 tok/s/MW; 2.65 × 1000 / 8,000 = 0.33125 J/token
        assert!(close(f.tok_per_s_per_mw, 8_000_000.0 / 2.65));
        assert!(close(f.joules_per_token, 0.33125));
        // a 128-GPU rack: 1,024,000 tok/s, $268.80/h, 339.2 kW
        assert!(close(f.rack_tok_per_s, 1_024_000.0));
        assert!(close(f.rack_cost_per_hour, 268.8));
        assert!(close(f.rack_kw, 339.2));
    }
}

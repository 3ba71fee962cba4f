//! GPU power in an exporter's Prometheus text: every series of a known power metric,
//! summed (one series per GPU; the labels say which), with the GPUs' energy counter,
//! utilisation and framebuffer use where the exporter publishes them.

/// Power gauges in watts, by exporter: NVIDIA's DCGM exporter, AMD's device-metrics
/// exporter.
pub const POWER_METRICS: [&str; 2] = ["DCGM_FI_DEV_POWER_USAGE", "gpu_package_power"];
/// DCGM's energy counter: millijoules since the driver loaded.
pub const ENERGY_MJ: &str = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION";
/// Utilisation (%) and framebuffer used (MiB), DCGM's and AMD's.
pub const UTIL_METRICS: [&str; 2] = ["DCGM_FI_DEV_GPU_UTIL", "gpu_gfx_activity"];
pub const FB_USED_METRICS: [&str; 2] = ["DCGM_FI_DEV_FB_USED", "gpu_used_vram"];

/// One exporter page's GPUs, summed, and each GPU's power by its labels.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GpuPage {
    pub watts: f64,
    pub gpus: u32,
    /// The energy counters summed, J; only when every powered GPU has one.
    pub energy_j: Option<f64>,
    /// Utilisation averaged over the GPUs that publish it, %.
    pub util_pct: Option<f64>,
    /// Framebuffer used, summed, MiB.
    pub fb_used_mib: Option<f64>,
    /// Each GPU's power, by [`gpu_name`].
    pub per_gpu: Vec<(String, f64)>,
}

/// Labels that say which GPU a series is (host, index, UUID), in this order.
const IDENTITY: [&str; 6] = [
    "Hostname",
    "hostname",
    "gpu",
    "gpu_id",
    "UUID",
    "serial_number",
];

/// A GPU's name from its series' labels: its identity labels (`gpu="0",UUID="GPU-…"`),
/// else all of them; at most 200 characters.
pub fn gpu_name(s: &crate::prom::Sample<'_>) -> String {
    let mut picked: Vec<String> = IDENTITY
        .iter()
        .filter_map(|k| s.label(k).map(|v| format!("{k}={v}")))
        .collect();
    if picked.is_empty() {
        picked = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    }
    let name = picked.join(",");
    match name.char_indices().nth(200) {
        Some((at, _)) => name[..at].to_owned(),
        None => name,
    }
}

/// Everything [`GpuPage`] holds, from an exporter's page; `None` without power series.
pub fn read(text: &str) -> Option<GpuPage> {
    let (watts, gpus) = power(text)?;
    let per_gpu = crate::prom::samples(text)
        .filter(|s| POWER_METRICS.contains(&s.name) && s.value.is_finite() && s.value >= 0.0)
        .map(|s| (gpu_name(&s), s.value))
        .collect();
    let (mut energy, mut counters) = (0.0, 0);
    let (mut util, mut utils, mut fb, mut fbs) = (0.0, 0, 0.0, 0);
    for s in crate::prom::samples(text) {
        if !(s.value.is_finite() && s.value >= 0.0) {
            continue;
        }
        if s.name == ENERGY_MJ {
            energy += s.value / 1000.0;
            counters += 1;
        } else if UTIL_METRICS.contains(&s.name) {
            util += s.value;
            utils += 1;
        } else if FB_USED_METRICS.contains(&s.name) {
            fb += s.value;
            fbs += 1;
        }
    }
    Some(GpuPage {
        watts,
        gpus,
        energy_j: (counters == gpus).then_some(energy),
        util_pct: (utils > 0).then(|| util / f64::from(utils)),
        fb_used_mib: (fbs > 0).then_some(fb),
        per_gpu,
    })
}

/// The summed power of the GPUs an exporter's page lists, and how many there were; `None`
/// when the page is not Prometheus text or has no power series.
pub fn power(text: &str) -> Option<(f64, u32)> {
    let mut watts = 0.0;
    let mut gpus = 0;
    for s in crate::prom::samples(text) {
        if POWER_METRICS.contains(&s.name) && s.value.is_finite() && s.value >= 0.0 {
            watts += s.value;
            gpus += 1;
        }
    }
    (gpus > 0).then_some((watts, gpus))
}

#[cfg(test)]
mod tests {
    use super::power;

    #[test]
    fn sums_every_gpus_power_series_and_ignores_the_rest() {
        let dcgm = "# HELP DCGM_FI_DEV_POWER_USAGE Power draw (in W).\n\
            # TYPE DCGM_FI_DEV_POWER_USAGE gauge\n\
            DCGM_FI_DEV_POWER_USAGE{gpu=\"0\",UUID=\"GPU-a\",modelName=\"NVIDIA B200\"} 612.5\n\
            DCGM_FI_DEV_POWER_USAGE{gpu=\"1\",UUID=\"GPU-b\",modelName=\"NVIDIA B200\"} 587.5\n\
            # TYPE DCGM_FI_DEV_GPU_UTIL gauge\n\
            DCGM_FI_DEV_GPU_UTIL{gpu=\"0\"} 99\n";
        assert_eq!(power(dcgm), Some((1200.0, 2)));
        let amd = "gpu_package_power{gpu_id=\"0\"} 750\n";
        assert_eq!(power(amd), Some((750.0, 1)));
        assert_eq!(power("DCGM_FI_DEV_GPU_UTIL 3\n"), None);
        assert_eq!(power("<html>not metrics</html>"), None);
        let page = super::read(dcgm).expect("page");
        assert_eq!((page.util_pct, page.energy_j), (Some(99.0), None));
        let counted = format!(
            "{dcgm}DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{gpu=\"0\"}} 5000\n\
             DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{gpu=\"1\"}} 7000\n\
             DCGM_FI_DEV_FB_USED{{gpu=\"0\"}} 1024\nDCGM_FI_DEV_FB_USED{{gpu=\"1\"}} 2048\n"
        );
        let page = super::read(&counted).expect("page");
        assert_eq!(
            (page.energy_j, page.fb_used_mib),
            (Some(12.0), Some(3072.0))
        );
        assert_eq!(
            page.per_gpu,
            vec![
                ("gpu=0,UUID=GPU-a".to_owned(), 612.5),
                ("gpu=1,UUID=GPU-b".to_owned(), 587.5)
            ]
        );
    }
}

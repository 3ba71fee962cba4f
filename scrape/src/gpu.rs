//! GPU power in an exporter's Prometheus text: every series of a known power metric,
//! summed (one series per GPU; the labels say which).

/// Power gauges in watts, by exporter: NVIDIA's DCGM exporter, AMD's device-metrics
/// exporter.
pub const POWER_METRICS: [&str; 2] = ["DCGM_FI_DEV_POWER_USAGE", "gpu_package_power"];

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
    }
}

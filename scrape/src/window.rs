//! From samples of power to the figures of a window: the energy is the trapezoid integral
//! of the samples (linearly interpolated at the window's edges, held flat past the first
//! and last sample), the mean power that energy over the window's length.

/// One summed reading: when (Unix nanoseconds) and how many watts.
pub type Reading = (i64, f64);

/// `(mean watts, joules)` over `[from, to]` (Unix nanoseconds), or `None` without samples
/// or for an empty window. `readings` are in time order.
pub fn integrate(readings: &[Reading], from: i64, to: i64) -> Option<(f64, f64)> {
    if readings.is_empty() || to <= from {
        return None;
    }
    let at = |t: i64| -> f64 {
        let k = readings.partition_point(|r| r.0 <= t);
        match (k.checked_sub(1).map(|i| readings[i]), readings.get(k)) {
            (Some(a), Some(b)) if b.0 > a.0 => {
                a.1 + (b.1 - a.1) * (t - a.0) as f64 / (b.0 - a.0) as f64
            }
            (Some(a), _) => a.1,
            (None, Some(b)) => b.1,
            (None, None) => 0.0,
        }
    };
    let mut points: Vec<Reading> = vec![(from, at(from))];
    points.extend(readings.iter().copied().filter(|r| r.0 > from && r.0 < to));
    points.push((to, at(to)));
    let joules: f64 = points
        .windows(2)
        .map(|w| (w[0].1 + w[1].1) / 2.0 * (w[1].0 - w[0].0) as f64 / 1e9)
        .sum();
    let seconds = (to - from) as f64 / 1e9;
    Some((joules / seconds, joules))
}

#[cfg(test)]
mod tests {
    use super::integrate;

    const S: i64 = 1_000_000_000;

    #[test]
    fn constant_power_integrates_to_power_times_time() {
        let flat: Vec<_> = (0..10).map(|k| (k * S, 500.0)).collect();
        let (w, j) = integrate(&flat, S / 2, 7 * S + S / 4).expect("covered");
        assert!(
            (w - 500.0).abs() < 1e-9 && (j - 500.0 * 6.75).abs() < 1e-6,
            "{w} {j}"
        );
        // One sample, or a window past the samples: held flat.
        assert_eq!(integrate(&[(0, 300.0)], S, 3 * S), Some((300.0, 600.0)));
    }

    #[test]
    fn a_ramp_is_integrated_with_its_edges_interpolated() {
        let ramp = [(0, 0.0), (10 * S, 1000.0)];
        let (w, j) = integrate(&ramp, 2 * S, 4 * S).expect("covered");
        assert!(
            (w - 300.0).abs() < 1e-9 && (j - 600.0).abs() < 1e-6,
            "{w} {j}"
        );
        assert_eq!(integrate(&ramp, 4 * S, 4 * S), None);
        assert_eq!(integrate(&[], 0, S), None);
    }
}

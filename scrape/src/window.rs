//! From samples of power to the figures of a window: the energy is the trapezoid integral
//! of the samples (linearly interpolated at the window's edges, held flat past the first
//! and last sample), the mean power that energy over the window's length.

/// One summed reading: when (Unix nanoseconds) and how many watts.
pub type Reading = (i64, f64);

/// `(mean watts, joules)` over `[from, to]` (Unix nanoseconds), or `None` for an empty
/// window or one the readings do not cover: none inside it, or a stretch of it (at an edge
/// or between readings) longer than `max_gap` nanoseconds without one — a stale reading
/// held flat over a silent exporter is not a measurement. `readings` are in time order.
pub fn integrate(readings: &[Reading], from: i64, to: i64, max_gap: i64) -> Option<(f64, f64)> {
    if to <= from {
        return None;
    }
    let inside: Vec<i64> = readings
        .iter()
        .map(|r| r.0)
        .filter(|t| *t >= from && *t <= to)
        .collect();
    let (first, last) = (*inside.first()?, *inside.last()?);
    let widest = inside
        .windows(2)
        .map(|w| w[1] - w[0])
        .chain([first - from, to - last])
        .max()
        .unwrap_or(0);
    if widest > max_gap {
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
        let (w, j) = integrate(&flat, S / 2, 7 * S + S / 4, S).expect("covered");
        assert!(
            (w - 500.0).abs() < 1e-9 && (j - 500.0 * 6.75).abs() < 1e-6,
            "{w} {j}"
        );
        // Edges held flat from the nearest reading, within the allowed gap.
        assert_eq!(
            integrate(&[(2 * S, 300.0)], S, 3 * S, S),
            Some((300.0, 600.0))
        );
        // A window the readings do not cover is not measured: a reading before it only,
        // or a silence longer than the allowed gap inside it.
        assert_eq!(integrate(&[(0, 300.0)], S, 3 * S, S), None);
        let silent = [(0, 300.0), (S, 300.0), (9 * S, 300.0)];
        assert_eq!(integrate(&silent, S / 2, 9 * S, 2 * S), None);
    }

    #[test]
    fn a_ramp_is_integrated_with_its_edges_interpolated() {
        let ramp: Vec<_> = (0..=10).map(|k| (k * S, 100.0 * k as f64)).collect();
        let (w, j) = integrate(&ramp, 2 * S + S / 2, 4 * S, S).expect("covered");
        assert!(
            (w - 325.0).abs() < 1e-9 && (j - 487.5).abs() < 1e-6,
            "{w} {j}"
        );
        assert_eq!(integrate(&ramp, 4 * S, 4 * S, S), None);
        assert_eq!(integrate(&[], 0, S, S), None);
    }
}

//! From samples of power to the figures of a window: the energy is the trapezoid integral
//! of the samples (linearly interpolated at the window's edges, held flat past the first
//! and last sample), the mean power that energy over the window's length. Where the
//! meters count energy themselves (DCGM's total energy counter), [`counter_delta`] takes
//! the counter's change over the window instead, which sees between readings (the caller
//! decides when the counter is fresh enough to trust).

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

/// The change of an energy counter (`readings` of (Unix nanoseconds, joules), in time
/// order) over `[from, to]`: the counter interpolated at each edge (extrapolated along its
/// nearest two readings past the first or last), under the same coverage rule as
/// [`integrate`]. `None` when not covered, or when the counter went down (a reset).
pub fn counter_delta(readings: &[Reading], from: i64, to: i64, max_gap: i64) -> Option<f64> {
    if to <= from || readings.len() < 2 || integrate(readings, from, to, max_gap).is_none() {
        return None;
    }
    if readings
        .windows(2)
        .any(|w| w[1].1 < w[0].1 || w[1].0 <= w[0].0)
    {
        return None;
    }
    let at = |t: i64| -> f64 {
        let k = readings
            .partition_point(|r| r.0 <= t)
            .clamp(1, readings.len() - 1);
        let (a, b) = (readings[k - 1], readings[k]);
        a.1 + (b.1 - a.1) * (t - a.0) as f64 / (b.0 - a.0) as f64
    };
    Some((at(to) - at(from)).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::{counter_delta, integrate};

    #[test]
    fn an_energy_counter_gives_its_change_over_the_window() {
        // 700 W counted: 700 J a second.
        let counter: Vec<_> = (0..10).map(|k| (k * S, 1e6 + 700.0 * k as f64)).collect();
        let j = counter_delta(&counter, S / 2, 7 * S + S / 4, S).expect("covered");
        assert!((j - 700.0 * 6.75).abs() < 1e-6, "{j}");
        // Past the last reading, along the last two.
        let j = counter_delta(&counter, 8 * S, 9 * S + S / 2, S).expect("covered");
        assert!((j - 1050.0).abs() < 1e-6, "{j}");
        let reset = [(0, 500.0), (S, 900.0), (2 * S, 10.0)];
        assert_eq!(counter_delta(&reset, 0, 2 * S, S), None);
        assert_eq!(counter_delta(&counter[..1], 0, S, S), None);
    }

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

//! The throughput-vs-interactivity Pareto frontier of a group of points, monotone (Steffen)
//! cubic interpolation along it to read throughput at a target interactivity, and the
//! crossovers where one group's cost per token overtakes another's (DESIGN.md §6).

/// A point as the frontier sees it: x = interactivity (tok/s/user), y = tokens/s per GPU.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Xy {
    pub x: f64,
    pub y: f64,
}

/// `a` dominates `b`: at least as good on both axes, better on one.
pub fn dominates(a: Xy, b: Xy) -> bool {
    a.x >= b.x && a.y >= b.y && (a.x > b.x || a.y > b.y)
}

/// Indices of the non-dominated points, in increasing interactivity. Among exact
/// duplicates only the first is kept.
pub fn frontier(points: &[Xy]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..points.len())
        .filter(|&i| points[i].x.is_finite() && points[i].y.is_finite())
        .collect();
    // By x descending, then y descending: sweep keeping each point higher than all before.
    idx.sort_by(|&a, &b| {
        points[b]
            .x
            .total_cmp(&points[a].x)
            .then(points[b].y.total_cmp(&points[a].y))
    });
    let mut best_y = f64::NEG_INFINITY;
    let mut out = Vec::new();
    for i in idx {
        if points[i].y > best_y {
            best_y = points[i].y;
            out.push(i);
        }
    }
    out.reverse();
    out
}

/// A curve read at an interactivity: rackload's [`Steffen`], or the InferenceX
/// dashboard's [`crate::inferencex_spline::CalculatorSpline`].
pub trait Curve {
    /// The curve at `x`, None outside its range.
    fn at(&self, x: f64) -> Option<f64>;
    /// The x range it answers in.
    fn range(&self) -> (f64, f64);
}

/// A cubic Hermite curve: knots of strictly increasing x and a derivative at each. What
/// tells one monotone spline from another is only how the derivatives are chosen.
#[derive(Clone, Debug)]
pub(crate) struct Hermite {
    pub xs: Vec<f64>,
    pub ys: Vec<f64>,
    /// Derivatives at the knots.
    pub ds: Vec<f64>,
}

fn sign(v: f64) -> f64 {
    if v > 0.0 {
        1.0
    } else if v < 0.0 {
        -1.0
    } else {
        0.0
    }
}

impl Hermite {
    /// The knots with Steffen's interior derivatives (the ends left 0), and the secant
    /// slopes `s` and widths `h` of their segments; None unless there is at least one
    /// knot and x strictly increases.
    pub(crate) fn steffen_interior(knots: &[Xy]) -> Option<(Hermite, Vec<f64>, Vec<f64>)> {
        if knots.is_empty() || knots.windows(2).any(|w| w[1].x <= w[0].x) {
            return None;
        }
        let xs: Vec<f64> = knots.iter().map(|p| p.x).collect();
        let ys: Vec<f64> = knots.iter().map(|p| p.y).collect();
        let h: Vec<f64> = xs.windows(2).map(|w| w[1] - w[0]).collect();
        let s: Vec<f64> = (0..h.len()).map(|i| (ys[i + 1] - ys[i]) / h[i]).collect();
        let mut ds = vec![0.0; xs.len()];
        for i in 1..xs.len().saturating_sub(1) {
            let (s0, s1, h0, h1) = (s[i - 1], s[i], h[i - 1], h[i]);
            let p = (s0 * h1 + s1 * h0) / (h0 + h1);
            let d = (sign(s0) + sign(s1)) * s0.abs().min(s1.abs()).min(0.5 * p.abs());
            ds[i] = if d.is_nan() { 0.0 } else { d };
        }
        Some((Hermite { xs, ys, ds }, h, s))
    }

    /// The curve at `x`, None outside the knots' range.
    pub(crate) fn at(&self, x: f64) -> Option<f64> {
        let (first, last) = (*self.xs.first()?, *self.xs.last()?);
        if !(first..=last).contains(&x) {
            return None;
        }
        let i = match self.xs.iter().position(|&k| k >= x) {
            Some(0) => return Some(self.ys[0]),
            Some(i) => i - 1,
            None => return None,
        };
        let h = self.xs[i + 1] - self.xs[i];
        let t = (x - self.xs[i]) / h;
        let (y0, y1, d0, d1) = (
            self.ys[i],
            self.ys[i + 1],
            self.ds[i] * h,
            self.ds[i + 1] * h,
        );
        let (t2, t3) = (t * t, t * t * t);
        Some(
            (2.0 * t3 - 3.0 * t2 + 1.0) * y0
                + (t3 - 2.0 * t2 + t) * d0
                + (-2.0 * t3 + 3.0 * t2) * y1
                + (t3 - t2) * d1,
        )
    }

    pub(crate) fn range(&self) -> (f64, f64) {
        (
            self.xs.first().copied().unwrap_or(0.0),
            self.xs.last().copied().unwrap_or(0.0),
        )
    }
}

/// Steffen's monotone cubic through points sorted by strictly increasing x: never
/// overshoots, so between two frontier points it stays between their values. Its ends
/// take Steffen's one-sided slopes; two points make a line.
#[derive(Clone, Debug)]
pub struct Steffen(Hermite);

impl Steffen {
    /// None unless there is at least one point and x strictly increases.
    pub fn new(knots: &[Xy]) -> Option<Steffen> {
        let (mut c, h, s) = Hermite::steffen_interior(knots)?;
        let n = c.xs.len();
        let end = |s0: f64, s1: f64, h0: f64, h1: f64| {
            let p = s0 * (1.0 + h0 / (h0 + h1)) - s1 * h0 / (h0 + h1);
            if p * s0 <= 0.0 {
                0.0
            } else if p.abs() > 2.0 * s0.abs() {
                2.0 * s0
            } else {
                p
            }
        };
        if n == 2 {
            c.ds = vec![s[0], s[0]];
        } else if n > 2 {
            c.ds[0] = end(s[0], s[1], h[0], h[1]);
            c.ds[n - 1] = end(s[n - 2], s[n - 3], h[n - 2], h[n - 3]);
        }
        Some(Steffen(c))
    }

    /// The curve at `x`, None outside the knots' range.
    pub fn at(&self, x: f64) -> Option<f64> {
        self.0.at(x)
    }
}

impl Curve for Steffen {
    fn at(&self, x: f64) -> Option<f64> {
        self.0.at(x)
    }

    fn range(&self) -> (f64, f64) {
        self.0.range()
    }
}

/// Interactivities in the overlap of `a` and `b` where `a(x) - b(x)` changes sign (for cost
/// curves: where the cheaper system flips), found on a fine grid and refined by bisection.
pub fn crossovers(a: &dyn Curve, b: &dyn Curve) -> Vec<f64> {
    let lo = a.range().0.max(b.range().0);
    let hi = a.range().1.min(b.range().1);
    if hi <= lo {
        return Vec::new();
    }
    let diff = |x: f64| match (a.at(x), b.at(x)) {
        (Some(p), Some(q)) => p - q,
        _ => 0.0,
    };
    const STEPS: usize = 2000;
    let mut out = Vec::new();
    let mut prev_x = lo;
    let mut prev = diff(lo);
    for k in 1..=STEPS {
        let x = lo + (hi - lo) * k as f64 / STEPS as f64;
        let d = diff(x);
        if prev != 0.0 && d != 0.0 && (prev < 0.0) != (d < 0.0) {
            let (mut l, mut r) = (prev_x, x);
            for _ in 0..60 {
                let m = 0.5 * (l + r);
                if (diff(m) < 0.0) == (prev < 0.0) {
                    l = m;
                } else {
                    r = m;
                }
            }
            out.push(0.5 * (l + r));
        }
        if d != 0.0 {
            prev = d;
            prev_x = x;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn xy(x: f64, y: f64) -> Xy {
        Xy { x, y }
    }

    #[test]
    fn a_small_frontier_by_hand() {
        let pts = [
            xy(10.0, 900.0),
            xy(20.0, 800.0),
            xy(15.0, 700.0),
            xy(40.0, 300.0),
            xy(30.0, 200.0),
        ];
        assert_eq!(frontier(&pts), vec![0, 1, 3]);
    }

    #[test]
    fn cost_curves_cross_where_the_cheaper_flips() {
        // a is cheaper below x = 50, b above.
        let a = Steffen::new(&[xy(0.0, 1.0), xy(50.0, 2.0), xy(100.0, 3.0)]).expect("a");
        let b = Steffen::new(&[xy(0.0, 2.0), xy(50.0, 2.0), xy(100.0, 2.0)]).expect("b");
        let c = crossovers(&a, &b);
        assert_eq!(c.len(), 1, "{c:?}");
        assert!((c[0] - 50.0).abs() < 1e-6, "{c:?}");
        assert!(a.at(200.0).is_none(), "no extrapolation");
    }

    proptest! {
        #[test]
        fn frontier_points_are_undominated_and_the_rest_dominated(
            raw in proptest::collection::vec((1.0f64..500.0, 1.0f64..20_000.0), 1..40)
        ) {
            let pts: Vec<Xy> = raw.iter().map(|&(x, y)| xy(x, y)).collect();
            let f = frontier(&pts);
            for &i in &f {
                prop_assert!(!pts.iter().any(|&p| dominates(p, pts[i])), "{i} dominated");
            }
            for i in (0..pts.len()).filter(|i| !f.contains(i)) {
                prop_assert!(
                    pts.iter().any(|&p| dominates(p, pts[i])) || f.iter().any(|&j| pts[j] == pts[i]),
                    "{i} off the frontier but undominated"
                );
            }
            // In increasing x, throughput strictly falls along a frontier.
            for w in f.windows(2) {
                prop_assert!(pts[w[1]].x > pts[w[0]].x && pts[w[1]].y < pts[w[0]].y);
            }
        }

        #[test]
        fn interpolation_passes_through_the_knots_and_is_monotone_between(
            raw in proptest::collection::vec((1.0f64..500.0, 1.0f64..20_000.0), 2..30)
        ) {
            let pts: Vec<Xy> = raw.iter().map(|&(x, y)| xy(x, y)).collect();
            let knots: Vec<Xy> = frontier(&pts).iter().map(|&i| pts[i]).collect();
            prop_assume!(knots.len() >= 2);
            let s = Steffen::new(&knots).expect("sorted knots");
            for k in &knots {
                let y = s.at(k.x).expect("in range");
                prop_assert!((y - k.y).abs() <= 1e-9 * k.y, "{} vs {}", y, k.y);
            }
            for w in knots.windows(2) {
                let mut prev = w[0].y;
                for j in 1..=50 {
                    let x = if j == 50 {
                        w[1].x
                    } else {
                        w[0].x + (w[1].x - w[0].x) * f64::from(j) / 50.0
                    };
                    let y = s.at(x).expect("in range");
                    prop_assert!(y <= prev + 1e-9 * prev, "rises at {}: {} > {}", x, y, prev);
                    prop_assert!(y >= w[1].y - 1e-9 * w[1].y && y <= w[0].y + 1e-9 * w[0].y);
                    prev = y;
                }
            }
        }
    }
}

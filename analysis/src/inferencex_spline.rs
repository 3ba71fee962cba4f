//! The InferenceX dashboard calculator's reading of a frontier at a target interactivity,
//! reproduced for `--interpolation inferencex` so that rackload's figures can be set
//! beside the dashboard's. From SemiAnalysisAI/InferenceX-app,
//! `packages/app/src/components/calculator/useThroughputData.ts` (`monotoneSlopes`,
//! `hermiteInterpolate`, read at 77ca49a6):
//! - interior tangents are Steffen's, as d3's `curveMonotoneX`:
//!   `m[i] = (sign(s0) + sign(s1)) · min(|s0|, |s1|, |p|/2)`, `p = (s0·h1 + s1·h0)/(h0 + h1)`;
//! - end tangents are d3's `(3s − m)/2`, computed first `m[0]` (from the interior `m[1]`),
//!   then `m[n−1]` (from `m[n−2]`): on a two-point frontier `m[1]` is still 0 when `m[0]`
//!   is set, so the ends get 1.5·s and 0.75·s (the dashboard's own chart draws a straight
//!   line there);
//! - cubic Hermite between knots, nothing outside them (a one-point frontier answers only
//!   at its point), never below 0;
//! - each metric is splined on its own over the same knots: cost per million tokens from
//!   the points' own costs, not price ÷ interpolated throughput.
//!
//! rackload's default ([`crate::frontier::Steffen`]) differs at the ends (Steffen's
//! one-sided end slopes), is a line between two points, and reads cost as price ÷
//! throughput at the target, so cost and throughput there are one consistent pair.

use crate::frontier::{Curve, Hermite, Xy};

/// The calculator's spline through knots of strictly increasing x.
#[derive(Clone, Debug)]
pub struct CalculatorSpline(Hermite);

impl CalculatorSpline {
    /// None unless there is at least one knot and x strictly increases.
    pub fn new(knots: &[Xy]) -> Option<CalculatorSpline> {
        let (mut c, _, s) = Hermite::steffen_interior(knots)?;
        let n = c.xs.len();
        if n >= 2 {
            // In this order, as the calculator does (m[n-1] sees the new m[0] when n = 2).
            c.ds[0] = (3.0 * s[0] - c.ds[1]) / 2.0;
            c.ds[n - 1] = (3.0 * s[n - 2] - c.ds[n - 2]) / 2.0;
        }
        Some(CalculatorSpline(c))
    }
}

impl Curve for CalculatorSpline {
    fn at(&self, x: f64) -> Option<f64> {
        let c = &self.0;
        // One knot answers only at itself, within the calculator's 1e-6.
        if c.xs.len() == 1 {
            return ((x - c.xs[0]).abs() < 1e-6).then(|| c.ys[0].max(0.0));
        }
        c.at(x).map(|y| y.max(0.0))
    }

    fn range(&self) -> (f64, f64) {
        self.0.range()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xy(x: f64, y: f64) -> Xy {
        Xy { x, y }
    }

    /// The dashboard's own functions, run on this frontier by a reviewer (node, the app
    /// at 77ca49a6), gave 794.775 at 35 and 275.391 at 90.
    #[test]
    fn a_two_point_frontier_reads_as_the_calculator_reads_it() {
        let c = CalculatorSpline::new(&[xy(20.0, 1000.0), xy(100.0, 200.0)]).expect("knots");
        assert_eq!(c.0.ds, [-15.0, -7.5], "1.5·s and 0.75·s");
        assert!((c.at(35.0).expect("in range") - 794.775).abs() < 5e-4);
        assert!((c.at(90.0).expect("in range") - 275.391).abs() < 5e-4);
        assert_eq!(c.at(10.0), None, "no extrapolation");
        let one = CalculatorSpline::new(&[xy(20.0, 5.0)]).expect("one knot");
        assert_eq!((one.at(20.0), one.at(21.0)), (Some(5.0), None));
    }

    /// Five points, worked by hand with the calculator's formulas (module doc):
    /// h = [20, 30, 40, 50], s = [−50, −50, −32.5, −16];
    /// m1 = −2·min(50, 50, |−50|/2) = −50 (p = (−50·30 − 50·20)/50 = −50);
    /// m2 = −2·min(50, 32.5, 42.5/2) = −42.5 (p = (−50·40 − 32.5·30)/70 = −42.5);
    /// m3 = −2·min(32.5, 16, 25.1667/2) = −25.1667 (p = (−32.5·50 − 16·40)/90);
    /// m0 = (3·−50 + 50)/2 = −50; m4 = (3·−16 + 25.1667)/2 = −11.4167.
    /// At 35 (segment 30..60, h = 30, t = 1/6): h00 = 25/27, h10 = 25/216, h01 = 2/27,
    /// h11 = −5/216, so y = 25/27·4000 − 25/216·1500 + 2/27·2500 + 5/216·1275 = 3744.7917.
    /// At 90 (segment 60..100, h = 40, t = 3/4): h00 = 0.15625, h10 = 0.046875,
    /// h01 = 0.84375, h11 = −0.140625, so y = 390.625 − 79.6875 + 1012.5 + 141.5625 = 1465.
    /// Inner segments: Steffen's interior tangents are the same, so rackload reads the
    /// same there; the first and last segments differ by their end slopes.
    #[test]
    fn a_five_point_frontier_by_hand() {
        let knots = [
            xy(10.0, 5000.0),
            xy(30.0, 4000.0),
            xy(60.0, 2500.0),
            xy(100.0, 1200.0),
            xy(150.0, 400.0),
        ];
        let c = CalculatorSpline::new(&knots).expect("knots");
        let want = [
            -50.0,
            -50.0,
            -42.5,
            -2265.0 / 90.0,
            (-48.0 + 2265.0 / 90.0) / 2.0,
        ];
        for (m, w) in c.0.ds.iter().zip(want) {
            assert!((m - w).abs() < 1e-9, "{:?}", c.0.ds);
        }
        assert!((c.at(35.0).expect("in") - 3_744.791_666_7).abs() < 1e-6);
        assert!((c.at(90.0).expect("in") - 1465.0).abs() < 1e-9);
        let steffen = crate::frontier::Steffen::new(&knots).expect("knots");
        assert!((steffen.at(35.0).expect("in") - 3_744.791_666_7).abs() < 1e-6);
        assert!((steffen.at(90.0).expect("in") - 1465.0).abs() < 1e-9);
        let (a, b) = (c.at(140.0).expect("in"), steffen.at(140.0).expect("in"));
        assert!((a - b).abs() > 1.0, "end segments differ: {a} vs {b}");
    }
}

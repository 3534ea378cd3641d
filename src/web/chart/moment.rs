//! Moments on a chart: vertical lines at instants (a stage change, a failure), labelled at the
//! top on rows that take turns. Geometry only, like the rest of [`super`].

use super::{Frame, Mark};
use crate::markup::{Fixed, Html, push_html};

/// What a moment marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MomentKind {
    /// The canary's weight changed: the stage it is at changed.
    Stage,
    /// The check failed (the first failing analysis of a streak).
    Fail,
}

impl MomentKind {
    fn class(self) -> &'static str {
        match self {
            MomentKind::Stage => "moment moment-stage",
            MomentKind::Fail => "moment moment-fail",
        }
    }
}

/// The end of a chart's time span, reaching a moment a little after the last point (up to a
/// tenth of the span: the analysis that judged the window happens just after its last point).
pub(super) fn reach_moments(marks: &[Mark], t0: f64, t1: f64) -> f64 {
    let slack = (t1 - t0) * 0.1;
    marks
        .iter()
        .filter_map(|m| match m {
            Mark::Moment { t, .. } if t.is_finite() && *t > t1 && *t <= t1 + slack => Some(*t),
            _ => None,
        })
        .fold(t1, f64::max)
}

/// Draw a moment: a vertical line with its label at the top, when it is inside the time span.
pub(super) fn draw_moment(
    svg: &mut Html,
    f: &Frame,
    (t, row): (f64, usize),
    kind: MomentKind,
    label: &str,
) -> bool {
    let (d0, d1) = f.x.domain;
    if !(t.is_finite() && d0 <= t && t <= d1) {
        return false;
    }
    let x = f.x.at(t);
    let (bottom, top) = f.y.range;
    push_html!(
        svg,
        "<g class=\"{}\"><line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text><title>{}</title></g>",
        kind.class(),
        Fixed(x, 1),
        Fixed(top, 1),
        Fixed(x, 1),
        Fixed(bottom, 1),
        Fixed(x - 3.0, 1),
        Fixed(top + 10.0 + 11.0 * row as f64, 1),
        label,
        label
    );
    true
}

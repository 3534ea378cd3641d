//! Inline SVG line charts of baseline vs canary over an analysis window, with the check's
//! threshold (a dashed line), tolerance band or slope limit, moments (labelled vertical lines:
//! stage changes, failures), labelled axes and a legend.
//!
//! Pure: points in, markup out. It owns the geometry (scales, "nice" ticks, skipping NaN and
//! infinite points, widening a constant or single-point range so it never divides by zero) and
//! must not know about rollouts, the store or HTTP. With no usable point it returns a "no data"
//! note instead of an empty chart.

use std::fmt::Write as _;

use crate::markup::{Fixed, Html, html, push_html};

mod moment;
pub use moment::MomentKind;
use moment::{draw_moment, reach_moments};

/// Drawing size in SVG user units; the page scales the chart to its width.
const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 72.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 34.0;

/// What the values measure, to label ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Unknown: plain numbers.
    Plain,
    /// Seconds, shown in ms below one second.
    Seconds,
    /// Bytes, shown in KiB, MiB, GiB.
    Bytes,
    /// A fraction shown as a percentage (error rates).
    Fraction,
}

/// A limit drawn over the data, dashed.
#[derive(Debug, Clone, PartialEq)]
pub enum Mark {
    /// A horizontal line at `value` (an absolute threshold, a tolerance on one side).
    Line { value: f64, label: String },
    /// A horizontal band (a tolerance on both sides).
    Band { low: f64, high: f64, label: String },
    /// A line from (`t0`, `v0`) rising `per_second` (a trend check's slope limit).
    Slope {
        t0: f64,
        v0: f64,
        per_second: f64,
        label: String,
    },
    /// A vertical line at time `t`: something that happened (see [`super::moments`]), drawn
    /// only when it falls in the chart's time span, labelled on the chart, not in the legend.
    Moment {
        t: f64,
        kind: MomentKind,
        label: String,
    },
}

impl Mark {
    fn label(&self) -> &str {
        match self {
            Mark::Line { label, .. }
            | Mark::Band { label, .. }
            | Mark::Slope { label, .. }
            | Mark::Moment { label, .. } => label,
        }
    }
}

/// One chart: two series of `(unix seconds, value)` points (values may be NaN or infinite:
/// such points are skipped) and the marks to draw over them.
#[derive(Debug, Clone, Copy)]
pub struct Chart<'a> {
    /// What the chart shows, for screen readers (`aria-label`).
    pub title: &'a str,
    pub unit: Unit,
    pub baseline: &'a [(f64, f64)],
    pub canary: &'a [(f64, f64)],
    pub marks: &'a [Mark],
}

/// A linear map from a data interval onto a pixel interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scale {
    pub domain: (f64, f64),
    pub range: (f64, f64),
}

impl Scale {
    pub fn at(&self, value: f64) -> f64 {
        let (d0, d1) = self.domain;
        let (r0, r1) = self.range;
        r0 + (value - d0) / (d1 - d0) * (r1 - r0)
    }
}

/// Where things go: the two scales and the ticks of each axis.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub x: Scale,
    pub y: Scale,
    pub x_ticks: Vec<f64>,
    pub y_ticks: Vec<f64>,
    /// The y tick spacing, to choose how many decimals a label needs.
    pub y_step: f64,
}

fn usable(points: &[(f64, f64)]) -> impl Iterator<Item = (f64, f64)> + '_ {
    points
        .iter()
        .copied()
        .filter(|(t, v)| t.is_finite() && v.is_finite())
}

/// 1, 2 or 5 times a power of ten, at least `rough`.
fn nice_step(rough: f64) -> f64 {
    if !(rough.is_finite() && rough > 0.0) {
        return 1.0;
    }
    let power = 10f64.powf(rough.log10().floor());
    let fraction = rough / power;
    let nice = if fraction <= 1.0 {
        1.0
    } else if fraction <= 2.0 {
        2.0
    } else if fraction <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * power
}

/// Widen `[low, high]` when it is a single value, so a constant series gets a real range.
fn widen(low: f64, high: f64) -> (f64, f64) {
    if high - low > high.abs().max(low.abs()) * 1e-9 {
        (low, high)
    } else {
        let pad = if low.abs() > 0.0 {
            low.abs() * 0.1
        } else {
            1.0
        };
        (low - pad, high + pad)
    }
}

/// Lay out a chart; `None` when neither series has a usable point.
pub fn frame(chart: &Chart<'_>) -> Option<Frame> {
    let points: Vec<(f64, f64)> = usable(chart.baseline).chain(usable(chart.canary)).collect();
    if points.is_empty() {
        return None;
    }
    let mut values: Vec<f64> = points.iter().map(|p| p.1).collect();
    for mark in chart.marks {
        match mark {
            Mark::Line { value, .. } => values.push(*value),
            Mark::Band { low, high, .. } => values.extend([*low, *high]),
            Mark::Slope { v0, .. } => values.push(*v0),
            Mark::Moment { .. } => {}
        }
    }
    let fold = |values: &mut dyn Iterator<Item = f64>| {
        values
            .filter(|v| v.is_finite())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            })
    };
    let (low, high) = fold(&mut values.into_iter());
    let (low, high) = widen(low, high);
    let y_step = nice_step((high - low) / 4.0);
    let (y0, y1) = (
        (low / y_step).floor() * y_step,
        (high / y_step).ceil() * y_step,
    );
    let y_ticks = ticks(y0, y1, y_step);

    let (t0, t1) = widen_time(fold(&mut points.iter().map(|p| p.0)));
    // A moment just after the last point (the analysis that judged the window) stays in view.
    let t1 = reach_moments(chart.marks, t0, t1);
    let x_step = time_step(t1 - t0);
    let x_ticks = ticks((t0 / x_step).ceil() * x_step, t1, x_step);
    Some(Frame {
        x: Scale {
            domain: (t0, t1),
            range: (LEFT, WIDTH - RIGHT),
        },
        y: Scale {
            domain: (y0, y1),
            range: (HEIGHT - BOTTOM, TOP),
        },
        x_ticks,
        y_ticks,
        y_step,
    })
}

/// A single instant gets a minute around it.
fn widen_time((t0, t1): (f64, f64)) -> (f64, f64) {
    if t1 - t0 >= 1e-6 {
        (t0, t1)
    } else {
        (t0 - 30.0, t1 + 30.0)
    }
}

/// A tick spacing for a time span: at most about six ticks, on round seconds or minutes.
fn time_step(span: f64) -> f64 {
    const STEPS: [f64; 16] = [
        1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
        21_600.0, 86_400.0,
    ];
    STEPS
        .iter()
        .copied()
        .find(|s| span / s <= 6.0)
        .unwrap_or_else(|| nice_step(span / 6.0))
}

fn ticks(first: f64, last: f64, step: f64) -> Vec<f64> {
    // Whole multiples of the step, so no error accumulates from tick to tick.
    let k0 = (first / step).round();
    (0..50)
        .map(|i| (k0 + f64::from(i)) * step)
        .take_while(|v| *v <= last + step * 1e-6)
        .collect()
}

/// A y tick label in the chart's unit, with as many decimals as the spacing needs.
pub fn tick_label(unit: Unit, value: f64, step: f64, top: f64) -> String {
    let (factor, suffix) = match unit {
        Unit::Plain => (1.0, ""),
        Unit::Seconds if top.abs() < 1.0 => (1000.0, " ms"),
        Unit::Seconds => (1.0, " s"),
        Unit::Fraction => (100.0, "%"),
        Unit::Bytes => {
            let top = top.abs();
            if top >= 1024f64.powi(3) {
                (1024f64.powi(-3), " GiB")
            } else if top >= 1024f64.powi(2) {
                (1024f64.powi(-2), " MiB")
            } else if top >= 1024.0 {
                (1.0 / 1024.0, " KiB")
            } else {
                (1.0, " B")
            }
        }
    };
    let shown = step * factor;
    let decimals = if shown > 0.0 && shown.is_finite() {
        (-shown.log10().floor()).clamp(0.0, 6.0) as usize
    } else {
        0
    };
    let text = format!("{:.decimals$}", value * factor);
    let text = if text
        .trim_start_matches('-')
        .chars()
        .all(|c| c == '0' || c == '.')
    {
        text.trim_start_matches('-').to_string()
    } else {
        text
    };
    format!("{text}{suffix}")
}

/// One value in the chart's unit, for labels and tables: `250 ms`, `0.5%`, `3 MiB`.
pub fn value_label(unit: Unit, value: f64) -> String {
    if !value.is_finite() {
        return super::html::number(value);
    }
    let (factor, suffix) = match unit {
        Unit::Plain => (1.0, ""),
        Unit::Seconds if value.abs() < 1.0 => (1000.0, " ms"),
        Unit::Seconds => (1.0, " s"),
        Unit::Fraction => (100.0, "%"),
        Unit::Bytes if value.abs() >= 1024f64.powi(3) => (1024f64.powi(-3), " GiB"),
        Unit::Bytes if value.abs() >= 1024f64.powi(2) => (1024f64.powi(-2), " MiB"),
        Unit::Bytes if value.abs() >= 1024.0 => (1.0 / 1024.0, " KiB"),
        Unit::Bytes => (1.0, " B"),
    };
    format!("{}{suffix}", super::html::number(value * factor))
}

/// A time tick label, `HH:MM:SS` in UTC.
fn time_label(t: f64) -> String {
    chrono::DateTime::from_timestamp(t.floor() as i64, 0)
        .map(|d| d.format("%H:%M:%S").to_string())
        .unwrap_or_default()
}

/// The chart as an `<svg>` element, or a "no data" note when there is nothing to draw.
pub fn render(chart: &Chart<'_>) -> Html {
    let Some(f) = frame(chart) else {
        return html!(
            "<div class=\"nodata\" role=\"note\">No data: neither side returned a usable point \
             for {}.</div>",
            chart.title
        );
    };
    // SVG coordinates, to a tenth of a unit.
    let at = |v: f64| Fixed(v, 1);
    let mut svg = Html::with_capacity(8192);
    push_html!(
        svg,
        "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {} {}\" \
         width=\"{}\" height=\"{}\" role=\"img\" aria-label=\"{}\">",
        WIDTH,
        HEIGHT,
        WIDTH,
        HEIGHT,
        chart.title
    );
    let (px0, px1) = f.x.range;
    let (py0, py1) = f.y.range;
    // Grid and y ticks.
    for &v in &f.y_ticks {
        let y = f.y.at(v);
        push_html!(
            svg,
            "<line class=\"grid\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            at(px0),
            at(y),
            at(px1),
            at(y),
            at(px0 - 6.0),
            at(y + 4.0),
            tick_label(chart.unit, v, f.y_step, f.y.domain.1)
        );
    }
    for &t in &f.x_ticks {
        let x = f.x.at(t);
        push_html!(
            svg,
            "<line class=\"axis\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            at(x),
            at(py0),
            at(x),
            at(py0 + 4.0),
            at(x),
            at(py0 + 17.0),
            time_label(t)
        );
    }
    push_html!(
        svg,
        "<line class=\"axis\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/>\
         <line class=\"axis\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\">time (UTC)</text>",
        at(px0),
        at(py0),
        at(px1),
        at(py0),
        at(px0),
        at(py0),
        at(px0),
        at(py1),
        at(px1),
        at(HEIGHT - 4.0)
    );
    // Moments' labels take turns on four rows, so moments close in time stay readable.
    let mut row = 0;
    for mark in chart.marks {
        match mark {
            Mark::Moment { t, kind, label } => {
                row += usize::from(draw_moment(&mut svg, &f, (*t, row % 4), *kind, label));
            }
            other => draw_mark(&mut svg, &f, other),
        }
    }
    for (class, points) in [("baseline", chart.baseline), ("canary", chart.canary)] {
        let mut coords = String::new();
        let mut count = 0;
        for (t, v) in usable(points) {
            let _ = write!(coords, "{:.1},{:.1} ", f.x.at(t), f.y.at(v));
            count += 1;
        }
        push_html!(
            svg,
            "<polyline class=\"{}\" points=\"{}\"/>",
            class,
            coords.trim_end()
        );
        // A lone point draws no line: show it as a dot.
        if count == 1
            && let Some((t, v)) = usable(points).next()
        {
            push_html!(
                svg,
                "<circle class=\"dot-{}\" cx=\"{}\" cy=\"{}\" r=\"3.5\"/>",
                class,
                at(f.x.at(t)),
                at(f.y.at(v))
            );
        }
    }
    legend(&mut svg, chart.marks);
    svg.push_str("</svg>");
    svg
}

fn draw_mark(svg: &mut Html, f: &Frame, mark: &Mark) {
    let at = |v: f64| Fixed(v, 1);
    let (px0, px1) = f.x.range;
    match mark {
        Mark::Line { value, label } if value.is_finite() => {
            let y = f.y.at(*value);
            push_html!(
                svg,
                "<line class=\"threshold\" x1=\"{}\" y1=\"{}\" x2=\"{}\" \
                 y2=\"{}\"><title>{}</title></line>",
                at(px0),
                at(y),
                at(px1),
                at(y),
                label
            );
        }
        Mark::Band { low, high, label } if low.is_finite() && high.is_finite() => {
            let (top, bottom) = (f.y.at(high.max(*low)), f.y.at(low.min(*high)));
            push_html!(
                svg,
                "<rect class=\"band threshold-band\" x=\"{}\" y=\"{}\" \
                 width=\"{}\" height=\"{}\"><title>{}</title></rect>",
                at(px0),
                at(top),
                at(px1 - px0),
                at((bottom - top).max(0.5)),
                label
            );
        }
        Mark::Slope {
            t0,
            v0,
            per_second,
            label,
        } if t0.is_finite() && v0.is_finite() && per_second.is_finite() => {
            if let Some(((ta, va), (tb, vb))) = clip_slope(f, *t0, *v0, *per_second) {
                push_html!(
                    svg,
                    "<line class=\"threshold\" x1=\"{}\" y1=\"{}\" x2=\"{}\" \
                     y2=\"{}\"><title>{}</title></line>",
                    at(f.x.at(ta)),
                    at(f.y.at(va)),
                    at(f.x.at(tb)),
                    at(f.y.at(vb)),
                    label
                );
            }
        }
        Mark::Moment { .. } => {}
        // A mark with a non-finite value cannot be drawn; the legend still names it.
        Mark::Line { .. } | Mark::Band { .. } | Mark::Slope { .. } => {}
    }
}

/// The part of the line `v = v0 + k (t - t0)` inside the frame's domains.
fn clip_slope(f: &Frame, t0: f64, v0: f64, k: f64) -> Option<((f64, f64), (f64, f64))> {
    let (mut ta, mut tb) = f.x.domain;
    let (y0, y1) = f.y.domain;
    let at = |t: f64| v0 + k * (t - t0);
    if k != 0.0 {
        let (a, b) = (t0 + (y0 - v0) / k, t0 + (y1 - v0) / k);
        ta = ta.max(a.min(b));
        tb = tb.min(a.max(b));
    } else if !(y0..=y1).contains(&v0) {
        return None;
    }
    (ta < tb).then(|| ((ta, at(ta)), (tb, at(tb))))
}

fn legend(svg: &mut Html, marks: &[Mark]) {
    let mut items: Vec<(&str, &str)> = vec![
        ("baseline", "baseline (legacy)"),
        ("canary", "canary (new)"),
    ];
    items.extend(
        marks
            .iter()
            .filter(|m| !matches!(m, Mark::Moment { .. }))
            .map(|m| ("threshold", m.label())),
    );
    let mut x = LEFT;
    for (class, text) in items {
        if class == "threshold" {
            push_html!(
                svg,
                "<g class=\"legend\"><line class=\"threshold\" x1=\"{}\" y1=\"11\" \
                 x2=\"{}\" y2=\"11\"/>",
                Fixed(x, 1),
                Fixed(x + 16.0, 1)
            );
        } else {
            push_html!(
                svg,
                "<g class=\"legend\"><rect class=\"legend-{}\" x=\"{}\" y=\"9\" \
                 width=\"16\" height=\"4\"/>",
                class,
                Fixed(x, 1)
            );
        }
        push_html!(
            svg,
            "<text x=\"{}\" y=\"16\">{}</text></g>",
            Fixed(x + 22.0, 1),
            text
        );
        // Roughly 6 units per character at 11px.
        x += 34.0 + text.chars().count() as f64 * 6.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart<'a>(
        baseline: &'a [(f64, f64)],
        canary: &'a [(f64, f64)],
        marks: &'a [Mark],
    ) -> Chart<'a> {
        Chart {
            title: "latency",
            unit: Unit::Seconds,
            baseline,
            canary,
            marks,
        }
    }

    /// The `points` attribute of each polyline, as coordinate pairs.
    fn polylines(svg: &str) -> Vec<Vec<(f64, f64)>> {
        svg.split("<polyline")
            .skip(1)
            .map(|rest| {
                let start = rest.find("points=\"").unwrap() + 8;
                let end = start + rest[start..].find('"').unwrap();
                rest[start..end]
                    .split_whitespace()
                    .map(|pair| {
                        let (x, y) = pair.split_once(',').unwrap();
                        (x.parse().unwrap(), y.parse().unwrap())
                    })
                    .collect()
            })
            .collect()
    }

    fn attr(svg: &str, after: &str, name: &str) -> f64 {
        let rest = &svg[svg.find(after).unwrap()..];
        let start = rest.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
        let end = start + rest[start..].find('"').unwrap();
        rest[start..end].parse().unwrap()
    }

    #[test]
    fn points_scale_into_the_plot_area_with_time_left_to_right_and_values_upwards() {
        let base = [(100.0, 1.0), (110.0, 2.0), (120.0, 3.0)];
        let canary = [(100.0, 3.0), (120.0, 1.0)];
        let c = chart(&base, &canary, &[]);
        let f = frame(&c).unwrap();
        assert_eq!(f.x.at(100.0), LEFT);
        assert_eq!(f.x.at(120.0), WIDTH - RIGHT);
        // The y domain covers every value and is rounded to ticks.
        assert!(f.y.domain.0 <= 1.0 && f.y.domain.1 >= 3.0, "{:?}", f.y);
        assert!(f.y.at(3.0) < f.y.at(1.0), "higher values are drawn higher");
        let lines = polylines(render(&c).as_str());
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].len(), 3);
        assert_eq!(lines[0][0], (LEFT, (f.y.at(1.0) * 10.0).round() / 10.0));
        assert_eq!(lines[1][1].0, WIDTH - RIGHT);
        for (x, y) in lines.iter().flatten() {
            assert!((LEFT..=WIDTH - RIGHT).contains(x), "x {x}");
            assert!((TOP..=HEIGHT - BOTTOM).contains(y), "y {y}");
        }
    }

    #[test]
    fn nan_and_infinite_points_are_skipped() {
        let base = [
            (1.0, 0.1),
            (2.0, f64::NAN),
            (3.0, 0.2),
            (4.0, f64::INFINITY),
            (f64::NAN, 0.3),
            (5.0, f64::NEG_INFINITY),
            (6.0, 0.15),
        ];
        let canary = [(1.0, 0.12), (6.0, 0.11)];
        let c = chart(&base, &canary, &[]);
        let svg = render(&c).into_string();
        let lines = polylines(&svg);
        assert_eq!(lines[0].len(), 3);
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        // The infinities did not stretch the scale.
        let f = frame(&c).unwrap();
        assert!(f.y.domain.1 <= 1.0, "{:?}", f.y);
    }

    #[test]
    fn no_usable_point_gives_a_no_data_note() {
        let nan = [(1.0, f64::NAN)];
        let marks = [Mark::Line {
            value: 0.5,
            label: "threshold".into(),
        }];
        let svg = render(&chart(&nan, &[], &marks)).into_string();
        assert!(svg.contains("class=\"nodata\""), "{svg}");
        assert!(!svg.contains("<svg"));
    }

    #[test]
    fn a_single_point_gets_a_real_range_and_a_dot() {
        let one = [(1000.0, 0.2)];
        let c = chart(&one, &[], &[]);
        let f = frame(&c).unwrap();
        assert!(f.x.domain.1 - f.x.domain.0 >= 60.0);
        assert!(f.y.domain.1 > f.y.domain.0);
        let svg = render(&c).into_string();
        assert!(svg.contains("<circle class=\"dot-baseline\""), "{svg}");
        let lines = polylines(&svg);
        let (x, y) = lines[0][0];
        assert!(x.is_finite() && y.is_finite());
        assert!(
            (x - (LEFT + WIDTH - RIGHT) / 2.0).abs() < 0.1,
            "centred: {x}"
        );
    }

    #[test]
    fn constant_series_get_a_non_degenerate_range() {
        for value in [0.0, 0.25, -3.0, 1e9] {
            let flat = [(1.0, value), (2.0, value), (3.0, value)];
            let f = frame(&chart(&flat, &flat, &[])).unwrap();
            assert!(f.y.domain.1 > f.y.domain.0, "{value}: {:?}", f.y);
            let y = f.y.at(value);
            assert!(
                y.is_finite() && y > TOP && y < HEIGHT - BOTTOM,
                "{value}: {y}"
            );
            assert!(f.y_ticks.len() >= 2, "{value}: {:?}", f.y_ticks);
        }
    }

    #[test]
    fn the_threshold_line_is_drawn_dashed_at_its_value_and_kept_in_view() {
        let base = [(0.0, 0.1), (60.0, 0.12)];
        let canary = [(0.0, 0.11), (60.0, 0.13)];
        let marks = [Mark::Line {
            value: 0.5,
            label: "threshold 500 ms (max)".into(),
        }];
        let c = chart(&base, &canary, &marks);
        let f = frame(&c).unwrap();
        assert!(f.y.domain.1 >= 0.5, "the threshold widens the range");
        let svg = render(&c).into_string();
        let y = attr(&svg, "<line class=\"threshold\" x1", "y1");
        assert_eq!(y, (f.y.at(0.5) * 10.0).round() / 10.0);
        assert_eq!(y, attr(&svg, "<line class=\"threshold\" x1", "y2"));
        assert!(svg.contains("threshold 500 ms (max)"));
        assert!(svg.contains("baseline (legacy)") && svg.contains("canary (new)"));
    }

    #[test]
    fn a_band_covers_its_interval_and_a_slope_is_clipped_to_the_plot() {
        let base = [(0.0, 1.0), (600.0, 1.0)];
        let canary = [(0.0, 1.2), (600.0, 0.9)];
        let band = [Mark::Band {
            low: 0.9,
            high: 1.1,
            label: "±10%".into(),
        }];
        let c = chart(&base, &canary, &band);
        let f = frame(&c).unwrap();
        let svg = render(&c).into_string();
        let top = attr(&svg, "<rect class=\"band", "y");
        let height = attr(&svg, "<rect class=\"band", "height");
        assert!((top - f.y.at(1.1)).abs() < 0.06);
        assert!((top + height - f.y.at(0.9)).abs() < 0.11);

        let steep = [Mark::Slope {
            t0: 0.0,
            v0: 1.0,
            per_second: 1.0,
            label: "max slope".into(),
        }];
        let c = chart(&base, &canary, &steep);
        let f = frame(&c).unwrap();
        let svg = render(&c).into_string();
        let x2 = attr(&svg, "<line class=\"threshold\" x1", "x2");
        let y2 = attr(&svg, "<line class=\"threshold\" x1", "y2");
        assert!(
            x2 < WIDTH - RIGHT,
            "leaves through the top, not the right edge"
        );
        assert!((y2 - f.y.range.1).abs() < 0.06, "{y2}");
    }

    #[test]
    fn tick_labels_carry_units() {
        assert_eq!(tick_label(Unit::Seconds, 0.25, 0.05, 0.5), "250 ms");
        assert_eq!(tick_label(Unit::Seconds, 2.5, 0.5, 4.0), "2.5 s");
        assert_eq!(tick_label(Unit::Fraction, 0.005, 0.001, 0.01), "0.5%");
        assert_eq!(
            tick_label(Unit::Bytes, 3.0 * 1048576.0, 1048576.0, 4e6),
            "3 MiB"
        );
        assert_eq!(tick_label(Unit::Plain, -0.0, 0.1, 1.0), "0.0");
        assert_eq!(tick_label(Unit::Plain, 20.0, 5.0, 20.0), "20");
    }

    #[test]
    fn values_read_in_their_unit() {
        assert_eq!(value_label(Unit::Seconds, 0.5), "500 ms");
        assert_eq!(value_label(Unit::Seconds, 1.25), "1.25 s");
        assert_eq!(value_label(Unit::Fraction, 0.005), "0.5%");
        assert_eq!(value_label(Unit::Bytes, 2048.0), "2 KiB");
        assert_eq!(value_label(Unit::Plain, 42.0), "42");
    }

    #[test]
    fn titles_and_labels_are_escaped() {
        let base = [(0.0, 1.0), (1.0, 2.0)];
        let marks = [Mark::Line {
            value: 1.5,
            label: "<script>".into(),
        }];
        let c = Chart {
            title: "a\"<b>",
            unit: Unit::Plain,
            baseline: &base,
            canary: &[],
            marks: &marks,
        };
        let svg = render(&c).into_string();
        assert!(!svg.contains("<script>") && !svg.contains("a\"<b>"));
        assert!(svg.contains("&lt;script&gt;") && svg.contains("a&quot;&lt;b&gt;"));
    }
}

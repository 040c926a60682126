//! SVG charts drawn with plotters' string backend, to be inlined in the HTML.
//!
//! Without the `ttf` feature plotters cannot rasterise glyphs, but the SVG
//! backend emits text as `<text>` elements that the browser renders, so axis
//! labels, captions and legends work with no font files on this side.
//!
//! Inputs are user data: non-finite points are skipped, point counts are
//! capped so a million-sample series does not turn into a megabyte of path,
//! and a chart with nothing drawable is omitted (`Ok(None)`).

use anyhow::{anyhow, Result};
use plotters::prelude::*;

use crate::model::{Series, SeriesKind};

/// Chart size in pixels.
pub const WIDTH: u32 = 640;
pub const HEIGHT: u32 = 360;

/// Strong, distinct line colours; the first one is what the browser test
/// looks for in the screenshot.
pub const PALETTE: [RGBColor; 10] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x17, 0xbe, 0xcf),
];

/// Above this many points a line series is reduced to per-bucket min/max,
/// which keeps spikes visible while bounding the SVG size.
const MAX_LINE_POINTS: usize = 2000;
/// Above this many samples a CDF is drawn through evenly spaced quantiles.
const MAX_CDF_STEPS: usize = 1000;

/// A series turned into drawable (x, y) points.
struct Prepared<'a> {
    label: &'a str,
    kind: SeriesKind,
    points: Vec<(f64, f64)>,
}

/// Renders every series of one chart into one SVG document.
pub fn chart_svg(title: &str, series: &[&Series]) -> Result<Option<String>> {
    let prepared: Vec<Prepared<'_>> = series
        .iter()
        .map(|s| Prepared {
            label: &s.label,
            kind: s.kind,
            points: match s.kind {
                SeriesKind::Line => line_points(&s.points),
                SeriesKind::Cdf => cdf_points(&s.points),
            },
        })
        .filter(|p| !p.points.is_empty())
        .collect();
    if prepared.is_empty() {
        return Ok(None);
    }

    let all = || prepared.iter().flat_map(|p| p.points.iter());
    let (x_lo, x_hi) = bounds(all().map(|p| p.0));
    let (y_lo, y_hi) = bounds(all().map(|p| p.1));
    let only_cdf = prepared.iter().all(|p| p.kind == SeriesKind::Cdf);
    // CDFs start with a vertical step at the smallest sample; a little
    // margin keeps it off the y axis.
    let (x_lo, x_hi) = widen(x_lo, x_hi, if only_cdf { 0.03 } else { 0.0 });
    let (y_lo, y_hi) = if only_cdf {
        (0.0, 1.05)
    } else {
        widen(y_lo, y_hi, 0.05)
    };

    let first = series[0];
    let x_desc = non_empty(&first.x_label, "value");
    let y_desc = match first.kind {
        SeriesKind::Cdf => non_empty(&first.y_label, "fraction ≤ x"),
        SeriesKind::Line => non_empty(&first.y_label, ""),
    };
    let legend = prepared.len() > 1;

    // Font sizes are given in plotters' units; the SVG backend divides
    // them by 1.24, so these come out at about 18, 14 and 12 px.
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(46)
            .y_label_area_size(68)
            .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .axis_desc_style(("sans-serif", 17))
            .label_style(("sans-serif", 15))
            .light_line_style(RGBColor(236, 236, 236))
            .bold_line_style(RGBColor(215, 215, 215))
            .x_label_formatter(&|v| tick(*v))
            .y_label_formatter(&|v| tick(*v))
            .draw()
            .map_err(plot_err)?;
        for (i, p) in prepared.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let drawn = chart
                .draw_series(LineSeries::new(
                    p.points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(plot_err)?;
            if legend {
                drawn.label(p.label).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 22, y)], color.stroke_width(3))
                });
            }
        }
        if legend {
            let pos = legend_corner(&prepared, (x_lo, x_hi), (y_lo, y_hi));
            chart
                .configure_series_labels()
                .position(pos)
                .label_font(("sans-serif", 15))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.35))
                .draw()
                .map_err(plot_err)?;
        }
        root.present().map_err(plot_err)?;
    }
    Ok(Some(svg))
}

/// Picks the plot corner the lines cross least, so the legend hides as
/// little data as possible. Segments are sampled, not just their end
/// points, because a sparse line can cross a corner with no point in it.
fn legend_corner(
    series: &[Prepared<'_>],
    (x_lo, x_hi): (f64, f64),
    (y_lo, y_hi): (f64, f64),
) -> SeriesLabelPosition {
    // Legend box as a fraction of the plot: fixed width, a row per series.
    let w = 0.32;
    let h = (0.08 * series.len() as f64 + 0.04).min(0.9);
    let corners = [
        (SeriesLabelPosition::UpperRight, 1.0 - w, 1.0 - h),
        (SeriesLabelPosition::UpperLeft, 0.0, 1.0 - h),
        (SeriesLabelPosition::LowerRight, 1.0 - w, 0.0),
        (SeriesLabelPosition::LowerLeft, 0.0, 0.0),
    ];
    let mut hits = [0usize; 4];
    let norm = |(x, y): (f64, f64)| ((x - x_lo) / (x_hi - x_lo), (y - y_lo) / (y_hi - y_lo));
    for p in series {
        for seg in p.points.windows(2) {
            let (a, b) = (norm(seg[0]), norm(seg[1]));
            for k in 0..=16 {
                let t = k as f64 / 16.0;
                let (x, y) = (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t);
                for (i, (_, cx, cy)) in corners.iter().enumerate() {
                    if x >= *cx && x <= cx + w && y >= *cy && y <= cy + h {
                        hits[i] += 1;
                    }
                }
            }
        }
    }
    let best = (0..4).min_by_key(|i| hits[*i]).unwrap_or(0);
    corners
        .into_iter()
        .nth(best)
        .map_or(SeriesLabelPosition::UpperRight, |c| c.0)
}

fn plot_err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("plot: {e}")
}

fn non_empty<'a>(s: &'a str, fallback: &'a str) -> &'a str {
    if s.is_empty() {
        fallback
    } else {
        s
    }
}

/// Finite points in order, reduced to bucket min/max when there are many.
fn line_points(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let pts: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    if pts.len() <= MAX_LINE_POINTS {
        return pts;
    }
    let bucket = pts.len().div_ceil(MAX_LINE_POINTS / 2);
    let mut out = Vec::with_capacity(MAX_LINE_POINTS + 2);
    for chunk in pts.chunks(bucket) {
        let lo = chunk
            .iter()
            .enumerate()
            .min_by(|a, b| a.1 .1.total_cmp(&b.1 .1));
        let hi = chunk
            .iter()
            .enumerate()
            .max_by(|a, b| a.1 .1.total_cmp(&b.1 .1));
        if let (Some((il, l)), Some((ih, h))) = (lo, hi) {
            match il.cmp(&ih) {
                std::cmp::Ordering::Less => out.extend([*l, *h]),
                std::cmp::Ordering::Greater => out.extend([*h, *l]),
                std::cmp::Ordering::Equal => out.push(*l),
            }
        }
    }
    out
}

/// Empirical CDF of the finite samples in `.1`: a step line for small
/// sample counts, evenly spaced quantiles for large ones.
fn cdf_points(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut v: Vec<f64> = points
        .iter()
        .map(|p| p.1)
        .filter(|y| y.is_finite())
        .collect();
    if v.is_empty() {
        return Vec::new();
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let nf = n as f64;
    let mut out = vec![(v[0], 0.0)];
    if n <= MAX_CDF_STEPS {
        for (i, x) in v.iter().enumerate() {
            out.push((*x, i as f64 / nf));
            out.push((*x, (i + 1) as f64 / nf));
        }
    } else {
        for j in 1..=MAX_CDF_STEPS {
            let i = (j * n).div_ceil(MAX_CDF_STEPS).clamp(1, n) - 1;
            out.push((v[i], (i + 1) as f64 / nf));
        }
    }
    out
}

fn bounds(it: impl Iterator<Item = f64>) -> (f64, f64) {
    it.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    })
}

/// Pads a range by `frac` of its span, and gives degenerate ranges (a single
/// value) a visible width so plotters has something to scale.
fn widen(lo: f64, hi: f64, frac: f64) -> (f64, f64) {
    let span = hi - lo;
    if !(span.is_finite()) || span <= f64::EPSILON * lo.abs().max(hi.abs()).max(1.0) {
        let pad = (lo.abs() * 0.1).max(1.0);
        return (lo - pad, hi + pad);
    }
    (lo - span * frac, hi + span * frac)
}

/// Compact tick labels: plain decimals for ordinary magnitudes, scientific
/// notation for very large or small ones, no trailing zeros.
fn tick(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e6).contains(&a) {
        return format!("{:.1e}", v);
    }
    let s = format!("{:.3}", v);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdf_is_monotone_and_ends_at_one() {
        let s: Vec<(f64, f64)> = [3.0, 1.0, f64::NAN, 2.0]
            .iter()
            .map(|v| (0.0, *v))
            .collect();
        let p = cdf_points(&s);
        assert_eq!(p.first(), Some(&(1.0, 0.0)));
        assert_eq!(p.last(), Some(&(3.0, 1.0)));
        assert!(p.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
        let big: Vec<(f64, f64)> = (0..100_000).map(|i| (0.0, i as f64)).collect();
        let p = cdf_points(&big);
        assert!(p.len() <= MAX_CDF_STEPS + 1);
        assert_eq!(p.last(), Some(&(99_999.0, 1.0)));
    }

    #[test]
    fn odd_data_does_not_panic() {
        let empty = Series::default();
        assert!(chart_svg("e", &[&empty]).unwrap().is_none());
        let nan = Series {
            points: vec![(f64::NAN, 1.0), (2.0, f64::INFINITY)],
            ..Series::default()
        };
        assert!(chart_svg("n", &[&nan]).unwrap().is_none());
        let one = Series {
            points: vec![(5.0, 5.0)],
            ..Series::default()
        };
        assert!(chart_svg("one", &[&one]).unwrap().is_some());
        let many = Series {
            points: (0..50_000).map(|i| (i as f64, (i % 7) as f64)).collect(),
            ..Series::default()
        };
        let svg = chart_svg("many", &[&many]).unwrap().unwrap();
        assert!(svg.len() < 200_000, "svg too big: {}", svg.len());
    }

    #[test]
    fn ticks_are_compact() {
        assert_eq!(tick(0.5), "0.5");
        assert_eq!(tick(2.0), "2");
        assert_eq!(tick(0.0), "0");
        assert_eq!(tick(1.5e7), "1.5e7");
    }
}

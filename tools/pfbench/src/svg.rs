//! The SVG picture of a bench: two panels, one above the other.
//!
//! - **Latency histogram**: every row on one log-scale latency axis, each a step line of the
//!   share of its samples per log-spaced bin, broken where a bin is empty (nothing is drawn
//!   along the floor); each row's p50 and p99 marked with a vertical line in its colour
//!   (solid p50, dotted p99) and written in the legend.
//! - **Percentile plot**, as HdrHistogram's standard chart: latency (log scale) against the
//!   percentile on an axis where 90 %, 99 %, 99.9 %, 99.99 % … are equally spaced, so the tail
//!   is as readable as the median.
//!
//! Rows alternate solid and dashed lines as well as colours, so two rows that coincide (the
//! prefaulted and the cold-RAM guest faults often do) stay distinguishable. Text is emitted as
//! SVG `<text>` (no font library needed).

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::stats::{cycles_to_ns, summarize, Row};

/// One colour per row, in order (matplotlib's "tab10", readable on white), then repeating.
pub(crate) const PALETTE: [RGBColor; 8] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
];

/// Log-spaced bins over the latency axis.
const BINS: usize = 80;
const WIDTH: u32 = 1000;
/// Each panel's height.
const PANEL: u32 = 540;
/// The percentile axis ends at 99.999 % (x = 5: `-log10(1 - q)`).
const MAX_NINES: f64 = 5.0;

/// "850 ns", "1.3 µs", "12 µs", "1.5 ms" (or plain cycles when the clock is unknown).
fn label_latency(v: f64, tsc_khz: u64) -> String {
    if tsc_khz == 0 {
        return format!("{v:.0}");
    }
    let (v, unit) = if v >= 1e6 {
        (v / 1e6, "ms")
    } else if v >= 1e3 {
        (v / 1e3, "µs")
    } else {
        (v, "ns")
    };
    if v >= 10.0 || (v - v.round()).abs() < 1e-9 {
        format!("{v:.0} {unit}")
    } else {
        format!("{v:.1} {unit}")
    }
}

/// The percentile at `nines` on the percentile axis: 0 → "0%", 1 → "90%", 3 → "99.9%".
fn label_nines(nines: f64) -> String {
    let q = 100.0 * (1.0 - 10f64.powf(-nines));
    let digits = (nines.round() as usize).saturating_sub(2);
    format!("{q:.digits$}%")
}

/// The two-panel picture of `rows` (latencies from cycles at `tsc_khz`; in cycles if it is 0).
///
/// Output: a standalone SVG document, 1000×1080. Each non-empty row draws at least one
/// stroke in its colour in each panel and one legend `<rect>` filled in it; an empty row (or
/// one with no positive sample) gets only its legend entries.
pub fn render_svg(rows: &[Row], tsc_khz: u64, title: &str) -> String {
    let mut svg = String::new();
    let result = draw(&mut svg, rows, tsc_khz, title);
    match result {
        Ok(()) => svg,
        Err(e) => format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{}\">\
             <text x=\"10\" y=\"20\">plot failed: {}</text></svg>\n",
            2 * PANEL,
            xml_escape(&e.to_string())
        ),
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// A row's samples as latencies (ns, or cycles without a clock), positive ones only, sorted.
struct Series {
    label: String,
    xs: Vec<f64>,
    colour: RGBColor,
    dashed: bool,
}

fn series(rows: &[Row], tsc_khz: u64) -> Vec<Series> {
    let to_x = |c: u64| {
        if tsc_khz == 0 {
            c as f64
        } else {
            cycles_to_ns(c as f64, tsc_khz)
        }
    };
    rows.iter()
        .enumerate()
        .map(|(i, r)| {
            let mut xs: Vec<f64> = r
                .cycles
                .iter()
                .filter(|&&c| c > 0)
                .map(|&c| to_x(c))
                .collect();
            xs.sort_by(f64::total_cmp);
            let s = summarize(r, tsc_khz);
            let (p50, p99) = if tsc_khz == 0 {
                (s.p50_cycles as f64, s.p99_cycles as f64)
            } else {
                (s.p50_ns, s.p99_ns)
            };
            let label = if xs.is_empty() {
                format!("{} (n=0)", r.name)
            } else {
                format!(
                    "{} (n={}; p50 {}, p99 {})",
                    r.name,
                    r.cycles.len(),
                    label_latency(p50, tsc_khz),
                    label_latency(p99, tsc_khz)
                )
            };
            Series {
                label,
                xs,
                colour: PALETTE[i % PALETTE.len()],
                dashed: i % 2 == 1,
            }
        })
        .collect()
}

fn draw(svg: &mut String, rows: &[Row], tsc_khz: u64, title: &str) -> DrawResult {
    let all = series(rows, tsc_khz);
    let (mut lo, mut hi) = all
        .iter()
        .flat_map(|s| s.xs.iter())
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        });
    if !lo.is_finite() {
        (lo, hi) = (1.0, 10.0);
    }
    // Some margin, and at least a factor of 10 so the axis has labels.
    lo /= 1.25;
    hi = (hi * 1.25).max(lo * 10.0);

    let root = SVGBackend::with_string(svg, (WIDTH, 2 * PANEL)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(PANEL);
    histogram(&top, &all, (lo, hi), rows, tsc_khz, title)?;
    percentiles(&bottom, &all, (lo, hi), tsc_khz)?;
    root.present()?;
    Ok(())
}

/// Draws `points` as one row's line: solid, or dashed for every second row.
fn stroke<CT: CoordTranslate<From = (f64, f64)>>(
    chart: &mut ChartContext<'_, SVGBackend<'_>, CT>,
    s: &Series,
    points: Vec<(f64, f64)>,
) -> DrawResult {
    let style = s.colour.stroke_width(2);
    if s.dashed {
        chart.draw_series(DashedLineSeries::new(points, 9, 5, style))?;
    } else {
        chart.draw_series(LineSeries::new(points, style))?;
    }
    Ok(())
}

/// One legend entry per row (a box in its colour, its label), in a box at `at`.
fn legend<'a, 'b: 'a, CT: CoordTranslate<From = (f64, f64)>>(
    chart: &mut ChartContext<'a, SVGBackend<'b>, CT>,
    all: &[Series],
    at: SeriesLabelPosition,
) -> DrawResult {
    for s in all {
        let colour = s.colour;
        chart
            .draw_series(std::iter::empty::<Rectangle<(f64, f64)>>())?
            .label(s.label.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 16, y + 5)], colour.filled()));
    }
    chart
        .configure_series_labels()
        .position(at)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    Ok(())
}

fn latency_desc(tsc_khz: u64) -> &'static str {
    if tsc_khz == 0 {
        "latency (cycles, log scale)"
    } else {
        "latency (log scale)"
    }
}

fn histogram(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    all: &[Series],
    (lo, hi): (f64, f64),
    rows: &[Row],
    tsc_khz: u64,
    title: &str,
) -> DrawResult {
    let (llo, lhi) = (lo.ln(), hi.ln());
    let edge = |i: usize| (llo + (lhi - llo) * i as f64 / BINS as f64).exp();
    let largest = all.iter().map(|s| s.xs.len()).max().unwrap_or(1).max(1);
    let floor = 100.0 / largest as f64 / 2.0;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(72)
        .build_cartesian_2d((lo..hi).log_scale(), (floor..100.0).log_scale())?;
    chart
        .configure_mesh()
        .x_desc(latency_desc(tsc_khz))
        .y_desc("share of samples (%, log scale)")
        .x_label_formatter(&|x| label_latency(*x, tsc_khz))
        .y_label_formatter(&|y| format!("{y}"))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 16))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    for (s, row) in all.iter().zip(rows) {
        let mut n = vec![0u64; BINS];
        for &x in &s.xs {
            let b = ((x.ln() - llo) / (lhi - llo) * BINS as f64) as usize;
            n[b.min(BINS - 1)] += 1;
        }
        let share = |b: usize| 100.0 * n[b] as f64 / s.xs.len().max(1) as f64;
        // One step line per stretch of non-empty bins.
        let mut b = 0;
        while b < BINS {
            if n[b] == 0 {
                b += 1;
                continue;
            }
            let mut points = Vec::new();
            while b < BINS && n[b] > 0 {
                points.extend([(edge(b), share(b)), (edge(b + 1), share(b))]);
                b += 1;
            }
            stroke(&mut chart, s, points)?;
        }
        // p50 (solid) and p99 (dotted) markers.
        if !s.xs.is_empty() {
            let sm = summarize(row, tsc_khz);
            let at = |c: u64, ns: f64| if tsc_khz == 0 { c as f64 } else { ns };
            let (p50, p99) = (at(sm.p50_cycles, sm.p50_ns), at(sm.p99_cycles, sm.p99_ns));
            chart.draw_series(LineSeries::new(
                [(p50, floor), (p50, 100.0)],
                s.colour.stroke_width(1),
            ))?;
            chart.draw_series(DashedLineSeries::new(
                [(p99, floor), (p99, 100.0)],
                2,
                4,
                s.colour.stroke_width(1),
            ))?;
        }
    }
    legend(&mut chart, all, SeriesLabelPosition::UpperRight)
}

/// The latency at quantile `q` of sorted `xs` (nearest rank).
fn at_quantile(xs: &[f64], q: f64) -> f64 {
    let rank = ((q * xs.len() as f64).ceil() as usize).clamp(1, xs.len());
    xs[rank - 1]
}

fn percentiles(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    all: &[Series],
    (lo, hi): (f64, f64),
    tsc_khz: u64,
) -> DrawResult {
    let mut chart = ChartBuilder::on(area)
        .caption("latency by percentile", ("sans-serif", 22))
        .margin(16)
        .margin_right(44)
        .x_label_area_size(50)
        .y_label_area_size(72)
        .build_cartesian_2d(0.0..MAX_NINES, (lo..hi).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc(latency_desc(tsc_khz))
        .x_labels(MAX_NINES as usize + 1)
        .x_label_formatter(&|x| label_nines(*x))
        .y_label_formatter(&|y| label_latency(*y, tsc_khz))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 16))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    for s in all {
        if !s.xs.is_empty() {
            // Up to the quantile the sample count supports: 1 - 1/n.
            let top = (s.xs.len() as f64).log10().min(MAX_NINES);
            let steps = 200;
            let points: Vec<(f64, f64)> = (0..=steps)
                .map(|i| top * i as f64 / steps as f64)
                .map(|nines| (nines, at_quantile(&s.xs, 1.0 - 10f64.powf(-nines))))
                .collect();
            stroke(&mut chart, s, points)?;
        }
    }
    legend(&mut chart, all, SeriesLabelPosition::UpperLeft)
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn axis_labels() {
        assert_eq!(label_nines(0.0), "0%");
        assert_eq!(label_nines(1.0), "90%");
        assert_eq!(label_nines(2.0), "99%");
        assert_eq!(label_nines(3.0), "99.9%");
        assert_eq!(label_nines(4.0), "99.99%");
        assert_eq!(label_latency(850.0, 1), "850 ns");
        assert_eq!(label_latency(1300.0, 1), "1.3 µs");
        assert_eq!(label_latency(1.5e6, 1), "1.5 ms");
        assert_eq!(label_latency(1234.0, 0), "1234");
    }

    #[test]
    fn nearest_rank_quantiles() {
        let xs: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(at_quantile(&xs, 0.0), 1.0);
        assert_eq!(at_quantile(&xs, 0.5), 50.0);
        assert_eq!(at_quantile(&xs, 0.99), 99.0);
        assert_eq!(at_quantile(&xs, 1.0), 100.0);
    }
}

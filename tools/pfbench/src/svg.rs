//! The SVG histogram: every row on one log-scale latency axis.

use plotters::prelude::*;

use crate::{cycles_to_ns, Row};

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
const HEIGHT: u32 = 560;

/// "850 ns", "1.3 µs", "12 µs", "1.5 ms".
fn label_ns(ns: f64) -> String {
    let (v, unit) = if ns >= 1e6 {
        (ns / 1e6, "ms")
    } else if ns >= 1e3 {
        (ns / 1e3, "µs")
    } else {
        (ns, "ns")
    };
    if v >= 10.0 || (v - v.round()).abs() < 1e-9 {
        format!("{v:.0} {unit}")
    } else {
        format!("{v:.1} {unit}")
    }
}

/// A histogram of every row on ONE log-scale latency axis (ns, from `tsc_khz`): each row is a
/// step line of the share of its samples per log-spaced bin (80 bins over the range of all
/// samples), one colour per row, with a legend naming the rows. The share axis is log-scale
/// too (down to one sample of the largest row), so the tails that set p99 stay visible.
///
/// Output: a standalone SVG document, 1000×560, text as `<text font-family="sans-serif">`.
/// Each non-empty row is exactly one `<polyline>` stroked in its colour and one legend
/// `<rect>` filled in it; an empty row (or one with no positive sample) gets only its legend
/// entry. With `tsc_khz` 0 the axis is in cycles instead (the label says so).
pub fn render_svg(rows: &[Row], tsc_khz: u64, title: &str) -> String {
    let mut svg = String::new();
    let result = draw(&mut svg, rows, tsc_khz, title);
    match result {
        Ok(()) => svg,
        Err(e) => format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\">\
             <text x=\"10\" y=\"20\">plot failed: {}</text></svg>\n",
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

fn draw(svg: &mut String, rows: &[Row], tsc_khz: u64, title: &str) -> DrawResult {
    let to_x = |c: u64| {
        if tsc_khz == 0 {
            c as f64
        } else {
            cycles_to_ns(c as f64, tsc_khz)
        }
    };
    let xs: Vec<Vec<f64>> = rows
        .iter()
        .map(|r| {
            r.cycles
                .iter()
                .filter(|&&c| c > 0)
                .map(|&c| to_x(c))
                .collect()
        })
        .collect();
    let (mut lo, mut hi) = xs
        .iter()
        .flatten()
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        });
    if !lo.is_finite() {
        (lo, hi) = (1.0, 10.0);
    }
    // Some margin, and at least a factor of 10 so the axis has labels.
    lo /= 1.25;
    hi = (hi * 1.25).max(lo * 10.0);
    let (llo, lhi) = (lo.ln(), hi.ln());
    let edge = |i: usize| (llo + (lhi - llo) * i as f64 / BINS as f64).exp();

    // Share (%) of each row's samples per bin.
    let shares: Vec<Vec<f64>> = xs
        .iter()
        .map(|v| {
            let mut n = vec![0u64; BINS];
            for &x in v {
                let b = ((x.ln() - llo) / (lhi - llo) * BINS as f64) as usize;
                n[b.min(BINS - 1)] += 1;
            }
            n.iter()
                .map(|&k| 100.0 * k as f64 / v.len().max(1) as f64)
                .collect()
        })
        .collect();
    let largest = xs.iter().map(Vec::len).max().unwrap_or(1).max(1);
    let floor = 100.0 / largest as f64 / 2.0;

    let root = SVGBackend::with_string(svg, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 26))
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(72)
        .build_cartesian_2d((lo..hi).log_scale(), (floor..100.0).log_scale())?;
    chart
        .configure_mesh()
        .x_desc(if tsc_khz == 0 {
            "latency (cycles, log scale)"
        } else {
            "latency (ns, log scale)"
        })
        .y_desc("share of samples (%, log scale)")
        .x_label_formatter(&|x| {
            if tsc_khz == 0 {
                format!("{x:.0}")
            } else {
                label_ns(*x)
            }
        })
        .y_label_formatter(&|y| format!("{y}"))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 16))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;

    for (i, (row, share)) in rows.iter().zip(&shares).enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        // A step line: (left edge, share), (right edge, share) per bin; empty bins sit on
        // the floor. Empty rows draw nothing but keep their legend entry.
        let points: Vec<(f64, f64)> = if xs[i].is_empty() {
            Vec::new()
        } else {
            (0..BINS)
                .flat_map(|b| {
                    let y = share[b].max(floor);
                    [(edge(b), y), (edge(b + 1), y)]
                })
                .collect()
        };
        let label = format!("{} (n={})", row.name, row.cycles.len());
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 16, y + 5)], colour.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 16))
        .draw()?;
    root.present()?;
    Ok(())
}

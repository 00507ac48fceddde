//! The roofline plot of `blockq bench --plot FILE.svg` (plotters, SVG).
//!
//! x: arithmetic intensity (operations per weight byte: 2·M·N·K / bytes,
//! which grows with the batch M); y: GOPS reached. The roofs are the
//! measured read bandwidth (a line of slope 1 on log-log axes: GOPS =
//! intensity x GB/s) and each ISA's int8 and f32 FMA peaks (horizontal).
//! One colour per format, one marker per ISA.

use blockq::bench::Peaks;
use blockq::{Isa, QuantType};
use plotters::prelude::*;
use std::path::Path;

/// One measured case.
pub(crate) struct Point {
    pub isa: Isa,
    pub quant_type: QuantType,
    pub intensity: f64,
    pub gops: f64,
    /// Read bandwidth measured for the case's weight size.
    pub read_gbs: f64,
}

const COLOURS: [RGBColor; 11] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(0, 0, 0),
];

fn colour(q: QuantType) -> RGBColor {
    let i = QuantType::ALL.iter().position(|&t| t == q).unwrap_or(0);
    COLOURS[i % COLOURS.len()]
}

pub(crate) fn roofline(
    path: &Path,
    points: &[Point],
    isas: &[Isa],
    peaks: &[Peaks],
) -> Result<(), Box<dyn std::error::Error>> {
    if points.is_empty() {
        return Err("nothing to plot".into());
    }
    let bw = points.iter().map(|p| p.read_gbs).fold(f64::NAN, f64::min);
    let top = peaks
        .iter()
        .flat_map(|p| [p.int8_gops, p.fma_gflops])
        .flatten()
        .chain(points.iter().map(|p| p.gops))
        .fold(1.0, f64::max);
    let (x_lo, x_hi) = points.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), p| {
        (lo.min(p.intensity), hi.max(p.intensity))
    });
    let (x_lo, x_hi) = (x_lo / 2.0, x_hi * 2.0);
    let y_lo = points.iter().map(|p| p.gops).fold(f64::INFINITY, f64::min) / 2.0;
    let y_hi = top * 2.0;

    let root = SVGBackend::new(path, (960, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("blockq roofline: {}", blockq::dispatch::cpu_model()),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d((x_lo..x_hi).log_scale(), (y_lo..y_hi).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("arithmetic intensity: operations per weight byte (2·M·N·K / bytes)")
        .y_desc("GOPS")
        .draw()?;
    let xs = |lo: f64, hi: f64| (0..=64).map(move |i| lo * (hi / lo).powf(i as f64 / 64.0));
    // The memory roof (the smallest read bandwidth measured: the largest weights).
    chart
        .draw_series(LineSeries::new(
            xs(x_lo, x_hi)
                .map(|x| (x, x * bw))
                .filter(|&(_, y)| y <= y_hi),
            BLACK.stroke_width(2),
        ))?
        .label(format!("read bandwidth {bw:.1} GB/s"))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2)));
    // Compute roofs, per ISA (solid: int8, dashed: f32 FMA), in dark hues
    // that the formats' bright ones do not use.
    const ROOFS: [RGBColor; 6] = [
        RGBColor(60, 60, 60),
        RGBColor(0, 60, 140),
        RGBColor(110, 0, 140),
        RGBColor(0, 110, 60),
        RGBColor(150, 0, 0),
        RGBColor(130, 90, 0),
    ];
    for (i, (isa, p)) in isas.iter().zip(peaks).enumerate() {
        let style = ROOFS[i % ROOFS.len()].stroke_width(2);
        if let Some(peak) = p.int8_gops {
            chart
                .draw_series(LineSeries::new(
                    xs(peak / bw, x_hi).map(|x| (x, peak)),
                    style,
                ))?
                .label(format!("{isa} int8 peak {peak:.0} GOPS"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
        if let Some(peak) = p.fma_gflops {
            chart
                .draw_series(DashedLineSeries::new(
                    xs(peak / bw, x_hi).map(|x| (x, peak)),
                    6,
                    4,
                    style,
                ))?
                .label(format!("{isa} f32 FMA peak {peak:.0} GFLOPS (dashed)"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
    }
    // The cases: colour = format, marker = ISA (disc, triangle, cross, square, ring).
    for q in QuantType::ALL {
        let c = colour(q);
        let mut labelled = false;
        for (shape, &isa) in isas.iter().enumerate() {
            let at: Vec<(f64, f64)> = points
                .iter()
                .filter(|p| p.quant_type == q && p.isa == isa)
                .map(|p| (p.intensity, p.gops))
                .collect();
            if at.is_empty() {
                continue;
            }
            let fill = c.filled();
            let series = match shape % 5 {
                0 => chart.draw_series(at.iter().map(|&a| Circle::new(a, 5, fill)))?,
                4 => chart.draw_series(at.iter().map(|&a| Circle::new(a, 5, c.stroke_width(2))))?,
                1 => chart.draw_series(at.iter().map(|&a| TriangleMarker::new(a, 6, fill)))?,
                2 => chart.draw_series(at.iter().map(|&a| Cross::new(a, 5, c.stroke_width(2))))?,
                _ => chart
                    .draw_series(at.iter().map(|&a| {
                        EmptyElement::at(a) + Rectangle::new([(-4, -4), (4, 4)], fill)
                    }))?,
            };
            if !labelled {
                series
                    .label(q.name())
                    .legend(move |(x, y)| Circle::new((x + 10, y), 5, c.filled()));
                labelled = true;
            }
        }
    }
    if isas.len() > 1 {
        for (shape, isa) in isas.iter().enumerate() {
            // Legend entries only: an empty series with the ISA's marker.
            chart
                .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?
                .label(format!(
                    "marker {}: {isa}",
                    ["disc", "triangle", "cross", "square", "ring"][shape % 5]
                ));
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

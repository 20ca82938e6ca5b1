//! SVG charts of the bench reports, drawn with plotters' SVG backend: the roofline (FLOP/s
//! against arithmetic intensity, both log scales, under the measured bandwidth and compute
//! roofs) and plain line charts (the DualFFN strategy comparison). May use: plotters; anyhow.

use plotters::prelude::*;
use std::path::Path;

/// Named points of one series.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

const SIZE: (u32, u32) = (1100, 720);

/// Bounds of positive values with a margin on a log axis.
fn log_bounds(vals: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, 0.0f64);
    for v in vals.filter(|v| v.is_finite() && *v > 0.0) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.1, 10.0);
    }
    (lo / 2.0, hi * 2.0)
}

/// The roofline: `series` are (intensity FLOP/byte, GFLOP/s) points; the roof is
/// min(peak GFLOP/s, intensity × peak GB/s).
pub fn roofline(
    path: &Path,
    title: &str,
    peak_gb_s: f64,
    peak_gflop_s: f64,
    series: &[Series],
) -> anyhow::Result<()> {
    let ridge = peak_gflop_s / peak_gb_s;
    let (x0, x1) = log_bounds(
        series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .chain([ridge]),
    );
    let (y0, y1) = log_bounds(
        series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .chain([peak_gflop_s, x0 * peak_gb_s]),
    );
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("arithmetic intensity (FLOP / byte)")
        .y_desc("achieved GFLOP/s")
        .draw()?;
    let roof: Vec<(f64, f64)> = (0..=200)
        .map(|i| {
            let x = x0 * (x1 / x0).powf(i as f64 / 200.0);
            (x, (x * peak_gb_s).min(peak_gflop_s))
        })
        .collect();
    chart
        .draw_series(LineSeries::new(roof, BLACK.stroke_width(2)))?
        .label(format!(
            "roof: {peak_gb_s:.1} GB/s, {peak_gflop_s:.1} GFLOP/s (measured)"
        ))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.stroke_width(2)));
    for (i, s) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(s.points.iter().map(|&p| Circle::new(p, 4, color.filled())))?
            .label(s.name.clone())
            .legend(move |(x, y)| Circle::new((x + 9, y), 4, color.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    root.present()?;
    Ok(())
}

/// A line chart of `series` (x linear, y log when `log_y`).
pub fn lines(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
) -> anyhow::Result<()> {
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let (mut x0, mut x1) = (f64::INFINITY, f64::NEG_INFINITY);
    for x in xs {
        x0 = x0.min(x);
        x1 = x1.max(x);
    }
    if !(x0.is_finite() && x1 > x0) {
        (x0, x1) = (0.0, 1.0);
    }
    let (y0, y1) = log_bounds(series.iter().flat_map(|s| s.points.iter().map(|p| p.1)));
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(x0..x1, (y0..y1).log_scale())?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()?;
    for (i, s) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(s.points.clone(), color.stroke_width(2)))?
            .label(s.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()?;
    Ok(())
}

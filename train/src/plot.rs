//! Line charts as PNG (plotters): the trainer's loss and learning-rate curves, and the
//! schedules of `examples/lr_schedule.rs`. Text uses DejaVu Sans when the system has it
//! (`fonts-dejavu-core`, or `$BERT_PLOT_FONT`); without a font the chart is drawn unlabelled.

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;

use crate::TrainError;

/// One named line.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// One panel: a y-axis label and its lines.
#[derive(Debug, Clone)]
pub struct Panel {
    pub y_label: String,
    pub series: Vec<Series>,
}

const FONT_PATHS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

/// Registers a sans-serif font once; whether text can be drawn.
fn font_available() -> bool {
    static FONT: OnceLock<bool> = OnceLock::new();
    *FONT.get_or_init(|| {
        let from_env = std::env::var("BERT_PLOT_FONT").ok();
        let bytes = from_env
            .iter()
            .map(String::as_str)
            .chain(FONT_PATHS)
            .find_map(|p| std::fs::read(p).ok());
        match bytes {
            Some(b) => plotters::style::register_font(
                "sans-serif",
                FontStyle::Normal,
                Box::leak(b.into_boxed_slice()),
            )
            .is_ok(),
            None => false,
        }
    })
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn plot_error(path: &Path, e: &dyn std::fmt::Display) -> TrainError {
    TrainError::Plot(format!("{}: {e}", path.display()))
}

/// A white PNG canvas of `size` at `path`, under `title` where a font is available.
fn canvas<'a>(
    path: &'a Path,
    size: (u32, u32),
    title: &str,
) -> Result<DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>, TrainError> {
    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_error(path, &e))?;
    if !font_available() {
        return Ok(root);
    }
    (root.titled(title, ("sans-serif", 22))).map_err(|e| plot_error(path, &e))
}

/// Draws `panels` stacked vertically into a PNG at `path`.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    panels: &[Panel],
) -> Result<(), TrainError> {
    let err = |e: &dyn std::fmt::Display| plot_error(path, e);
    let text = font_available();
    let height = 300 * panels.len().max(1) as u32 + if text { 40 } else { 0 };
    let root = canvas(path, (900, height), title)?;
    for (area, panel) in root
        .split_evenly((panels.len().max(1), 1))
        .iter()
        .zip(panels)
    {
        let points = panel.series.iter().flat_map(|s| s.points.iter());
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &(x, y) in points.filter(|(x, y)| x.is_finite() && y.is_finite()) {
            (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
        }
        if x0 > x1 {
            continue;
        }
        let pad = ((y1 - y0) * 0.05).max(1e-12);
        let mut builder = ChartBuilder::on(area);
        builder.margin(12);
        if text {
            builder.x_label_area_size(36).y_label_area_size(70);
        }
        let mut chart = builder
            .build_cartesian_2d(x0..x1.max(x0 + 1e-9), (y0 - pad)..(y1 + pad))
            .map_err(|e| err(&e))?;
        if text {
            chart
                .configure_mesh()
                .x_desc(x_label)
                .y_desc(panel.y_label.as_str())
                .y_label_formatter(&|v| format!("{v:.3e}"))
                .draw()
                .map_err(|e| err(&e))?;
        }
        for (i, s) in panel.series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let drawn = chart
                .draw_series(LineSeries::new(
                    s.points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(|e| err(&e))?;
            if text {
                drawn.label(s.name.as_str()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            }
        }
        if text && panel.series.len() > 1 {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(|e| err(&e))?;
        }
    }
    root.present().map_err(|e| err(&e))
}

/// One group of bars (e.g. one workload): a label and `(series, value)` bars.
#[derive(Debug, Clone)]
pub struct BarGroup {
    pub label: String,
    pub bars: Vec<(String, f64)>,
}

/// Draws grouped bars into a PNG at `path`, one colour per series name, with a legend; the
/// y axis is logarithmic when `log_y` (for values spanning orders of magnitude).
pub fn bar_chart(
    path: &Path,
    title: &str,
    y_label: &str,
    groups: &[BarGroup],
    log_y: bool,
) -> Result<(), TrainError> {
    let err = |e: &dyn std::fmt::Display| plot_error(path, e);
    let text = font_available();
    let mut names: Vec<&str> = Vec::new();
    for b in groups.iter().flat_map(|g| &g.bars) {
        if !names.contains(&b.0.as_str()) {
            names.push(&b.0);
        }
    }
    let values = groups.iter().flat_map(|g| g.bars.iter().map(|b| b.1));
    let (lo, hi) = values
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    if lo > hi {
        return Err(TrainError::Plot(format!(
            "{}: nothing to draw",
            path.display()
        )));
    }
    let width = (120 * groups.len() as u32 + 200).max(700);
    let root = canvas(path, (width, 520), title)?;
    let n = groups.len();
    let slots = names.len().max(1) as f64 + 1.0;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(12);
    if text {
        builder.x_label_area_size(70).y_label_area_size(80);
    }
    let y_range = if log_y {
        (lo / 2.0).log10()..(hi * 2.0).log10()
    } else {
        0.0..hi * 1.1
    };
    let y = |v: f64| if log_y { v.max(lo / 2.0).log10() } else { v };
    let mut chart = builder
        .build_cartesian_2d(0.0..n as f64, y_range.clone())
        .map_err(|e| err(&e))?;
    if text {
        let labels: Vec<String> = groups.iter().map(|g| g.label.clone()).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n * 2 + 1)
            .x_label_formatter(&|x| {
                let i = x.floor() as usize;
                if (x - i as f64 - 0.5).abs() < 0.01 {
                    labels.get(i).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_desc(y_label)
            .y_label_formatter(&|v| {
                let v = if log_y { 10f64.powf(*v) } else { *v };
                format!("{v:.3e}")
            })
            .draw()
            .map_err(|e| err(&e))?;
    }
    for (k, name) in names.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let rects: Vec<_> = groups
            .iter()
            .enumerate()
            .filter_map(|(i, g)| {
                let v = g.bars.iter().find(|b| b.0 == *name)?.1;
                let x0 = i as f64 + (k as f64 + 0.5) / slots;
                Some(Rectangle::new(
                    [(x0, y_range.start), (x0 + 1.0 / slots, y(v))],
                    color.filled(),
                ))
            })
            .collect();
        let drawn = chart.draw_series(rects).map_err(|e| err(&e))?;
        if text {
            drawn.label(*name).legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
            });
        }
    }
    if text {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))
}

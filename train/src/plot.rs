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

/// Draws `panels` stacked vertically into a PNG at `path`.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    panels: &[Panel],
) -> Result<(), TrainError> {
    let err =
        |e: &dyn std::fmt::Display| TrainError::Checkpoint(format!("plot {}: {e}", path.display()));
    let text = font_available();
    let height = 300 * panels.len().max(1) as u32 + if text { 40 } else { 0 };
    let root = BitMapBackend::new(path, (900, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = if text {
        root.titled(title, ("sans-serif", 22))
            .map_err(|e| err(&e))?
    } else {
        root
    };
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

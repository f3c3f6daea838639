//! Line charts as PNG (plotters' bitmap backend): throughput against latency, and the cost
//! model's and scale run's figures. Text needs a TrueType font:
//! `LCBFT_FONT`, else a few common system paths; without one the chart is drawn without text
//! (and says so on stderr) rather than failing.

use anyhow::Context;
use plotters::prelude::*;
use std::path::Path;

const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation/LiberationSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
];

/// Register a font as "sans-serif" once; false when none was found.
fn font() -> bool {
    static FOUND: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FOUND.get_or_init(|| {
        let env = std::env::var("LCBFT_FONT").ok();
        let paths = env.iter().map(String::as_str).chain(FONTS.iter().copied());
        for p in paths {
            if let Ok(bytes) = std::fs::read(p) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

/// A colour beside plotters' basic ones (its full palette is a feature left out).
pub const ORANGE: RGBColor = RGBColor(255, 152, 0);

/// One line of a chart: its label, colour, points, and whether it is a prediction (drawn
/// thin, without markers) rather than a measurement.
pub struct Line {
    pub label: String,
    pub color: RGBColor,
    pub points: Vec<(f64, f64)>,
    pub predicted: bool,
}

impl Line {
    pub fn measured(label: impl Into<String>, color: RGBColor, points: Vec<(f64, f64)>) -> Line {
        Line {
            label: label.into(),
            color,
            points,
            predicted: false,
        }
    }

    pub fn predicted(label: impl Into<String>, color: RGBColor, points: Vec<(f64, f64)>) -> Line {
        Line {
            predicted: true,
            ..Line::measured(label, color, points)
        }
    }
}

/// Axis titles of a chart.
pub struct Axes<'a> {
    pub title: &'a str,
    pub x: &'a str,
    pub y: &'a str,
}

/// Draw `lines` on linear axes from 0 into a 900x600 PNG.
pub fn draw(png: &Path, axes: &Axes, lines: &[Line]) -> anyhow::Result<()> {
    let text = font();
    if !text {
        eprintln!(
            "no TrueType font found (set LCBFT_FONT to a .ttf): drawing {} without text",
            png.display()
        );
    }
    let all: Vec<&Line> = lines.iter().filter(|l| !l.points.is_empty()).collect();
    let max_x = all
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .fold(1e-9, f64::max);
    let max_y = all
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(1e-9, f64::max);
    let root = BitMapBackend::new(png, (900, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(20);
    if text {
        builder
            .caption(axes.title, ("sans-serif", 22))
            .x_label_area_size(45)
            .y_label_area_size(70);
    }
    let mut chart = builder.build_cartesian_2d(0.0..max_x * 1.1, 0.0..max_y * 1.15)?;
    let mut mesh = chart.configure_mesh();
    if text {
        mesh.x_desc(axes.x).y_desc(axes.y);
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw()?;
    for line in all {
        let color = line.color;
        let width = if line.predicted { 1 } else { 2 };
        let drawn = chart.draw_series(LineSeries::new(
            line.points.iter().copied(),
            color.stroke_width(width),
        ))?;
        if text {
            drawn.label(line.label.as_str()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(width))
            });
        }
        if !line.predicted {
            chart.draw_series(
                line.points
                    .iter()
                    .map(|p| Circle::new(*p, 4, color.filled())),
            )?;
        }
    }
    if text {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()
        .with_context(|| format!("cannot write {}", png.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_renders_to_a_png() {
        let dir = tempfile::tempdir().expect("tempdir");
        let png = dir.path().join("chart.png");
        let lines = [
            Line::measured("measured", BLUE, vec![(0.0, 2.0), (0.5, 3.1)]),
            Line::predicted("predicted", RED, vec![(0.0, 2.0), (0.5, 3.0)]),
        ];
        let axes = Axes {
            title: "test",
            x: "p",
            y: "phases",
        };
        draw(&png, &axes, &lines).expect("draw");
        let bytes = std::fs::read(&png).expect("png written");
        assert_eq!(&bytes[1..4], b"PNG");
        assert!(bytes.len() > 1000);
    }
}

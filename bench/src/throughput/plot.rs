//! Throughput against latency as a PNG (plotters' bitmap backend). Text needs a TrueType font:
//! `LCBFT_FONT`, else a few common system paths; without one the chart is drawn without text
//! (and says so on stderr) rather than failing.

use anyhow::Context;
use plotters::prelude::*;
use serde_json::Value;
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

/// A line: its label, colour and points.
type Series = (&'static str, RGBColor, Vec<(f64, f64)>);

/// (committed/s, latency ms) for one latency figure of every result.
fn series(results: &[Value], which: &str, q: &str) -> Vec<(f64, f64)> {
    results
        .iter()
        .filter_map(|v| {
            let c = &v["committed_per_s"];
            let x = c["local"].as_f64().unwrap_or(0.0) + c["global"].as_f64().unwrap_or(0.0);
            let y = v["latency_ms"][which][q].as_f64()?;
            Some((x, y))
        })
        .collect()
}

pub fn draw(png: &Path, title: &str, results: &[Value]) -> anyhow::Result<()> {
    let text = font();
    if !text {
        eprintln!(
            "no TrueType font found (set LCBFT_FONT to a .ttf): drawing {} without text",
            png.display()
        );
    }
    let lines = [
        ("local_commit", "p50", "local commit p50", BLUE),
        ("local_commit", "p99", "local commit p99", CYAN),
        ("global_commit", "p50", "global commit p50", RED),
        ("global_commit", "p99", "global commit p99", MAGENTA),
    ];
    let all: Vec<Series> = lines
        .iter()
        .map(|(w, q, label, color)| (*label, *color, series(results, w, q)))
        .filter(|(_, _, s)| !s.is_empty())
        .collect();
    let max_x = all
        .iter()
        .flat_map(|(_, _, s)| s.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let max_y = all
        .iter()
        .flat_map(|(_, _, s)| s.iter().map(|p| p.1))
        .fold(1.0, f64::max);
    let root = BitMapBackend::new(png, (900, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(20);
    if text {
        builder
            .caption(title, ("sans-serif", 22))
            .x_label_area_size(45)
            .y_label_area_size(70);
    }
    let mut chart = builder.build_cartesian_2d(0.0..max_x * 1.1, 0.0..max_y * 1.1)?;
    let mut mesh = chart.configure_mesh();
    if text {
        mesh.x_desc("committed traces/s (local + global)")
            .y_desc("latency from submission (ms)");
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw()?;
    for (label, color, s) in &all {
        let line = chart.draw_series(LineSeries::new(s.iter().copied(), color.stroke_width(2)))?;
        if text {
            line.label(*label).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        }
        chart.draw_series(s.iter().map(|p| Circle::new(*p, 4, color.filled())))?;
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
    fn a_sweep_chart_renders_to_a_png() {
        let dir = tempfile::tempdir().expect("tempdir");
        let png = dir.path().join("sweep.png");
        let results: Vec<Value> = [(100.0, 40.0, 900.0), (400.0, 60.0, 1500.0)]
            .iter()
            .map(|(c, l, g)| {
                serde_json::json!({
                    "committed_per_s": { "local": c, "global": c / 10.0 },
                    "latency_ms": {
                        "local_commit": { "p50": l, "p99": l * 2.0 },
                        "global_commit": { "p50": g, "p99": g * 1.5 },
                    },
                })
            })
            .collect();
        draw(&png, "test", &results).expect("draw");
        let bytes = std::fs::read(&png).expect("png written");
        assert_eq!(&bytes[1..4], b"PNG");
        assert!(bytes.len() > 1000);
    }
}

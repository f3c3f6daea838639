//! `/metrics` output in the format the client asks for. Prometheus asks for OpenMetrics and
//! gets it as prometheus-client writes it. Anyone else (curl, `promtool check metrics`, older
//! scrapers) gets the classic text format 0.0.4, as the Go client does: OpenMetrics names a
//! counter family without its `_total` suffix, which the classic parser reads as a family with
//! no samples next to an untyped sample without help text.

use prometheus_client::registry::Registry;
use std::fmt::Write;

pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Encode `registry` for a client that sent `accept`; returns the content type and the body.
pub fn encode(
    registry: &Registry,
    accept: &str,
) -> Result<(&'static str, String), std::fmt::Error> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)?;
    if accept.contains("application/openmetrics-text") {
        Ok((OPENMETRICS_CONTENT_TYPE, text))
    } else {
        Ok((TEXT_CONTENT_TYPE, to_classic(&text)))
    }
}

/// OpenMetrics text as prometheus-client writes it, in the classic text format: counter and
/// info families take their samples' names, `# UNIT` and `# EOF` go, `unknown` is `untyped`.
pub fn to_classic(open: &str) -> String {
    let mut out = String::with_capacity(open.len() + open.len() / 16);
    // prometheus-client writes HELP, then TYPE (then UNIT), then the samples.
    let mut help: Option<(&str, &str)> = None;
    for line in open.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            help = Some((name, text));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (suffix, kind) = match kind {
                "counter" => ("_total", "counter"),
                "info" => ("_info", "gauge"),
                "unknown" => ("", "untyped"),
                "stateset" | "gaugehistogram" => ("", "untyped"),
                other => ("", other),
            };
            // A name that already ends in the suffix is kept (prometheus-client strips none).
            let full = if name.ends_with(suffix) {
                name.to_owned()
            } else {
                format!("{name}{suffix}")
            };
            if let Some((h, text)) = help.take()
                && h == name
            {
                let _ = writeln!(out, "# HELP {full} {text}");
            }
            let _ = writeln!(out, "# TYPE {full} {kind}");
        } else if line.starts_with("# UNIT ") || line == "# EOF" {
        } else if line.starts_with('#') {
            out.push_str(line);
            out.push('\n');
        } else {
            // Drop exemplars (` # {..} value`), which the classic format has no room for.
            let sample = match line.find(" # ") {
                Some(i) => &line[..i],
                None => line,
            };
            out.push_str(sample);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::metrics::histogram::Histogram;

    #[test]
    fn counters_take_their_sample_names() {
        let mut r = Registry::default();
        let c: Counter = Counter::default();
        c.inc();
        r.register("requests", "Requests served", c);
        let g: Gauge = Gauge::default();
        r.register("height", "Height", g);
        let h = Histogram::new([0.5]);
        h.observe(0.1);
        r.register("wait_seconds", "Waits", h);
        let (ct, classic) = encode(&r, "*/*").expect("encode");
        assert_eq!(ct, TEXT_CONTENT_TYPE);
        assert!(
            classic.contains("# HELP requests_total Requests served.\n# TYPE requests_total counter\nrequests_total 1\n"),
            "{classic}"
        );
        assert!(
            classic.contains("# TYPE height gauge\nheight 0\n"),
            "{classic}"
        );
        assert!(
            classic.contains("wait_seconds_bucket{le=\"0.5\"} 1"),
            "{classic}"
        );
        assert!(!classic.contains("# EOF"));
        let (ct, open) = encode(&r, "application/openmetrics-text;version=1.0.0").expect("encode");
        assert_eq!(ct, OPENMETRICS_CONTENT_TYPE);
        assert!(open.ends_with("# EOF\n"));
    }
}

//! What a run leaves in its directory: the history, the report (the run's summary and the checker's
//! report) and a one-page index linking them with the pictures.

use std::io::Write;
use std::path::Path;

use serde_json::json;

use super::plot::{LATENCY, THROUGHPUT};
use super::{RunError, RunSummary, StepWindow};
use crate::{History, Report};

pub fn write_history(dir: &Path, history: &History) -> Result<(), RunError> {
    let path = dir.join("history.jsonl");
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(&path).map_err(|e| RunError::io(format!("cannot create {}", path.display()), e))?,
    );
    crate::write(history, &mut file)
        .and_then(|()| file.flush())
        .map_err(|e| RunError::io(format!("cannot write {}", path.display()), e))
}

pub fn write(dir: &Path, summary: &RunSummary, report: &Report) -> Result<(), RunError> {
    let path = dir.join("report.json");
    let json = serde_json::to_vec_pretty(&json!({ "run": summary, "check": report })).map_err(std::io::Error::from);
    json.and_then(|json| std::fs::write(&path, json))
        .map_err(|e| RunError::io(format!("cannot write {}", path.display()), e))?;
    let path = dir.join("index.html");
    std::fs::write(&path, index(summary, report))
        .map_err(|e| RunError::io(format!("cannot write {}", path.display()), e))
}

/// One page: the verdict, the run's facts, the pictures, the faults or steps and the checker's text report.
fn index(summary: &RunSummary, report: &Report) -> String {
    let color = if summary.valid { "#1a7f37" } else { "#cf222e" };
    let faults: String = summary
        .faults
        .iter()
        .map(|w| {
            format!(
                "<tr><td>{:.1}</td><td>{:.1}</td><td>{}</td></tr>\n",
                w.start_ns as f64 / 1e9,
                w.end_ns as f64 / 1e9,
                escape(&w.fault)
            )
        })
        .collect();
    let mut facts = vec![
        format!("scenario {}, seed {}", summary.scenario, summary.seed),
        format!("{} brokers, {} partitions, {} s of clients", summary.brokers, summary.partitions, summary.duration_s),
        format!("faults: {:?}", summary.nemesis),
        format!("healed (or workload stopped) at {:.1} s", summary.heal_ns as f64 / 1e9),
    ];
    facts.extend(summary.longest_write_gap.as_ref().map(|g| {
        format!(
            "longest stretch without an acknowledged write: {:.2} s on {}/{} ({} the {:.0} s goal)",
            g.gap_ns as f64 / 1e9,
            g.partition.topic,
            g.partition.partition,
            if g.within_goal { "within" } else { "OVER" },
            g.goal_ns as f64 / 1e9
        )
    }));
    facts.extend(summary.planted.as_ref().map(|bug| format!("planted bug: {bug}")));
    facts.extend(summary.skipped.iter().map(|why| format!("skipped: {why}")));
    facts.extend(summary.broker_exits.iter().map(|e| format!("exited by itself: {e}")));
    facts.extend(
        summary.stuck_partitions.iter().map(|tp| format!("no write after the heal: {}/{}", tp.topic, tp.partition)),
    );
    facts.extend(summary.unfinished_reads.iter().map(|why| format!("final read unfinished: {why}")));
    let facts: String = facts.iter().map(|f| format!("<li>{}</li>", escape(f))).collect();
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>keel-jepsen: {verdict}</title>
<style>body {{ font-family: sans-serif; margin: 2em; }} img {{ max-width: 100%; border: 1px solid #ddd; }}
td {{ padding: 0 1em 0 0; }} pre {{ background: #f6f8fa; padding: 1em; overflow-x: auto; }}</style></head>
<body>
<h1 style="color: {color}">{verdict}</h1>
<ul>{facts}</ul>
<p><a href="history.jsonl">history.jsonl</a> · <a href="report.json">report.json</a> · broker logs and configs: broker-N.log, broker-N.toml</p>
<h2>Latency</h2><img src="{LATENCY}" alt="latency of every operation over time">
<h2>Throughput</h2><img src="{THROUGHPUT}" alt="operations per second over time">
<h2>Faults</h2>
<table><tr><th>from (s)</th><th>to (s)</th><th>fault</th></tr>
{faults}</table>
{steps}
<h2>Checker</h2><pre>{report}</pre>
</body></html>
"#,
        verdict = escape(&summary.verdict),
        report = escape(&report.to_string()),
        steps = steps(&summary.steps),
    )
}

/// The elastic scenario's steps: when, what moved and how long each move took, the longest write gap.
fn steps(steps: &[StepWindow]) -> String {
    if steps.is_empty() {
        return String::new();
    }
    let s = |ns: u64| format!("{:.1}", ns as f64 / 1e9);
    let rows: String = steps
        .iter()
        .map(|step| {
            let moves: Vec<String> = step
                .moves
                .iter()
                .map(|m| {
                    let took = m.took_ns.map_or("unfinished".into(), |ns| format!("{:.2} s", ns as f64 / 1e9));
                    format!("{}/{} {:?} → {:?} {took}", m.topic, m.partition, m.from, m.to)
                })
                .collect();
            let gap = step.longest_write_gap.as_ref().map_or("-".into(), |g| {
                format!(
                    "{:.2} s on {}/{} ({}-{} s)",
                    g.gap_ns as f64 / 1e9,
                    g.partition.topic,
                    g.partition.partition,
                    s(g.from_ns),
                    s(g.to_ns)
                )
            });
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                s(step.start_ns),
                s(step.end_ns),
                escape(&step.step),
                escape(step.unfinished.as_deref().unwrap_or("done")),
                escape(&moves.join("; ")),
                escape(&gap)
            )
        })
        .collect();
    format!(
        "<h2>Steps</h2>\n<table><tr><th>from (s)</th><th>to (s)</th><th>step</th><th>result</th><th>moves (time to finish)</th>\
         <th>longest write gap ended before the next step</th></tr>\n{rows}</table>"
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

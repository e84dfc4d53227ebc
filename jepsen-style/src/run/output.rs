//! What a run leaves in its directory: the history, the report (the run's summary and the checker's
//! report) and a one-page index linking them.

use std::io::Write;
use std::path::Path;

use serde_json::json;

use super::{RunError, RunSummary};
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
        .map_err(|e| RunError::io(format!("cannot write {}", path.display()), e))
}

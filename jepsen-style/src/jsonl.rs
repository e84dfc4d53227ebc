//! Histories as JSON lines: one event per line.

use std::io;

use crate::event::Event;
use crate::history::{History, HistoryError, Validator};

/// A line that is not an event, or an event that cannot extend the history. Lines count from 1.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("line {line}: not an event: {source}")]
    Json { line: usize, source: serde_json::Error },
    #[error("line {line}: {source}")]
    Invalid { line: usize, source: HistoryError },
}

/// Reads a history; blank lines are skipped.
pub fn parse(text: &str) -> Result<History, ParseError> {
    let mut validator = Validator::default();
    let mut events = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line_number = number + 1;
        if line.trim().is_empty() {
            continue;
        }
        let event: Event =
            serde_json::from_str(line).map_err(|source| ParseError::Json { line: line_number, source })?;
        validator.accept(&event).map_err(|source| ParseError::Invalid { line: line_number, source })?;
        events.push(event);
    }
    Ok(History::from_validated(events))
}

/// Writes one line per event.
pub fn write(history: &History, out: &mut impl io::Write) -> io::Result<()> {
    for event in history.events() {
        serde_json::to_writer(&mut *out, event)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

//! The broker's logger: readable lines by default, JSON lines on request;
//! the level from the configuration or the `KEEL_LOG` environment variable.

use std::str::FromStr;
use std::sync::Mutex;

use slog::{o, Drain, Level, LevelFilter, Logger};

use crate::config::LogFormat;

pub fn logger(level: &str, format: LogFormat) -> Result<Logger, String> {
    let level = std::env::var("KEEL_LOG").unwrap_or_else(|_| level.to_string());
    let level = Level::from_str(&level)
        .map_err(|_| format!("unknown log level {level:?}: use critical, error, warning, info, debug or trace"))?;
    let logger = match format {
        LogFormat::Text => {
            let decorator = slog_term::PlainSyncDecorator::new(std::io::stderr());
            let drain = slog_term::FullFormat::new(decorator).build();
            Logger::root(LevelFilter::new(drain, level).fuse(), o!())
        }
        LogFormat::Json => {
            let drain = slog_json::Json::default(std::io::stderr());
            Logger::root(LevelFilter::new(Mutex::new(drain), level).fuse(), o!())
        }
    };
    Ok(logger)
}

//! A simulation's trace: every log line of every broker, stamped with the
//! simulated time, in one buffer. The same seed on the same build must give
//! the same bytes; that is how determinism is checked.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use slog::{o, Drain, Logger};

/// The shared buffer the trace is written to.
#[derive(Clone, Default)]
pub struct Trace {
    bytes: Arc<Mutex<Vec<u8>>>,
}

impl Trace {
    /// A logger whose lines go to this trace, at debug level and above.
    pub fn logger(&self) -> Logger {
        self.logger_at(slog::Level::Debug)
    }

    /// A logger whose lines go to this trace, at `level` and above.
    pub fn logger_at(&self, level: slog::Level) -> Logger {
        let decorator = slog_term::PlainSyncDecorator::new(self.clone());
        let drain = slog_term::FullFormat::new(decorator).use_custom_timestamp(simulated_time).build();
        Logger::root(slog::LevelFilter::new(drain, level).fuse(), o!())
    }

    /// Appends text as it is (the header, the verdict).
    pub fn append(&self, text: &str) {
        self.bytes.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(text.as_bytes());
    }

    /// Everything written so far.
    pub fn contents(&self) -> Vec<u8> {
        self.bytes.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl io::Write for Trace {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bytes.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Simulated time since the start of the run, in place of the wall clock.
fn simulated_time(out: &mut dyn io::Write) -> io::Result<()> {
    #[cfg(madsim)]
    let elapsed = madsim::time::TimeHandle::current().elapsed();
    #[cfg(not(madsim))]
    let elapsed = std::time::Duration::ZERO;
    write!(out, "{:>10.3}", elapsed.as_secs_f64())
}

//! Log set-up: JSON lines by default, text for humans; level from
//! `RUST_LOG` (default `info`).
//!
//! Lines go to stderr through a bounded queue drained by a thread of its
//! own, so a slow reader of stderr (a full pipe, a stalled log shipper)
//! never blocks a worker thread: when the queue is full, lines are dropped
//! and counted instead.

use std::sync::OnceLock;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

/// Lines queued for stderr before new ones are dropped; override with
/// `IDP_GATE_LOG_BUFFER_LINES`.
const DEFAULT_BUFFER_LINES: usize = 16_384;

static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    #[default]
    Json,
    /// Human-readable text.
    Text,
}

/// Installs the global subscriber. Keep the guard until exit: dropping it
/// flushes what is queued. Safe to call twice (the second call is a no-op
/// and returns `None`).
pub fn init(format: LogFormat) -> Option<WorkerGuard> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let lines = std::env::var("IDP_GATE_LOG_BUFFER_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_BUFFER_LINES);
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(lines)
        .thread_name("idp-gate-log")
        // The thread flushes after each batch it drains: under load one
        // write carries many lines instead of one system call per line.
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ));
    let counter = writer.error_counter();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let installed = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    if installed.is_err() {
        return None;
    }
    let _ = DROPPED.set(counter);
    Some(guard)
}

/// Log lines dropped so far because stderr could not keep up.
pub fn dropped_lines() -> u64 {
    DROPPED.get().map_or(0, |c| c.dropped_lines() as u64)
}

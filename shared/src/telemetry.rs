//! Logging setup shared by the functions and the trainer.

use tracing_subscriber::EnvFilter;

/// Installs JSON logs on standard output, filtered by `RUST_LOG` (default `info`).
///
/// Lambda sends standard output to CloudWatch Logs; the JSON lines carry the
/// fields each log call records, such as the user and item ids.
pub fn init_json_logs() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().json().with_env_filter(filter).with_current_span(false).without_time().try_init();
}

/// Installs plain, human-readable logs on standard error for command-line tools.
pub fn init_text_logs() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

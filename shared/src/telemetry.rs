//! Logging setup shared by the functions and the trainer.

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Builds the functions' JSON log subscriber writing to `writer`.
///
/// Each line contains the fields its log call records, such as the user and
/// item ids. Under `span` it contains the Lambda request id (`requestId`) of
/// the runtime's invoke span.
pub fn json_subscriber<W>(filter: EnvFilter, writer: W) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .without_time()
        .with_writer(writer)
        .finish()
}

/// Installs JSON logs on standard output, filtered by `RUST_LOG` (default
/// `info`). Lambda sends standard output to CloudWatch Logs.
pub fn init_json_logs() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = json_subscriber(filter, std::io::stdout).try_init();
}

/// Installs plain, human-readable logs on standard error for command-line tools.
pub fn init_text_logs() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_logs_carry_request_id() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = json_subscriber(EnvFilter::new("info"), move || writer.clone());

        tracing::subscriber::with_default(subscriber, || {
            // The span lambda_runtime opens around each invocation.
            let span = tracing::info_span!("Lambda runtime invoke", requestId = "request-7");
            let _entered = span.enter();
            tracing::info!(user_id = "17850", "served recommendations");
        });

        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.lines().next().expect("one log line")).unwrap();
        assert_eq!(line["span"]["requestId"], "request-7", "{text}");
        assert_eq!(line["fields"]["user_id"], "17850", "{text}");
        assert_eq!(line["fields"]["message"], "served recommendations");
    }
}

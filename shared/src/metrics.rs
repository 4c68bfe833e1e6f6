//! Per-request metrics in CloudWatch Embedded Metric Format (EMF). After each
//! request the functions print one JSON document per dimension set to standard
//! output, and CloudWatch Logs turns them into metrics in the `shoprec`
//! namespace with the function and the model version as dimensions.

use std::sync::atomic::{AtomicUsize, Ordering};

use metrics::Unit;
use metrics_cloudwatch_embedded::Collector;

use crate::error::{Error, Result};
use crate::recommend::Scorer;

/// CloudWatch namespace of the functions' metrics.
pub const NAMESPACE: &str = "shoprec";

/// Names of the metrics, as the dashboard in template.yaml reads them.
pub mod names {
    /// Handler time of a request, in milliseconds.
    pub const LATENCY: &str = "Latency";
    /// Candidates the ranker scored for a request.
    pub const CANDIDATES_SCORED: &str = "CandidatesScored";
    /// Item reads served from the function's cache.
    pub const CACHE_HITS: &str = "CacheHits";
    /// Item reads that went to DynamoDB.
    pub const CACHE_MISSES: &str = "CacheMisses";
    /// Recommendation requests served from popular items.
    pub const FALLBACKS: &str = "Fallbacks";
    /// Requests that got a 5xx status.
    pub const ERRORS: &str = "Errors";
    /// Requests that got a 4xx status.
    pub const CLIENT_ERRORS: &str = "ClientErrors";
    /// Peak resident memory of the function's process, in MiB.
    pub const PEAK_RSS: &str = "PeakRss";
}

/// Installs the process-wide EMF recorder with the function name as a dimension.
///
/// Call it once per process: the `metrics` crate takes one global recorder.
pub fn init_metrics(function: &'static str) -> Result<&'static Collector> {
    let collector = metrics_cloudwatch_embedded::Builder::new()
        .cloudwatch_namespace(NAMESPACE)
        .with_dimension("Function", function)
        .init()
        .map_err(|error| Error::Config { name: "metrics".into(), reason: format!("the EMF recorder failed to start: {error}") })?;

    metrics::describe_histogram!(names::LATENCY, Unit::Milliseconds, "handler time of a request");
    metrics::describe_counter!(names::CANDIDATES_SCORED, Unit::Count, "candidates the ranker scored");
    metrics::describe_counter!(names::CACHE_HITS, Unit::Count, "item reads served from the cache");
    metrics::describe_counter!(names::CACHE_MISSES, Unit::Count, "item reads that went to DynamoDB");
    metrics::describe_counter!(names::FALLBACKS, Unit::Count, "requests answered with popular items");
    metrics::describe_counter!(names::ERRORS, Unit::Count, "requests answered with a 5xx status");
    metrics::describe_counter!(names::CLIENT_ERRORS, Unit::Count, "requests answered with a 4xx status");
    metrics::describe_gauge!(names::PEAK_RSS, Unit::Mebibytes, "peak resident memory of the process");
    Ok(collector)
}

/// Writes the metrics recorded since the last flush as EMF documents, one per
/// line, with the request id and path as properties.
pub fn flush_request_metrics(collector: &Collector, request_id: &str, path: &str, writer: impl std::io::Write) -> std::io::Result<()> {
    collector.set_property("RequestId", request_id.to_string()).set_property("Path", path.to_string());
    collector.flush(writer)
}

/// Returns the peak resident memory of this process in MiB, from the
/// `VmHWM` line of `/proc/self/status`, or None where that file does not exist.
pub fn peak_rss_mebibytes() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kilobytes: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kilobytes / 1024.0)
}

/// A scorer that counts the rows it scores, for the candidates metric.
pub struct CountingScorer<'a> {
    inner: &'a dyn Scorer,
    rows: AtomicUsize,
}

impl<'a> CountingScorer<'a> {
    /// Wraps a scorer with a count of zero.
    pub fn new(inner: &'a dyn Scorer) -> Self {
        CountingScorer { inner, rows: AtomicUsize::new(0) }
    }

    /// Returns the rows scored so far.
    pub fn rows(&self) -> usize {
        self.rows.load(Ordering::Relaxed)
    }
}

impl Scorer for CountingScorer<'_> {
    fn score(&self, features: &[f32], rows: usize) -> Result<Vec<f32>> {
        self.rows.fetch_add(rows, Ordering::Relaxed);
        self.inner.score(features, rows)
    }
}

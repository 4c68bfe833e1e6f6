//! Batch recommendations: the top items for every known user of the active
//! model version, written to S3 as JSON Lines, like a batch inference job.

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::artifacts::{ArtifactStore, ModelBundle};
use crate::error::{Error, Result};
use crate::preferences::user_history;
use crate::recommend::{serve, CandidateLimits, Recommendation};
use crate::store::DynamoStore;

/// Users whose events are read at once.
const EVENT_READ_CONCURRENCY: usize = 16;

/// One line of the output file.
#[derive(Debug, Serialize)]
pub struct BatchLine<'a> {
    pub user_id: &'a str,
    pub model_version: &'a str,
    /// "popular" when the user had nothing to rank from.
    pub fallback: Option<&'static str>,
    pub recommendations: Vec<Recommendation>,
}

/// Summary of a batch run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchReport {
    pub model_version: String,
    pub users: usize,
    pub fallbacks: usize,
    pub bucket: String,
    pub key: String,
    pub bytes: usize,
}

/// Returns the default output key of a batch run for a model version.
pub fn default_batch_key(model_version: &str, started_at: chrono::DateTime<chrono::Utc>) -> String {
    format!("batch/{model_version}/recommendations-{}.jsonl", started_at.format("%Y%m%dT%H%M%SZ"))
}

/// Ranks `top` items for every user with a trained profile, with the events they
/// sent since, through the same path as the inference function, and uploads the
/// lines to `key`. `progress` is called with the number of users done so far.
pub async fn write_batch_recommendations(
    store: &DynamoStore,
    artifacts: &ArtifactStore,
    bundle: &ModelBundle,
    limits: CandidateLimits,
    top: usize,
    key: &str,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<BatchReport> {
    let ranker =
        bundle.ranker.as_ref().ok_or_else(|| Error::Ranker("the batch job needs the ONNX ranker: load the bundle with it".into()))?;
    let model_version = bundle.model_version();
    let mut profiles = store.list_profiles(model_version).await?;
    profiles.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    let total = profiles.len();
    progress(0, total);

    let mut output = Vec::new();
    let mut fallbacks = 0;
    let mut done = 0;
    let mut with_events = futures::stream::iter(profiles.iter())
        .map(|profile| async move { store.live_activity(&profile.user_id).await.map(|live| (profile, live)) })
        .buffered(EVENT_READ_CONCURRENCY);
    while let Some((profile, live)) = with_events.try_next().await? {
        let history = user_history(Some(profile), &live);
        let served = serve(&bundle.data, &history, ranker, limits, top)?;
        fallbacks += usize::from(served.fallback.is_some());
        let line =
            BatchLine { user_id: &profile.user_id, model_version, fallback: served.fallback, recommendations: served.recommendations };
        serde_json::to_writer(&mut output, &line).expect("batch lines serialise");
        output.push(b'\n');
        done += 1;
        if done % 100 == 0 || done == total {
            progress(done, total);
        }
    }

    let bytes = output.len();
    artifacts.put(key, output, "application/x-ndjson").await?;
    tracing::info!(model_version, users = total, fallbacks, key, bytes, "wrote batch recommendations");
    Ok(BatchReport {
        model_version: model_version.to_string(),
        users: total,
        fallbacks,
        bucket: artifacts.bucket().to_string(),
        key: key.to_string(),
        bytes,
    })
}

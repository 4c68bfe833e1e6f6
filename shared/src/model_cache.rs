//! Keeps the active model version in memory across warm invocations.
//!
//! A request within the refresh interval reads nothing remote. After it, one
//! strongly consistent DynamoDB read shows whether the active version changed,
//! and S3 is read only when it did.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::artifacts::{ArtifactStore, BundleParts, ModelBundle};
use crate::error::{Error, Result};
use crate::store::DynamoStore;

#[derive(Default)]
struct CacheState {
    current: Option<Arc<ModelBundle>>,
    checked_at: Option<Instant>,
}

/// The active model bundle with a refresh interval.
pub struct ModelCache {
    store: DynamoStore,
    artifacts: ArtifactStore,
    parts: BundleParts,
    refresh: Duration,
    state: Mutex<CacheState>,
}

impl ModelCache {
    /// Creates an empty cache; the first [`ModelCache::get`] loads the model.
    pub fn new(store: DynamoStore, artifacts: ArtifactStore, parts: BundleParts, refresh: Duration) -> Self {
        ModelCache { store, artifacts, parts, refresh, state: Mutex::new(CacheState::default()) }
    }

    /// Returns the active model bundle, loading a new version when one was published.
    ///
    /// When loading a new version fails, the last good bundle keeps serving and the
    /// error is logged; without any bundle the error is returned.
    pub async fn get(&self) -> Result<Arc<ModelBundle>> {
        let mut state = self.state.lock().await;
        if let (Some(current), Some(checked_at)) = (&state.current, state.checked_at) {
            if checked_at.elapsed() < self.refresh {
                return Ok(current.clone());
            }
        }

        match self.refresh_bundle(state.current.as_deref()).await {
            Ok(Some(bundle)) => {
                tracing::info!(model_version = bundle.model_version(), "loaded model version");
                state.current = Some(Arc::new(bundle));
                state.checked_at = Some(Instant::now());
            }
            Ok(None) => state.checked_at = Some(Instant::now()),
            Err(error) => {
                // TODO: back off between failed loads while no version is loaded; until
                // then every request downloads the broken version again before its 503.
                let Some(current) = &state.current else { return Err(error) };
                tracing::error!(%error, serving_model_version = current.model_version(), "model refresh failed; keeping the loaded version");
                // Retry on a later request instead of on every one.
                state.checked_at = Some(Instant::now());
            }
        }
        state.current.clone().ok_or(Error::NoActiveModel)
    }

    async fn refresh_bundle(&self, current: Option<&ModelBundle>) -> Result<Option<ModelBundle>> {
        let active = self.store.active_model().await?.ok_or(Error::NoActiveModel)?;
        if current.is_some_and(|bundle| bundle.model_version() == active.model_version) {
            return Ok(None);
        }
        self.artifacts.load_bundle(&active, self.parts).await.map(Some)
    }
}

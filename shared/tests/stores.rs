//! DynamoDB and S3 integration tests through the real AWS SDK against the local stack.

mod common;

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use shoprec::artifacts::BundleParts;
use shoprec::model::{artifact_key, files};
use shoprec::model_cache::ModelCache;
use shoprec::preferences::{EventType, StoredEvent};
use shoprec::store::ActiveModel;
use shoprec::Error;

use common::{local_stack, publish_synthetic};

fn event(event_id: &str) -> StoredEvent {
    StoredEvent {
        user_id: "u-1".into(),
        event_id: event_id.into(),
        event_type: EventType::Purchase,
        item_id: "85123A".into(),
        quantity: 2,
        timestamp: 1_323_432_000,
        received_at: 1_323_432_001,
    }
}

#[tokio::test]
async fn put_event_is_idempotent() {
    let stack = local_stack("idempotent").await;

    assert!(stack.store.put_event(&event("e-1")).await.unwrap());
    let mut changed = event("e-1");
    changed.quantity = 9;
    assert!(!stack.store.put_event(&changed).await.unwrap());
    assert!(stack.store.put_event(&event("e-2")).await.unwrap());

    let stored = stack.store.list_events("u-1").await.unwrap();
    assert_eq!(stored.len(), 2);
    let first = stored.iter().find(|e| e.event_id == "e-1").unwrap();
    assert_eq!(first.quantity, 2, "a duplicate overwrote the stored event");
}

#[tokio::test]
async fn list_events_reads_every_page() {
    let stack = local_stack("pages").await;
    for index in 0..150 {
        let mut stored = event(&format!("e-{index:03}"));
        stored.item_id = "X".repeat(4_000);
        stack.store.put_event(&stored).await.unwrap();
    }
    // 150 events of about 4 KB exceed the 1 MB page size of a Query.
    assert_eq!(stack.store.list_events("u-1").await.unwrap().len(), 150);
}

fn active(version: &str) -> ActiveModel {
    ActiveModel {
        model_version: version.into(),
        manifest_key: format!("models/{version}/manifest.json"),
        manifest_sha256: "0".repeat(64),
        published_at: "2026-01-01T00:00:00Z".into(),
    }
}

#[tokio::test]
async fn switch_active_model_is_conditional() {
    let stack = local_stack("switch").await;

    stack.store.switch_active_model(&active("v1"), None).await.unwrap();
    let conflict = stack.store.switch_active_model(&active("v2"), None).await;
    match conflict {
        Err(Error::PublishConflict { expected, found }) => {
            assert_eq!(expected, None);
            assert_eq!(found.as_deref(), Some("v1"));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let stale = stack.store.switch_active_model(&active("v3"), Some("v0")).await;
    assert!(matches!(stale, Err(Error::PublishConflict { .. })));

    stack.store.switch_active_model(&active("v2"), Some("v1")).await.unwrap();
    assert_eq!(stack.store.active_model().await.unwrap().unwrap().model_version, "v2");
}

#[tokio::test]
async fn publish_writes_manifest_and_activates() {
    let stack = local_stack("publish").await;
    let report = publish_synthetic(&stack).await;

    let active = stack.store.active_model().await.unwrap().unwrap();
    assert_eq!(active.model_version, report.model_version);
    let bundle = stack.artifacts.load_bundle(&active, BundleParts { neighbours: true, ranker: true, embeddings: true }).await.unwrap();
    assert_eq!(bundle.manifest.files.len(), 7);
    assert_eq!(bundle.data.catalogue().len(), 12);
    assert!(bundle.ranker.is_some());
    assert_eq!(bundle.manifest.ranker.features.len(), shoprec::recommend::FEATURE_COUNT);
    let embeddings = bundle.data.embeddings().expect("the inference parts include the embeddings");
    assert_eq!(embeddings.len(), 12);
    let contract = bundle.manifest.embeddings.as_ref().unwrap();
    assert_eq!(contract.users, 60);
    let user_ids = stack.artifacts.get(&shoprec::model::artifact_key(&report.model_version, &contract.user_ids_file)).await.unwrap();
    let user_ids: Vec<String> = serde_json::from_slice(&user_ids).unwrap();
    assert_eq!(user_ids.len(), 60);
    let user_vectors = stack.artifacts.get(&shoprec::model::artifact_key(&report.model_version, &contract.user_file)).await.unwrap();
    assert_eq!(user_vectors.len(), 60 * contract.settings.factors * 4);

    let item = stack.store.get_item(&report.model_version, "85123A").await.unwrap().unwrap();
    assert_eq!(item.title, "WHITE HANGING HEART T-LIGHT HOLDER");
    assert!(!item.neighbours.is_empty());

    let second = publish_synthetic(&stack).await;
    assert_eq!(second.previous_version.as_deref(), Some(report.model_version.as_str()));
}

async fn overwrite(stack: &common::LocalStack, key: &str, bytes: Vec<u8>) {
    stack.s3.put_object().bucket(stack.artifacts.bucket()).key(key).body(ByteStream::from(bytes)).send().await.unwrap();
}

#[tokio::test]
async fn tampered_artifact_is_rejected() {
    let stack = local_stack("tamper").await;
    let report = publish_synthetic(&stack).await;
    let active = stack.store.active_model().await.unwrap().unwrap();
    let parts = BundleParts { neighbours: true, ranker: true, embeddings: true };

    let key = artifact_key(&report.model_version, files::CATALOGUE);
    let mut bytes = stack.artifacts.get(&key).await.unwrap();
    bytes[10] ^= 1;
    overwrite(&stack, &key, bytes.clone()).await;
    match stack.artifacts.load_bundle(&active, parts).await {
        Err(Error::InvalidArtifact { key: reported, reason, model_version }) => {
            assert_eq!(reported, key);
            assert_eq!(model_version, report.model_version);
            assert!(reason.contains("sha256"), "{reason}");
        }
        other => panic!("expected an invalid artifact, got {other:?}"),
    }

    bytes.truncate(bytes.len() / 2);
    overwrite(&stack, &key, bytes).await;
    match stack.artifacts.load_bundle(&active, parts).await {
        Err(Error::InvalidArtifact { reason, .. }) => assert!(reason.contains("size"), "{reason}"),
        other => panic!("expected an invalid artifact, got {other:?}"),
    }
}

#[tokio::test]
async fn cache_keeps_last_good_version() {
    let stack = local_stack("lastgood").await;
    let first = publish_synthetic(&stack).await;
    let parts = BundleParts { neighbours: true, ranker: true, embeddings: true };
    let cache = ModelCache::new(stack.store.clone(), stack.artifacts.clone(), parts, Duration::ZERO);
    assert_eq!(cache.get().await.unwrap().model_version(), first.model_version);

    let second = publish_synthetic(&stack).await;
    let key = artifact_key(&second.model_version, files::NEIGHBOURS);
    overwrite(&stack, &key, b"{}".to_vec()).await;

    let served = cache.get().await.unwrap();
    assert_eq!(served.model_version(), first.model_version, "a broken version replaced the good one");
}

#[tokio::test]
async fn cache_picks_up_new_version() {
    let stack = local_stack("newversion").await;
    publish_synthetic(&stack).await;
    let parts = BundleParts { neighbours: false, ranker: false, embeddings: false };
    let cache = ModelCache::new(stack.store.clone(), stack.artifacts.clone(), parts, Duration::ZERO);
    cache.get().await.unwrap();

    let second = publish_synthetic(&stack).await;
    assert_eq!(cache.get().await.unwrap().model_version(), second.model_version);
}

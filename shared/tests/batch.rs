//! The batch job ranks every known user of the active model version and writes
//! JSON Lines to the S3 emulator through the real SDK.

mod common;

use std::sync::Mutex;

use serde_json::Value;
use shoprec::artifacts::BundleParts;
use shoprec::batch::write_batch_recommendations;
use shoprec::preferences::{EventType, StoredEvent};
use shoprec::recommend::CandidateLimits;

use common::{local_stack, publish_synthetic};

#[tokio::test(flavor = "multi_thread")]
async fn batch_writes_one_line_per_user() {
    let stack = local_stack("batch").await;
    let report = publish_synthetic(&stack).await;

    // A purchase sent after training must leave the user's batch line.
    let active = stack.store.active_model().await.unwrap().unwrap();
    let bundle = stack.artifacts.load_bundle(&active, BundleParts { neighbours: true, ranker: true, embeddings: true }).await.unwrap();
    let before = shoprec::recommend::serve(
        &bundle.data,
        &shoprec::preferences::user_history(
            stack.store.get_profile(&report.model_version, "17850").await.unwrap().as_ref(),
            &shoprec::live_profile::LiveProfile::new("17850"),
        ),
        bundle.ranker.as_ref().unwrap(),
        CandidateLimits::default(),
        1,
    )
    .unwrap();
    let bought_now = before.recommendations[0].item_id.clone();
    let event = StoredEvent {
        user_id: "17850".into(),
        event_id: "batch-purchase".into(),
        event_type: EventType::Purchase,
        item_id: bought_now.clone(),
        quantity: 1,
        timestamp: 1_323_432_000,
        received_at: 1_323_432_000,
    };
    assert!(stack.store.put_event(&event).await.unwrap());

    let calls = Mutex::new(Vec::new());
    let progress = |done: usize, total: usize| calls.lock().unwrap().push((done, total));
    let key = "batch/test/recommendations.jsonl";
    let batch =
        write_batch_recommendations(&stack.store, &stack.artifacts, &bundle, CandidateLimits::default(), 5, key, &progress).await.unwrap();
    assert_eq!(batch.users, 60);
    assert_eq!(batch.model_version, report.model_version);
    assert_eq!(calls.lock().unwrap().last(), Some(&(60, 60)));

    let bytes = stack.artifacts.get(key).await.unwrap();
    assert_eq!(bytes.len(), batch.bytes);
    let lines: Vec<Value> = String::from_utf8(bytes).unwrap().lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(lines.len(), 60);
    let mut users: Vec<&str> = lines.iter().map(|line| line["user_id"].as_str().unwrap()).collect();
    users.dedup();
    assert_eq!(users.len(), 60, "every user has exactly one line");
    // The shop has 12 items, so a user who bought most of them gets fewer than 5.
    for line in &lines {
        assert_eq!(line["model_version"], report.model_version.as_str());
        assert!(line["recommendations"].as_array().unwrap().len() <= 5, "{line}");
    }
    let full_lists = lines.iter().filter(|line| line["recommendations"].as_array().unwrap().len() == 5).count();
    assert!(full_lists > 30, "only {full_lists} of 60 users got 5 recommendations");

    let user = lines.iter().find(|line| line["user_id"] == "17850").unwrap();
    let items: Vec<&str> = user["recommendations"].as_array().unwrap().iter().map(|r| r["item_id"].as_str().unwrap()).collect();
    assert!(!items.contains(&bought_now.as_str()), "{bought_now}, bought after training, is still recommended: {items:?}");
}

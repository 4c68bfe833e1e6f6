//! The live-profile stream function against DynamoDB Local: events posted
//! through the API are read back from the events table's real stream, turned
//! into the batches Lambda delivers, and applied. Replays change nothing, a bad
//! record is reported alone, and responses stay the same once the stream catches up.

mod common;

use std::time::Duration;

use aws_lambda_events::event::dynamodb::Event;
use aws_sdk_dynamodbstreams::types::ShardIteratorType;
use lambda_http::Body;
use serde_json::{json, Value};
use shoprec::config::load_sdk_config;
use shoprec::handlers::{handle, AppState, Function};
use shoprec::live_profile::LiveProfile;
use shoprec::store::DynamoStore;
use shoprec::stream::{apply_pending_events, apply_stream_batch, ApplyReport};

use common::{get_request, local_stack, post_request, publish_synthetic, LocalStack};

const USER: &str = "17850";

/// Events of one visit, sent in an order that differs from their time stamps.
fn visit_events() -> Value {
    json!({"events": [
        {"event_id": "s-1", "type": "view", "item_id": "22423", "timestamp": "2011-12-10T09:00:00Z"},
        {"event_id": "s-2", "type": "purchase", "item_id": "22697", "quantity": 3, "timestamp": "2011-12-10T09:30:00Z"},
        {"event_id": "s-3", "type": "view", "item_id": "85099B", "timestamp": "2011-12-01T08:00:00Z"},
        {"event_id": "s-4", "type": "add_to_cart", "item_id": "22386", "timestamp": "2011-12-10T09:10:00Z"},
        {"event_id": "s-5", "type": "purchase", "item_id": "22423", "timestamp": "2011-11-20T10:00:00Z"}
    ]})
}

async fn call(state: &AppState, request: lambda_http::Request) -> (u16, Value) {
    let response = handle(state, request).await;
    let body = match response.body() {
        Body::Text(text) => serde_json::from_str(text).unwrap(),
        other => panic!("expected text, got {other:?}"),
    };
    (response.status().as_u16(), body)
}

async fn post_visit(stack: &LocalStack) {
    let state = stack.app(Function::Preferences, Duration::from_secs(60));
    let (status, body) = call(&state, post_request(&format!("/users/{USER}/events"), &visit_events().to_string())).await;
    assert_eq!(status, 201, "{body}");
}

/// Reads every record of the events table's stream from its start and returns
/// them as the batch Lambda would deliver, in the `aws_lambda_events` shape.
async fn read_stream(stack: &LocalStack) -> Event {
    let table = stack.dynamodb.describe_table().table_name(&stack.store.tables().events).send().await.unwrap();
    let stream_arn = table.table.unwrap().latest_stream_arn.expect("the events table has a stream");

    let sdk_config = load_sdk_config().await;
    let endpoint = std::env::var("AWS_ENDPOINT_URL_DYNAMODB").unwrap();
    let streams = aws_sdk_dynamodbstreams::Client::from_conf(
        aws_sdk_dynamodbstreams::config::Builder::from(&sdk_config).endpoint_url(endpoint).build(),
    );

    let description = streams.describe_stream().stream_arn(&stream_arn).send().await.unwrap();
    let shards = description.stream_description.unwrap().shards.unwrap_or_default();
    let mut records = Vec::new();
    for shard in shards {
        let mut iterator = streams
            .get_shard_iterator()
            .stream_arn(&stream_arn)
            .shard_id(shard.shard_id.unwrap())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator;
        // An open shard always returns a next iterator, so stop at the first empty page.
        while let Some(current) = iterator {
            let page = streams.get_records().shard_iterator(current).send().await.unwrap();
            let page_records = page.records.unwrap_or_default();
            if page_records.is_empty() {
                break;
            }
            records.extend(page_records.into_iter().map(|record| lambda_record(&stream_arn, record)));
            iterator = page.next_shard_iterator;
        }
    }
    serde_json::from_value(json!({ "Records": records })).expect("stream records in the Lambda event shape")
}

/// Converts one DynamoDB Streams record to the JSON Lambda delivers for it.
fn lambda_record(stream_arn: &str, record: aws_sdk_dynamodbstreams::types::Record) -> Value {
    let change = record.dynamodb.unwrap();
    let image = |map: Option<std::collections::HashMap<String, aws_sdk_dynamodbstreams::types::AttributeValue>>| {
        serde_json::to_value(serde_dynamo::Item::from(map.unwrap_or_default())).unwrap()
    };
    json!({
        "eventID": record.event_id.unwrap(),
        "eventName": record.event_name.unwrap().as_str(),
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "eu-west-1",
        "eventSourceARN": stream_arn,
        "dynamodb": {
            "ApproximateCreationDateTime": change.approximate_creation_date_time.map(|time| time.secs()).unwrap_or_default(),
            "Keys": image(change.keys),
            "NewImage": image(change.new_image),
            "SequenceNumber": change.sequence_number.unwrap(),
            "SizeBytes": change.size_bytes.unwrap_or_default(),
            "StreamViewType": "NEW_IMAGE"
        }
    })
}

fn inserts(event: &Event) -> usize {
    event.records.iter().filter(|record| record.event_name == "INSERT").count()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Folds the stored events in directly, as the expected live profile.
async fn expected_profile(stack: &LocalStack) -> LiveProfile {
    let events = stack.store.list_events(USER).await.unwrap();
    LiveProfile::new(USER).with_pending(&events)
}

#[tokio::test]
async fn stream_batch_updates_live_profile() {
    let stack = local_stack("stream-apply").await;
    publish_synthetic(&stack).await;
    post_visit(&stack).await;
    let preferences = stack.app(Function::Preferences, Duration::from_secs(60));
    let inference = stack.app(Function::Inference, Duration::from_secs(60));
    let preferences_path = format!("/users/{USER}/preferences");
    let recommendations_path = format!("/users/{USER}/recommendations");
    let (_, preferences_before) = call(&preferences, get_request(&preferences_path, "")).await;
    let (_, recommendations_before) = call(&inference, get_request(&recommendations_path, "limit=10")).await;

    let batch = read_stream(&stack).await;
    assert_eq!(inserts(&batch), 5, "one INSERT record per posted event");
    let (response, report) = apply_stream_batch(&stack.store, batch, now()).await;

    assert!(response.batch_item_failures.is_empty(), "{:?}", response.batch_item_failures);
    assert_eq!(report, ApplyReport { applied: 5, ..ApplyReport::default() });
    let live = stack.store.get_live_profile(USER).await.unwrap().expect("a live profile");
    let expected = expected_profile(&stack).await;
    assert_eq!(live.items, expected.items);
    assert_eq!(live.events, expected.events);
    assert_eq!(live.purchase_times, expected.purchase_times);
    assert_eq!(live.revision, 5);
    assert!(stack.store.list_pending_events(USER).await.unwrap().is_empty(), "every event is marked as applied");

    // Requests read the same history before and after the stream catches up.
    let (_, preferences_after) = call(&preferences, get_request(&preferences_path, "")).await;
    let (_, recommendations_after) = call(&inference, get_request(&recommendations_path, "limit=10")).await;
    assert_eq!(preferences_after, preferences_before);
    assert_eq!(recommendations_after, recommendations_before);
    assert_eq!(preferences_after["events"], json!({"view": 2, "add_to_cart": 1, "purchase": 2}));
    assert_eq!(preferences_after["last_activity"], "2011-12-10T09:30:00Z", "the latest time stamp wins, not the last event sent");
}

#[tokio::test]
async fn replayed_batch_changes_nothing() {
    let stack = local_stack("stream-replay").await;
    post_visit(&stack).await;
    let batch = read_stream(&stack).await;
    let (_, first) = apply_stream_batch(&stack.store, batch.clone(), now()).await;
    assert_eq!(first.applied, 5);
    let applied = stack.store.get_live_profile(USER).await.unwrap().unwrap();

    let (response, replay) = apply_stream_batch(&stack.store, batch, now()).await;

    assert!(response.batch_item_failures.is_empty());
    assert_eq!(replay, ApplyReport { already_applied: 5, ..ApplyReport::default() });
    assert_eq!(stack.store.get_live_profile(USER).await.unwrap().unwrap(), applied);

    // Marking the events as applied added MODIFY records, which are ignored.
    let with_modifications = read_stream(&stack).await;
    assert_eq!(with_modifications.records.len(), 10);
    let (_, report) = apply_stream_batch(&stack.store, with_modifications, now()).await;
    assert_eq!(report, ApplyReport { already_applied: 5, ignored: 5, ..ApplyReport::default() });
    assert_eq!(stack.store.get_live_profile(USER).await.unwrap().unwrap(), applied);
}

#[tokio::test]
async fn replay_after_restart_skips_applied() {
    let stack = local_stack("stream-restart").await;
    post_visit(&stack).await;
    let batch = read_stream(&stack).await;
    let (_, first) = apply_stream_batch(&stack.store, batch.clone(), now()).await;
    assert_eq!(first.applied, 5);
    let applied = stack.store.get_live_profile(USER).await.unwrap().unwrap();

    // A profile that forgot its recent ids makes the store's mark on each event the only guard.
    let mut forgetful = applied.clone();
    forgetful.recent_event_ids.clear();
    let next = forgetful.clone();
    let event = stack.store.list_events(USER).await.unwrap().remove(0);
    let outcome = stack.store.apply_event(&applied, &next, &event, now()).await.unwrap();

    assert_eq!(outcome, shoprec::store::ApplyOutcome::AlreadyApplied);
    assert_eq!(stack.store.get_live_profile(USER).await.unwrap().unwrap(), applied);
}

#[tokio::test]
async fn concurrent_batches_apply_once() {
    let stack = local_stack("stream-concurrent").await;
    post_visit(&stack).await;
    let batch = read_stream(&stack).await;

    let (first, second) =
        tokio::join!(apply_stream_batch(&stack.store, batch.clone(), now()), apply_stream_batch(&stack.store, batch, now()));

    assert!(first.0.batch_item_failures.is_empty());
    assert!(second.0.batch_item_failures.is_empty());
    assert_eq!(first.1.applied + second.1.applied, 5, "each event is applied by exactly one of the two");
    let live = stack.store.get_live_profile(USER).await.unwrap().unwrap();
    assert_eq!(live.events.total(), 5);
    assert_eq!(live.items, expected_profile(&stack).await.items);
}

#[tokio::test]
async fn bad_record_reported_alone() {
    let stack = local_stack("stream-bad-record").await;
    post_visit(&stack).await;
    let mut batch = read_stream(&stack).await;
    let broken = batch.records[2].change.sequence_number.clone().unwrap();
    batch.records[2].change.new_image.remove("event_type");

    let (response, report) = apply_stream_batch(&stack.store, batch, now()).await;

    let failed: Vec<Option<String>> = response.batch_item_failures.iter().map(|failure| failure.item_identifier.clone()).collect();
    assert_eq!(failed, vec![Some(broken)]);
    assert_eq!(report.applied, 4);
    assert_eq!(report.failed, 1);
    assert_eq!(stack.store.list_pending_events(USER).await.unwrap().len(), 1, "the broken record's event stays pending");
}

#[tokio::test]
async fn unreachable_table_fails_every_record() {
    let stack = local_stack("stream-unreachable").await;
    post_visit(&stack).await;
    let batch = read_stream(&stack).await;
    let sequence_numbers: Vec<Option<String>> = batch.records.iter().map(|record| record.change.sequence_number.clone()).collect();

    // Nothing listens on port 9 of the loopback interface, so every call fails fast.
    let sdk_config = load_sdk_config().await;
    let closed = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk_config).endpoint_url("http://127.0.0.1:9").build(),
    );
    let unreachable = DynamoStore::new(closed, stack.store.tables().clone());
    let (response, report) = apply_stream_batch(&unreachable, batch.clone(), now()).await;

    let mut failed: Vec<Option<String>> = response.batch_item_failures.iter().map(|failure| failure.item_identifier.clone()).collect();
    failed.sort();
    let mut expected = sequence_numbers.clone();
    expected.sort();
    assert_eq!(failed, expected);
    assert_eq!(report.failed, 5);

    // Lambda delivers the records again once the table responds: nothing was lost.
    let (response, report) = apply_stream_batch(&stack.store, batch, now()).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(report.applied, 5);
}

#[tokio::test]
async fn pending_events_applied_once() {
    let stack = local_stack("stream-pending").await;
    post_visit(&stack).await;

    let first = apply_pending_events(&stack.store, now()).await.unwrap();
    let second = apply_pending_events(&stack.store, now()).await.unwrap();

    assert_eq!(first, ApplyReport { applied: 5, ..ApplyReport::default() });
    assert_eq!(second, ApplyReport::default());
    let live = stack.store.get_live_profile(USER).await.unwrap().unwrap();
    assert_eq!(live.items, expected_profile(&stack).await.items);
}

#[tokio::test]
async fn fixture_batch_applies_posted_events() {
    let stack = local_stack("stream-fixture").await;
    let post: Value = serde_json::from_str(&std::fs::read_to_string(common::repo_root().join("events/post-events.json")).unwrap()).unwrap();
    let state = stack.app(Function::Preferences, Duration::from_secs(60));
    let (status, body) = call(&state, post_request("/users/17850/events", post["body"].as_str().unwrap())).await;
    assert_eq!(status, 201, "{body}");
    let fixture = std::fs::read_to_string(common::repo_root().join("events/stream/new-events.json")).unwrap();
    let batch: Event = serde_json::from_str(&fixture).unwrap();

    let (response, first) = apply_stream_batch(&stack.store, batch.clone(), now()).await;
    let (_, second) = apply_stream_batch(&stack.store, batch, now()).await;

    assert!(response.batch_item_failures.is_empty());
    assert_eq!(first, ApplyReport { applied: 2, ignored: 1, ..ApplyReport::default() });
    assert_eq!(second, ApplyReport { already_applied: 2, ignored: 1, ..ApplyReport::default() });
    let live = stack.store.get_live_profile("17850").await.unwrap().unwrap();
    assert_eq!(live.items["22423"].views, 1);
    assert_eq!(live.items["22423"].quantity, 2);
}

#[tokio::test]
async fn forged_image_changes_nothing() {
    let stack = local_stack("stream-forged").await;
    post_visit(&stack).await;
    let mut batch = read_stream(&stack).await;
    batch.records.truncate(1);
    let stored_item = batch.records[0].change.new_image["item_id"].clone();
    batch.records[0].change.new_image.insert("item_id".into(), serde_dynamo::AttributeValue::S("FORGED".into()));
    assert_ne!(stored_item, batch.records[0].change.new_image["item_id"]);

    let (response, report) = apply_stream_batch(&stack.store, batch, now()).await;

    assert!(response.batch_item_failures.is_empty());
    assert_eq!(report, ApplyReport { already_applied: 1, ..ApplyReport::default() });
    assert!(stack.store.get_live_profile(USER).await.unwrap().is_none(), "no profile was written");
    assert_eq!(stack.store.list_pending_events(USER).await.unwrap().len(), 5, "the stored event stays pending");
}

#[tokio::test]
async fn out_of_range_image_is_rejected() {
    let stack = local_stack("stream-range").await;
    post_visit(&stack).await;
    let mut batch = read_stream(&stack).await;
    batch.records.truncate(2);
    batch.records[0].change.new_image.insert("quantity".into(), serde_dynamo::AttributeValue::N("4000000000".into()));
    batch.records[1].change.new_image.insert("timestamp".into(), serde_dynamo::AttributeValue::N("-5".into()));

    let (response, report) = apply_stream_batch(&stack.store, batch, now()).await;

    assert_eq!(response.batch_item_failures.len(), 2);
    assert_eq!(report.failed, 2);
    assert_eq!(report.applied, 0);
}

#[tokio::test]
async fn bad_stored_item_is_skipped() {
    let stack = local_stack("stream-poison").await;
    post_visit(&stack).await;
    stack
        .dynamodb
        .put_item()
        .table_name(&stack.store.tables().events)
        .item("user_id", aws_sdk_dynamodb::types::AttributeValue::S(USER.into()))
        .item("event_id", aws_sdk_dynamodb::types::AttributeValue::S("no-type".into()))
        .send()
        .await
        .unwrap();

    let report = apply_pending_events(&stack.store, now()).await.unwrap();
    let live = stack.store.live_activity(USER).await.unwrap();

    assert_eq!(report.applied, 5, "the five real events apply despite the bad item");
    assert_eq!(live.events.total(), 5);
}

#[tokio::test]
async fn largest_profile_still_stores() {
    let stack = local_stack("stream-largest").await;
    let long = |prefix: &str, index: usize| format!("{prefix}-{index:05}-{}", "x".repeat(128 - prefix.len() - 7));
    let mut largest = LiveProfile::new(USER);
    for index in 0..shoprec::live_profile::MAX_ITEMS + 10 {
        let event = shoprec::preferences::StoredEvent {
            user_id: USER.into(),
            event_id: long("event", index),
            event_type: shoprec::preferences::EventType::Purchase,
            item_id: long("item", index),
            quantity: 10_000,
            timestamp: 1_300_000_000 + index as i64,
            received_at: 1_300_000_000,
        };
        largest.apply(&event);
    }
    let event = shoprec::preferences::StoredEvent {
        user_id: USER.into(),
        event_id: long("event", 99_999),
        event_type: shoprec::preferences::EventType::View,
        item_id: long("item", 99_999),
        quantity: 1,
        timestamp: 1_400_000_000,
        received_at: 1_400_000_000,
    };
    assert!(stack.store.put_event(&event).await.unwrap());
    let mut next = largest.clone();
    next.apply(&event);
    next.revision = 1;

    let outcome = stack.store.apply_event(&LiveProfile::new(USER), &next, &event, now()).await.unwrap();

    assert_eq!(outcome, shoprec::store::ApplyOutcome::Applied);
    let stored = stack.store.get_live_profile(USER).await.unwrap().unwrap();
    assert_eq!(stored.items.len(), shoprec::live_profile::MAX_ITEMS);
}

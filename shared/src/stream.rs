//! The live-profile stream function's logic: new events from the events
//! table's DynamoDB stream are folded into each user's live profile, and the
//! records that failed are reported back so Lambda retries only those.

use std::collections::BTreeMap;

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use futures::StreamExt;

use crate::error::{Error, Result};
use crate::live_profile::LiveProfile;
use crate::preferences::{validate_stored_event, StoredEvent};
use crate::store::{ApplyOutcome, DynamoStore};

/// Attempts per event while other writers keep changing the same live profile.
const APPLY_ATTEMPTS: u32 = 5;

/// Users whose events are applied at once.
const USER_CONCURRENCY: usize = 8;

/// Counts of one batch of records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Events folded into a live profile.
    pub applied: usize,
    /// Events applied before, such as records Lambda delivers again.
    pub already_applied: usize,
    /// Records that are not new events (modifications and removals).
    pub ignored: usize,
    /// Records reported back as failed.
    pub failed: usize,
}

impl ApplyReport {
    fn add(&mut self, other: ApplyReport) {
        self.applied += other.applied;
        self.already_applied += other.already_applied;
        self.ignored += other.ignored;
        self.failed += other.failed;
    }
}

/// An event with the identifier Lambda needs to retry its record.
struct PendingRecord {
    identifier: String,
    event: StoredEvent,
}

/// Reads the stored event from a stream record, or returns None for a record
/// that is not a new event.
fn record_event(record: &EventRecord) -> Option<Result<StoredEvent>> {
    if record.event_name != "INSERT" {
        return None;
    }
    let event: StoredEvent = match serde_dynamo::from_item(record.change.new_image.clone()) {
        Ok(event) => event,
        Err(error) => {
            return Some(Err(Error::InvalidField {
                field: "dynamodb.NewImage".into(),
                value: record.event_id.clone(),
                reason: format!("is not a stored event: {error}"),
            }));
        }
    };
    Some(validate_stored_event(&event).map(|()| event))
}

/// Applies a batch of stream records and returns the records to retry, in the
/// partial batch response format (`ReportBatchItemFailures`).
///
/// Records of one user are applied in order and users in parallel. Applying is
/// idempotent, so a record Lambda delivers again changes nothing.
pub async fn apply_stream_batch(store: &DynamoStore, event: Event, now: i64) -> (DynamoDbEventResponse, ApplyReport) {
    let mut report = ApplyReport::default();
    let mut failures = Vec::new();
    let mut by_user: BTreeMap<String, Vec<PendingRecord>> = BTreeMap::new();

    for record in &event.records {
        let identifier = record.change.sequence_number.clone().unwrap_or_else(|| record.event_id.clone());
        match record_event(record) {
            None => report.ignored += 1,
            Some(Ok(event)) => by_user.entry(event.user_id.clone()).or_default().push(PendingRecord { identifier, event }),
            Some(Err(error)) => {
                tracing::error!(sequence_number = %identifier, %error, "stream record rejected");
                report.failed += 1;
                failures.push(identifier);
            }
        }
    }

    let mut users = futures::stream::iter(by_user)
        .map(|(user_id, records)| apply_user_events(store, user_id, records, now))
        .buffer_unordered(USER_CONCURRENCY);
    while let Some((user_report, user_failures)) = users.next().await {
        report.add(user_report);
        failures.extend(user_failures);
    }

    let mut response = DynamoDbEventResponse::default();
    response.batch_item_failures = failures
        .into_iter()
        .map(|identifier| {
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = Some(identifier);
            failure
        })
        .collect();
    (response, report)
}

/// Applies one user's events in order and returns the identifiers of those that failed.
async fn apply_user_events(store: &DynamoStore, user_id: String, records: Vec<PendingRecord>, now: i64) -> (ApplyReport, Vec<String>) {
    let mut report = ApplyReport::default();
    let mut failures = Vec::new();
    let mut profile = None;

    for record in records {
        match apply_one(store, &user_id, &mut profile, &record.event, now).await {
            Ok(ApplyOutcome::Applied) => report.applied += 1,
            Ok(_) => report.already_applied += 1,
            Err(error) => {
                tracing::error!(user_id, event_id = %record.event.event_id, sequence_number = %record.identifier, %error, "applying event failed");
                report.failed += 1;
                failures.push(record.identifier);
            }
        }
    }
    tracing::info!(
        user_id,
        applied = report.applied,
        already_applied = report.already_applied,
        failed = report.failed,
        "updated live profile"
    );
    (report, failures)
}

/// Applies one event, reading the profile again when another writer changed it.
/// `profile` caches the latest profile of the user between events.
async fn apply_one(
    store: &DynamoStore,
    user_id: &str,
    profile: &mut Option<LiveProfile>,
    event: &StoredEvent,
    now: i64,
) -> Result<ApplyOutcome> {
    for _ in 0..APPLY_ATTEMPTS {
        let current = match profile.take() {
            Some(current) => current,
            None => store.get_live_profile(user_id).await?.unwrap_or_else(|| LiveProfile::new(user_id)),
        };
        if current.recently_applied(&event.event_id) {
            *profile = Some(current);
            return Ok(ApplyOutcome::AlreadyApplied);
        }

        let mut next = current.clone();
        next.apply(event);
        next.revision = current.revision + 1;
        match store.apply_event(&current, &next, event, now).await? {
            ApplyOutcome::Applied => {
                *profile = Some(next);
                return Ok(ApplyOutcome::Applied);
            }
            ApplyOutcome::AlreadyApplied => {
                *profile = Some(current);
                return Ok(ApplyOutcome::AlreadyApplied);
            }
            // The cached profile is stale: the next attempt reads it again.
            ApplyOutcome::ProfileChanged => {}
        }
    }
    Err(Error::DynamoDb {
        operation: "TransactWriteItems",
        table: store.tables().live_profiles.clone(),
        message: format!("live profile of user {user_id:?} changed on each of {APPLY_ATTEMPTS} attempts: the record is retried"),
    })
}

/// Applies every event that is still marked unapplied, for example after the
/// stream function sent records to its failure queue. Running it again finds
/// nothing left to apply.
pub async fn apply_pending_events(store: &DynamoStore, now: i64) -> Result<ApplyReport> {
    let events = store.scan_pending_events().await?;
    let mut by_user: BTreeMap<String, Vec<PendingRecord>> = BTreeMap::new();
    for event in events {
        let identifier = event.event_id.clone();
        by_user.entry(event.user_id.clone()).or_default().push(PendingRecord { identifier, event });
    }

    let mut report = ApplyReport::default();
    let mut users = futures::stream::iter(by_user)
        .map(|(user_id, records)| apply_user_events(store, user_id, records, now))
        .buffer_unordered(USER_CONCURRENCY);
    while let Some((user_report, _)) = users.next().await {
        report.add(user_report);
    }
    Ok(report)
}

/// Applies one batch delivered by Lambda and logs its counts; this is the whole
/// work of the stream function.
pub async fn handle_stream_event(store: &DynamoStore, event: Event) -> DynamoDbEventResponse {
    let records = event.records.len();
    let (response, report) = apply_stream_batch(store, event, chrono::Utc::now().timestamp()).await;
    tracing::info!(
        records,
        applied = report.applied,
        already_applied = report.already_applied,
        ignored = report.ignored,
        failed = report.failed,
        "applied stream batch"
    );
    response
}

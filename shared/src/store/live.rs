//! Live profiles in DynamoDB: reading a user's events as one profile, and
//! applying an event exactly once.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};

use super::{conversion_error, dynamo_error, keys, DynamoStore};
use crate::error::{Error, Result};
use crate::live_profile::LiveProfile;
use crate::preferences::StoredEvent;

/// Result of applying one event to a live profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The event was folded in and marked as applied.
    Applied,
    /// The event was applied before, is not stored, or is stored with other
    /// fields than the record shows, so nothing changed.
    AlreadyApplied,
    /// Another writer changed the profile since it was read: read it again and retry.
    ProfileChanged,
}

/// Converts an events table item, or logs it and returns None when it is not
/// an event, so one bad item cannot block a user's requests or a replay.
fn parse_event(table: &str, item: HashMap<String, AttributeValue>) -> Option<StoredEvent> {
    let key = |name: &str| item.get(name).and_then(|value| value.as_s().ok()).cloned().unwrap_or_default();
    let (user_id, event_id) = (key(keys::USER_ID), key(keys::EVENT_ID));
    match serde_dynamo::from_item(item) {
        Ok(event) => Some(event),
        Err(error) => {
            tracing::error!(table, user_id, event_id, %error, "skipping an events table item that is not an event");
            None
        }
    }
}

/// Returns the stored form of an event's type, as serde writes it.
fn event_type_value(event: &StoredEvent) -> Result<AttributeValue> {
    match serde_json::to_value(event.event_type) {
        Ok(serde_json::Value::String(name)) => Ok(AttributeValue::S(name)),
        _ => Err(Error::DynamoDb {
            operation: "TransactWriteItems",
            table: "events".into(),
            message: "event type has no string form".into(),
        }),
    }
}

impl DynamoStore {
    /// Reads the events of a user that the stream function has not applied to
    /// the live profile yet. The read is strongly consistent, so an event
    /// stored a moment ago is included.
    ///
    /// TODO: DynamoDB still reads the applied events and drops them by the
    /// filter, so the read capacity a request uses grows with the user's
    /// history. A sparse index that holds only unapplied events would bound it.
    pub async fn list_pending_events(&self, user_id: &str) -> Result<Vec<StoredEvent>> {
        let table = &self.tables.events;
        let query = self
            .client
            .query()
            .table_name(table)
            .consistent_read(true)
            .key_condition_expression("#user_id = :user_id")
            .filter_expression("attribute_not_exists(#applied_at)")
            .expression_attribute_names("#user_id", keys::USER_ID)
            .expression_attribute_names("#applied_at", keys::APPLIED_AT)
            .expression_attribute_values(":user_id", AttributeValue::S(user_id.into()));

        let mut pages = query.into_paginator().send();
        let mut events = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|error| dynamo_error("Query", table, error))?;
            events.extend(page.items.unwrap_or_default().into_iter().filter_map(|item| parse_event(table, item)));
        }
        Ok(events)
    }

    /// Reads a user's live profile, strongly consistent.
    pub async fn get_live_profile(&self, user_id: &str) -> Result<Option<LiveProfile>> {
        let table = &self.tables.live_profiles;
        let output = self
            .client
            .get_item()
            .table_name(table)
            .key(keys::USER_ID, AttributeValue::S(user_id.into()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| dynamo_error("GetItem", table, error))?;
        output.item.map(|item| serde_dynamo::from_item(item).map_err(|error| conversion_error("GetItem", table, error))).transpose()
    }

    /// Reads a user's live profile with the events that are not applied yet
    /// folded in.
    ///
    /// The pending events are read first. An event that the stream function
    /// applies between the two reads is then in both, and the profile's list
    /// of recent event ids keeps it from counting twice.
    pub async fn live_activity(&self, user_id: &str) -> Result<LiveProfile> {
        let pending = self.list_pending_events(user_id).await?;
        let live = self.get_live_profile(user_id).await?.unwrap_or_else(|| LiveProfile::new(user_id));
        Ok(live.with_pending(&pending))
    }

    /// Applies one event in a single transaction: marks the event as applied
    /// unless it already is, and replaces the profile `current` by `next` (which
    /// must be `current` with the event applied) unless another writer changed it.
    pub async fn apply_event(&self, current: &LiveProfile, next: &LiveProfile, event: &StoredEvent, now: i64) -> Result<ApplyOutcome> {
        let events_table = &self.tables.events;
        let profiles_table = &self.tables.live_profiles;

        let mark = Update::builder()
            .table_name(events_table)
            .key(keys::USER_ID, AttributeValue::S(event.user_id.clone()))
            .key(keys::EVENT_ID, AttributeValue::S(event.event_id.clone()))
            .update_expression("SET #applied_at = :now")
            // The record's image must match the stored event, so a record
            // that does not come from this table cannot change the profile.
            .condition_expression(
                "attribute_exists(#event_id) AND attribute_not_exists(#applied_at) AND #item_id = :item_id \
                 AND #event_type = :event_type AND #quantity = :quantity AND #timestamp = :timestamp",
            )
            .expression_attribute_names("#applied_at", keys::APPLIED_AT)
            .expression_attribute_names("#event_id", keys::EVENT_ID)
            .expression_attribute_names("#item_id", keys::ITEM_ID)
            .expression_attribute_names("#event_type", "event_type")
            .expression_attribute_names("#quantity", "quantity")
            .expression_attribute_names("#timestamp", "timestamp")
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .expression_attribute_values(":item_id", AttributeValue::S(event.item_id.clone()))
            .expression_attribute_values(":event_type", event_type_value(event)?)
            .expression_attribute_values(":quantity", AttributeValue::N(event.quantity.to_string()))
            .expression_attribute_values(":timestamp", AttributeValue::N(event.timestamp.to_string()))
            .build()
            .map_err(|error| Error::DynamoDb {
                operation: "TransactWriteItems",
                table: events_table.clone(),
                message: error.to_string(),
            })?;

        let item: HashMap<String, AttributeValue> =
            serde_dynamo::to_item(next).map_err(|error| conversion_error("TransactWriteItems", profiles_table, error))?;
        let put = Put::builder().table_name(profiles_table).set_item(Some(item));
        let put = if current.revision == 0 {
            put.condition_expression("attribute_not_exists(#user_id)").expression_attribute_names("#user_id", keys::USER_ID)
        } else {
            put.condition_expression("#revision = :revision")
                .expression_attribute_names("#revision", keys::REVISION)
                .expression_attribute_values(":revision", AttributeValue::N(current.revision.to_string()))
        };
        let put = put.build().map_err(|error| Error::DynamoDb {
            operation: "TransactWriteItems",
            table: profiles_table.clone(),
            message: error.to_string(),
        })?;

        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(mark).build())
            .transact_items(TransactWriteItem::builder().put(put).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(ApplyOutcome::Applied),
            Err(error) => {
                if let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) = error.as_service_error() {
                    let failed = |index: usize| {
                        cancelled.cancellation_reasons().get(index).and_then(|reason| reason.code()) == Some("ConditionalCheckFailed")
                    };
                    if failed(0) {
                        return Ok(ApplyOutcome::AlreadyApplied);
                    }
                    if failed(1) {
                        return Ok(ApplyOutcome::ProfileChanged);
                    }
                }
                Err(dynamo_error("TransactWriteItems", profiles_table, error))
            }
        }
    }

    /// Reads every event of every user that is not applied yet, for replaying
    /// them after the stream function gave up on some.
    pub async fn scan_pending_events(&self) -> Result<Vec<StoredEvent>> {
        let table = &self.tables.events;
        let mut pages = self
            .client
            .scan()
            .table_name(table)
            .consistent_read(true)
            .filter_expression("attribute_not_exists(#applied_at)")
            .expression_attribute_names("#applied_at", keys::APPLIED_AT)
            .into_paginator()
            .send();
        let mut events = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|error| dynamo_error("Scan", table, error))?;
            events.extend(page.items.unwrap_or_default().into_iter().filter_map(|item| parse_event(table, item)));
        }
        Ok(events)
    }
}

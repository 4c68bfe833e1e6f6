//! DynamoDB access: items with neighbours, trained profiles and the active
//! model version per model version, and user events.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use aws_sdk_dynamodb::Client;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::NeighbourKind;
use crate::preferences::{StoredEvent, TrainedProfile};

mod live;

pub use live::ApplyOutcome;

/// Key attribute names; the table definitions in `template.yaml` must use the same.
pub mod keys {
    pub const MODEL_VERSION: &str = "model_version";
    pub const ITEM_ID: &str = "item_id";
    pub const USER_ID: &str = "user_id";
    pub const EVENT_ID: &str = "event_id";
    pub const NAME: &str = "name";
    /// Events attribute set when the stream function has applied the event to the live profile.
    pub const APPLIED_AT: &str = "applied_at";
    pub const REVISION: &str = "revision";
}

/// Key of the record in the model state table that names the active model version.
pub const ACTIVE_MODEL_NAME: &str = "active";

/// Items in one BatchWriteItem call, DynamoDB's limit.
const BATCH_WRITE_LIMIT: usize = 25;

/// BatchWriteItem calls in flight at once while publishing.
const BATCH_WRITE_CONCURRENCY: usize = 8;

/// Profiles per Query page when listing them all, which keeps each page far
/// below DynamoDB's 1 MB page limit and quick to return.
const PROFILES_PER_PAGE: i32 = 100;

/// Attempts for a batch whose items DynamoDB leaves unprocessed.
const BATCH_WRITE_ATTEMPTS: u32 = 8;

/// Names of the five tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableNames {
    pub items: String,
    pub profiles: String,
    pub events: String,
    pub model_state: String,
    /// Live profiles: each user's events folded in by the stream function.
    pub live_profiles: String,
}

/// The record that names the active model version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveModel {
    pub model_version: String,
    pub manifest_key: String,
    pub manifest_sha256: String,
    pub published_at: String,
}

/// A neighbour as stored with its item, title included so one read serves a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NeighbourRecord {
    pub item_id: String,
    pub title: String,
    pub score: f32,
    pub support: u32,
    /// "co_purchase", or "title" for an item without any purchase.
    #[serde(default)]
    pub kind: NeighbourKind,
}

/// An item of one model version with its neighbours.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemRecord {
    pub model_version: String,
    pub item_id: String,
    pub title: String,
    pub price: f64,
    pub buyers: u32,
    pub recent_buyers: u32,
    pub neighbours: Vec<NeighbourRecord>,
}

#[derive(Serialize)]
struct ProfileRecord<'a> {
    model_version: &'a str,
    #[serde(flatten)]
    profile: &'a TrainedProfile,
}

fn dynamo_error<E, R>(operation: &'static str, table: &str, error: SdkError<E, R>) -> Error
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    Error::DynamoDb { operation, table: table.to_string(), message: DisplayErrorContext(&error).to_string() }
}

fn conversion_error(operation: &'static str, table: &str, error: serde_dynamo::Error) -> Error {
    Error::DynamoDb { operation, table: table.to_string(), message: format!("record does not match the expected shape: {error}") }
}

/// DynamoDB-backed store of the shop data.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    tables: TableNames,
}

impl DynamoStore {
    /// Wraps a client and the table names.
    pub fn new(client: Client, tables: TableNames) -> Self {
        DynamoStore { client, tables }
    }

    /// Returns the table names.
    pub fn tables(&self) -> &TableNames {
        &self.tables
    }

    /// Reads the active model version, strongly consistent.
    pub async fn active_model(&self) -> Result<Option<ActiveModel>> {
        let table = &self.tables.model_state;
        let output = self
            .client
            .get_item()
            .table_name(table)
            .key(keys::NAME, AttributeValue::S(ACTIVE_MODEL_NAME.into()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| dynamo_error("GetItem", table, error))?;
        output.item.map(|item| serde_dynamo::from_item(item).map_err(|error| conversion_error("GetItem", table, error))).transpose()
    }

    /// Points the active model version at `next` in one conditional write that
    /// succeeds only while the active version is still `expected`.
    pub async fn switch_active_model(&self, next: &ActiveModel, expected: Option<&str>) -> Result<()> {
        let table = &self.tables.model_state;
        let mut item: HashMap<String, AttributeValue> =
            serde_dynamo::to_item(next).map_err(|error| conversion_error("PutItem", table, error))?;
        item.insert(keys::NAME.into(), AttributeValue::S(ACTIVE_MODEL_NAME.into()));

        let request = self.client.put_item().table_name(table).set_item(Some(item));
        let request = match expected {
            Some(version) => request
                .condition_expression("#version = :expected")
                .expression_attribute_names("#version", keys::MODEL_VERSION)
                .expression_attribute_values(":expected", AttributeValue::S(version.into())),
            None => request.condition_expression("attribute_not_exists(#name)").expression_attribute_names("#name", keys::NAME),
        };
        match request.send().await {
            Ok(_) => Ok(()),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
                let found = self.active_model().await?.map(|active| active.model_version);
                Err(Error::PublishConflict { expected: expected.map(str::to_string), found })
            }
            Err(error) => Err(dynamo_error("PutItem", table, error)),
        }
    }

    async fn batch_put(&self, table: &str, items: Vec<HashMap<String, AttributeValue>>) -> Result<()> {
        let batches = items.chunks(BATCH_WRITE_LIMIT).map(|chunk| self.write_batch(table, chunk));
        let mut writes = futures::stream::iter(batches).buffer_unordered(BATCH_WRITE_CONCURRENCY);
        while let Some(result) = writes.next().await {
            result?;
        }
        Ok(())
    }

    /// Writes one batch, resending the items DynamoDB leaves unprocessed with backoff.
    async fn write_batch(&self, table: &str, chunk: &[HashMap<String, AttributeValue>]) -> Result<()> {
        let mut pending: Vec<WriteRequest> = chunk
            .iter()
            .map(|item| {
                let put = PutRequest::builder().set_item(Some(item.clone())).build().expect("item is set");
                WriteRequest::builder().put_request(put).build()
            })
            .collect();
        let mut attempt = 0;
        while !pending.is_empty() {
            attempt += 1;
            if attempt > BATCH_WRITE_ATTEMPTS {
                return Err(Error::DynamoDb {
                    operation: "BatchWriteItem",
                    table: table.to_string(),
                    message: format!("{} items still unprocessed after {BATCH_WRITE_ATTEMPTS} attempts", pending.len()),
                });
            }
            let output = self
                .client
                .batch_write_item()
                .request_items(table, pending)
                .send()
                .await
                .map_err(|error| dynamo_error("BatchWriteItem", table, error))?;
            pending = output.unprocessed_items.and_then(|mut unprocessed| unprocessed.remove(table)).unwrap_or_default();
            if !pending.is_empty() {
                tokio::time::sleep(Duration::from_millis(50 << attempt.min(6))).await;
            }
        }
        Ok(())
    }

    /// Writes the items of a model version.
    pub async fn put_items(&self, items: &[ItemRecord]) -> Result<()> {
        let table = &self.tables.items;
        let converted = items
            .iter()
            .map(|item| serde_dynamo::to_item(item).map_err(|error| conversion_error("BatchWriteItem", table, error)))
            .collect::<Result<Vec<_>>>()?;
        self.batch_put(table, converted).await
    }

    /// Reads one item of a model version.
    pub async fn get_item(&self, model_version: &str, item_id: &str) -> Result<Option<ItemRecord>> {
        self.get_versioned(&self.tables.items, model_version, keys::ITEM_ID, item_id).await
    }

    /// Reads the record keyed by a model version and a sort key, strongly
    /// consistent. The records never change once written, but the publisher
    /// switches the active version right after writing the last of them, and an
    /// eventually consistent read just after the switch could miss a record and
    /// return 404 or the popular fallback under the new version.
    async fn get_versioned<T: serde::de::DeserializeOwned>(
        &self,
        table: &str,
        model_version: &str,
        sort_key: &str,
        id: &str,
    ) -> Result<Option<T>> {
        let output = self
            .client
            .get_item()
            .table_name(table)
            .key(keys::MODEL_VERSION, AttributeValue::S(model_version.into()))
            .key(sort_key, AttributeValue::S(id.into()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| dynamo_error("GetItem", table, error))?;
        output.item.map(|item| serde_dynamo::from_item(item).map_err(|error| conversion_error("GetItem", table, error))).transpose()
    }

    /// Writes the trained profiles of a model version.
    ///
    /// NOTE: DynamoDB rejects items over 400 KB. A profile takes about 60 bytes
    /// per distinct item bought (an estimate), so a user with more than about
    /// 6,000 distinct items fails the publish. The largest in the Online Retail
    /// data has 1,787.
    pub async fn put_profiles(&self, model_version: &str, profiles: &[TrainedProfile]) -> Result<()> {
        let table = &self.tables.profiles;
        let converted = profiles
            .iter()
            .map(|profile| {
                serde_dynamo::to_item(ProfileRecord { model_version, profile })
                    .map_err(|error| conversion_error("BatchWriteItem", table, error))
            })
            .collect::<Result<Vec<_>>>()?;
        self.batch_put(table, converted).await
    }

    /// Reads a user's trained profile of a model version.
    pub async fn get_profile(&self, model_version: &str, user_id: &str) -> Result<Option<TrainedProfile>> {
        self.get_versioned(&self.tables.profiles, model_version, keys::USER_ID, user_id).await
    }

    /// Reads every trained profile of a model version, page by page.
    pub async fn list_profiles(&self, model_version: &str) -> Result<Vec<TrainedProfile>> {
        self.query_partition(&self.tables.profiles, keys::MODEL_VERSION, model_version, Some(PROFILES_PER_PAGE)).await
    }

    /// Stores an event unless one with the same user and event id exists.
    ///
    /// Returns false for a duplicate, which leaves the stored event unchanged.
    pub async fn put_event(&self, event: &StoredEvent) -> Result<bool> {
        let table = &self.tables.events;
        let item: HashMap<String, AttributeValue> =
            serde_dynamo::to_item(event).map_err(|error| conversion_error("PutItem", table, error))?;
        let result = self
            .client
            .put_item()
            .table_name(table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#event_id)")
            .expression_attribute_names("#event_id", keys::EVENT_ID)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(false),
            Err(error) => Err(dynamo_error("PutItem", table, error)),
        }
    }

    /// Reads every stored event of a user.
    pub async fn list_events(&self, user_id: &str) -> Result<Vec<StoredEvent>> {
        self.query_partition(&self.tables.events, keys::USER_ID, user_id, None).await
    }

    /// Reads every record of one partition, following the pages, with at most
    /// `page_size` records per page when given.
    async fn query_partition<T: serde::de::DeserializeOwned>(
        &self,
        table: &str,
        key_name: &str,
        key_value: &str,
        page_size: Option<i32>,
    ) -> Result<Vec<T>> {
        let query = self
            .client
            .query()
            .table_name(table)
            .key_condition_expression("#key = :value")
            .expression_attribute_names("#key", key_name)
            .expression_attribute_values(":value", AttributeValue::S(key_value.into()))
            .set_limit(page_size);
        Self::collect_query(table, query).await
    }

    /// Runs a query page by page and converts every record.
    async fn collect_query<T: serde::de::DeserializeOwned>(
        table: &str,
        query: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    ) -> Result<Vec<T>> {
        let mut pages = query.into_paginator().send();
        let mut records = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|error| dynamo_error("Query", table, error))?;
            for item in page.items.unwrap_or_default() {
                records.push(serde_dynamo::from_item(item).map_err(|error| conversion_error("Query", table, error))?);
            }
        }
        Ok(records)
    }
}

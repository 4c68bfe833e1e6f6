//! Table and bucket definitions read from the SAM template, so that the local
//! stack is created from the same definitions as the deployed one.

use std::path::Path;

use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, StreamSpecification, StreamViewType,
};
use serde_norway::Value;

use crate::error::{Error, Result};
use crate::store::TableNames;

/// Key attribute of a table as the template declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAttribute {
    pub name: String,
    /// "HASH" or "RANGE".
    pub key_type: String,
    /// "S", "N" or "B".
    pub attribute_type: String,
}

/// A DynamoDB table resource of the template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDefinition {
    pub logical_id: String,
    pub keys: Vec<KeyAttribute>,
    pub stream_view_type: Option<String>,
}

/// Logical ids of the template's tables, in [`TableNames`] order.
pub const TABLE_LOGICAL_IDS: [&str; 5] = ["ItemsTable", "ProfilesTable", "EventsTable", "ModelStateTable", "LiveProfilesTable"];

fn template_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::Config { name: path.display().to_string(), reason: reason.into() }
}

/// Reads every `AWS::DynamoDB::Table` resource of a SAM or CloudFormation template.
pub fn read_table_definitions(path: &Path) -> Result<Vec<TableDefinition>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.display().to_string(), source })?;
    let template: Value = serde_norway::from_str(&text).map_err(|error| template_error(path, format!("invalid YAML: {error}")))?;
    let resources =
        template.get("Resources").and_then(Value::as_mapping).ok_or_else(|| template_error(path, "has no Resources section"))?;

    let mut tables = Vec::new();
    for (logical_id, resource) in resources {
        if resource.get("Type").and_then(Value::as_str) != Some("AWS::DynamoDB::Table") {
            continue;
        }
        let logical_id = logical_id.as_str().unwrap_or_default().to_string();
        let properties = resource.get("Properties").ok_or_else(|| template_error(path, format!("table {logical_id} has no Properties")))?;
        let attribute_types: Vec<(String, String)> = properties
            .get("AttributeDefinitions")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
            .filter_map(|definition| {
                Some((definition.get("AttributeName")?.as_str()?.to_string(), definition.get("AttributeType")?.as_str()?.to_string()))
            })
            .collect();
        let mut keys = Vec::new();
        for element in properties.get("KeySchema").and_then(Value::as_sequence).into_iter().flatten() {
            let name = element.get("AttributeName").and_then(Value::as_str).unwrap_or_default().to_string();
            let key_type = element.get("KeyType").and_then(Value::as_str).unwrap_or_default().to_string();
            let attribute_type = attribute_types
                .iter()
                .find(|(attribute, _)| *attribute == name)
                .map(|(_, attribute_type)| attribute_type.clone())
                .ok_or_else(|| template_error(path, format!("table {logical_id}: key {name} has no AttributeDefinitions entry")))?;
            keys.push(KeyAttribute { name, key_type, attribute_type });
        }
        let stream_view_type = properties
            .get("StreamSpecification")
            .and_then(|stream| stream.get("StreamViewType"))
            .and_then(Value::as_str)
            .map(str::to_string);
        tables.push(TableDefinition { logical_id, keys, stream_view_type });
    }
    Ok(tables)
}

/// Creates the tables that do not exist yet, as the template defines them,
/// under the given names. Returns the names of the tables it created.
pub async fn create_tables(client: &aws_sdk_dynamodb::Client, template: &Path, names: &TableNames) -> Result<Vec<String>> {
    let definitions = read_table_definitions(template)?;
    let existing = client
        .list_tables()
        .send()
        .await
        .map_err(|error| Error::DynamoDb { operation: "ListTables", table: "*".into(), message: DisplayErrorContext(&error).to_string() })?
        .table_names
        .unwrap_or_default();

    let targets = [&names.items, &names.profiles, &names.events, &names.model_state, &names.live_profiles];
    let mut created = Vec::new();
    for (logical_id, table_name) in TABLE_LOGICAL_IDS.iter().zip(targets) {
        if existing.contains(table_name) {
            continue;
        }
        let definition = definitions
            .iter()
            .find(|definition| definition.logical_id == *logical_id)
            .ok_or_else(|| template_error(template, format!("has no table {logical_id}")))?;

        let mut request = client.create_table().table_name(table_name).billing_mode(BillingMode::PayPerRequest);
        for key in &definition.keys {
            request = request
                .key_schema(
                    KeySchemaElement::builder()
                        .attribute_name(&key.name)
                        .key_type(KeyType::from(key.key_type.as_str()))
                        .build()
                        .expect("name and type are set"),
                )
                .attribute_definitions(
                    AttributeDefinition::builder()
                        .attribute_name(&key.name)
                        .attribute_type(ScalarAttributeType::from(key.attribute_type.as_str()))
                        .build()
                        .expect("name and type are set"),
                );
        }
        if let Some(view_type) = &definition.stream_view_type {
            request = request.stream_specification(
                StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(StreamViewType::from(view_type.as_str()))
                    .build()
                    .expect("enabled is set"),
            );
        }
        request.send().await.map_err(|error| Error::DynamoDb {
            operation: "CreateTable",
            table: table_name.clone(),
            message: DisplayErrorContext(&error).to_string(),
        })?;
        created.push(table_name.clone());
    }
    Ok(created)
}

/// Creates the artifact bucket unless it exists. Returns true when it created it.
pub async fn create_bucket(client: &aws_sdk_s3::Client, bucket: &str) -> Result<bool> {
    if client.head_bucket().bucket(bucket).send().await.is_ok() {
        return Ok(false);
    }
    let mut request = client.create_bucket().bucket(bucket);
    // Outside us-east-1, S3 requires the region as the location constraint.
    if let Some(region) = client.config().region().map(|region| region.as_ref().to_string()) {
        if region != "us-east-1" {
            let location = aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(region.as_str()))
                .build();
            request = request.create_bucket_configuration(location);
        }
    }
    request.send().await.map_err(|error| Error::S3 {
        operation: "CreateBucket",
        bucket: bucket.to_string(),
        key: String::new(),
        message: aws_sdk_s3::error::DisplayErrorContext(&error).to_string(),
    })?;
    Ok(true)
}

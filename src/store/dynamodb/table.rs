//! The table definition, shared with `template.yaml` through `schema/table.json` (a test
//! of the template checks they agree), and its creation for local use.

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
    PointInTimeRecoverySpecification, Projection, ProjectionType, ScalarAttributeType, TableStatus,
};
use serde::Deserialize;

use super::request::request_error;
use crate::store::StoreError;

const SCHEMA_JSON: &str = include_str!("../../../schema/table.json");

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TableSchema {
    pub attribute_definitions: Vec<AttributeSchema>,
    pub key_schema: Vec<KeySchema>,
    #[serde(default)]
    pub global_secondary_indexes: Vec<IndexSchema>,
    pub billing_mode: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IndexSchema {
    pub index_name: String,
    pub key_schema: Vec<KeySchema>,
    pub projection: ProjectionSchema,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProjectionSchema {
    pub projection_type: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttributeSchema {
    pub attribute_name: String,
    pub attribute_type: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeySchema {
    pub attribute_name: String,
    pub key_type: String,
}

impl TableSchema {
    pub fn load() -> Result<Self, StoreError> {
        serde_json::from_str(SCHEMA_JSON).map_err(|error| StoreError::Corrupt {
            key: "schema/table.json".into(),
            source: error.into(),
        })
    }
}

fn key_element(key: &KeySchema) -> Result<KeySchemaElement, StoreError> {
    KeySchemaElement::builder()
        .attribute_name(&key.attribute_name)
        .key_type(KeyType::from(key.key_type.as_str()))
        .build()
        .map_err(|error| request_error("CreateTable", error))
}

/// What `create_table` did.
#[derive(Debug)]
pub struct TableSetup {
    /// False when the table existed already (nothing else was done then).
    pub created: bool,
    /// Why point-in-time recovery could not be turned on: a local server may lack
    /// `UpdateContinuousBackups`, and the table is usable without it there.
    pub backups_not_enabled: Option<StoreError>,
    /// Why the time to live of the derivation's snapshots and logs could not be turned
    /// on, if it could not (the table works without it; they are not removed).
    pub expiry_not_enabled: Option<StoreError>,
}

/// Creates the table as `schema/table.json` defines it, waits until it is active, and
/// turns on point-in-time recovery as the template does (reporting, not failing, when the
/// server refuses that: the table exists by then).
pub async fn create_table(client: &Client, table: &str) -> Result<TableSetup, StoreError> {
    let schema = TableSchema::load()?;
    let mut request = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::from(schema.billing_mode.as_str()));
    for attribute in &schema.attribute_definitions {
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(&attribute.attribute_name)
                .attribute_type(ScalarAttributeType::from(attribute.attribute_type.as_str()))
                .build()
                .map_err(|error| request_error("CreateTable", error))?,
        );
    }
    for key in &schema.key_schema {
        request = request.key_schema(key_element(key)?);
    }
    for index in &schema.global_secondary_indexes {
        let mut built = GlobalSecondaryIndex::builder()
            .index_name(&index.index_name)
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::from(
                        index.projection.projection_type.as_str(),
                    ))
                    .build(),
            );
        for key in &index.key_schema {
            built = built.key_schema(key_element(key)?);
        }
        request = request.global_secondary_indexes(
            built
                .build()
                .map_err(|error| request_error("CreateTable", error))?,
        );
    }
    match request.send().await {
        Ok(_) => {}
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) =>
        {
            return Ok(TableSetup {
                created: false,
                backups_not_enabled: None,
                expiry_not_enabled: None,
            });
        }
        Err(error) => return Err(request_error("CreateTable", error)),
    }
    for _ in 0..120 {
        let described = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| request_error("DescribeTable", e))?;
        if described.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let pitr = PointInTimeRecoverySpecification::builder()
        .point_in_time_recovery_enabled(true)
        .build()
        .map_err(|error| request_error("UpdateContinuousBackups", error))?;
    let backups = client
        .update_continuous_backups()
        .table_name(table)
        .point_in_time_recovery_specification(pitr)
        .send()
        .await;
    // Snapshots, step logs and object versions expire after the late horizon, as the
    // template's `TimeToLiveSpecification` says.
    let expiry = aws_sdk_dynamodb::types::TimeToLiveSpecification::builder()
        .attribute_name(super::items::state::EXPIRES_AT)
        .enabled(true)
        .build()
        .map_err(|error| request_error("UpdateTimeToLive", error))?;
    let expiring = client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(expiry)
        .send()
        .await;
    Ok(TableSetup {
        created: true,
        backups_not_enabled: backups
            .err()
            .map(|error| request_error("UpdateContinuousBackups", error)),
        expiry_not_enabled: expiring
            .err()
            .map(|error| request_error("UpdateTimeToLive", error)),
    })
}

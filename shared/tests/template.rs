//! `template.yaml` agrees with the code: table keys, function binaries, routes and events.

mod common;

use std::collections::BTreeSet;

use serde_norway::Value;
use shoprec::store::keys;
use shoprec::template::{read_table_definitions, TABLE_LOGICAL_IDS};

use common::repo_root;

fn template() -> Value {
    let text = std::fs::read_to_string(repo_root().join("template.yaml")).unwrap();
    serde_norway::from_str(&text).unwrap()
}

#[test]
fn table_keys_match_store() {
    let definitions = read_table_definitions(&repo_root().join("template.yaml")).unwrap();
    let expected: [(&str, &[(&str, &str)]); 5] = [
        ("ItemsTable", &[(keys::MODEL_VERSION, "HASH"), (keys::ITEM_ID, "RANGE")]),
        ("ProfilesTable", &[(keys::MODEL_VERSION, "HASH"), (keys::USER_ID, "RANGE")]),
        ("EventsTable", &[(keys::USER_ID, "HASH"), (keys::EVENT_ID, "RANGE")]),
        ("ModelStateTable", &[(keys::NAME, "HASH")]),
        ("LiveProfilesTable", &[(keys::USER_ID, "HASH")]),
    ];
    assert_eq!(definitions.len(), TABLE_LOGICAL_IDS.len());
    for (logical_id, key_schema) in expected {
        let definition = definitions
            .iter()
            .find(|definition| definition.logical_id == logical_id)
            .unwrap_or_else(|| panic!("template.yaml has no table {logical_id}"));
        let actual: Vec<(&str, &str)> = definition.keys.iter().map(|key| (key.name.as_str(), key.key_type.as_str())).collect();
        assert_eq!(actual, key_schema, "{logical_id}");
        assert!(definition.keys.iter().all(|key| key.attribute_type == "S"), "{logical_id}");
    }
    let events = definitions.iter().find(|definition| definition.logical_id == "EventsTable").unwrap();
    assert_eq!(events.stream_view_type.as_deref(), Some("NEW_IMAGE"));
}

#[test]
fn function_binaries_are_workspace_crates() {
    let template = template();
    for (logical_id, resource) in template["Resources"].as_mapping().unwrap() {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        assert_eq!(resource["Metadata"]["BuildMethod"].as_str(), Some("rust-cargolambda"), "{logical_id:?}");
        let binary = resource["Metadata"]["BuildProperties"]["Binary"].as_str().unwrap();
        let manifest = repo_root().join("functions").join(binary).join("Cargo.toml");
        assert!(manifest.is_file(), "{logical_id:?} builds {binary}, but {} is missing", manifest.display());
    }
}

fn template_routes() -> BTreeSet<String> {
    let template = template();
    let mut routes = BTreeSet::new();
    for (_, resource) in template["Resources"].as_mapping().unwrap() {
        let Some(events) = resource["Properties"]["Events"].as_mapping() else { continue };
        for (_, event) in events {
            if event["Type"].as_str() == Some("HttpApi") {
                let properties = &event["Properties"];
                routes.insert(format!("{} {}", properties["Method"].as_str().unwrap(), properties["Path"].as_str().unwrap()));
            }
        }
    }
    routes
}

#[test]
fn every_route_has_one_event_file() {
    let mut event_routes = BTreeSet::new();
    for entry in std::fs::read_dir(repo_root().join("events")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|extension| extension.to_str()) != Some("json") {
            continue;
        }
        let event: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(event["version"], "2.0", "{}", path.display());
        let route = event["routeKey"].as_str().unwrap().to_string();
        assert!(event_routes.insert(route.clone()), "two event files for {route}");
    }
    assert_eq!(event_routes, template_routes());
}

/// DynamoDB and S3 actions that a function may be granted.
const ALLOWED_ACTIONS: [&str; 5] = ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:BatchWriteItem", "s3:GetObject"];

/// Returns every grant in the functions' policies that is wider than the
/// function's own tables and the artifact prefix, as readable lines.
fn policy_violations(template: &Value) -> Vec<String> {
    let resources = template["Resources"].as_mapping().unwrap();
    let tables: BTreeSet<String> = resources
        .iter()
        .filter(|(_, resource)| resource["Type"].as_str() == Some("AWS::DynamoDB::Table"))
        .filter_map(|(logical_id, _)| logical_id.as_str().map(str::to_string))
        .collect();
    let mut violations = Vec::new();
    for (logical_id, resource) in resources {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let function = logical_id.as_str().unwrap_or("?");
        let Some(policies) = resource["Properties"]["Policies"].as_sequence() else { continue };
        for policy in policies {
            let Some(statements) = policy["Statement"].as_sequence() else {
                violations.push(format!("{function}: policy {policy:?} is not an inline statement list"));
                continue;
            };
            for statement in statements {
                if statement["Effect"].as_str() != Some("Allow") {
                    continue;
                }
                let actions: Vec<&Value> =
                    statement["Action"].as_sequence().map_or_else(|| vec![&statement["Action"]], |list| list.iter().collect());
                for action in actions {
                    match action.as_str() {
                        Some(action) if ALLOWED_ACTIONS.contains(&action) => {}
                        _ => violations.push(format!("{function}: action {action:?} is not in the allowed list")),
                    }
                }
                let granted: Vec<&Value> =
                    statement["Resource"].as_sequence().map_or_else(|| vec![&statement["Resource"]], |list| list.iter().collect());
                for resource in granted {
                    if !resource_is_own(resource, &tables) {
                        violations.push(format!("{function}: resource {resource:?} is wider than its tables and the artifact prefix"));
                    }
                }
            }
        }
    }
    violations
}

/// Returns true for `!GetAtt <table>.Arn`, `!GetAtt <table>.StreamArn` of a table in
/// the template, and `!Sub "${ArtifactBucket.Arn}/models/*"`.
fn resource_is_own(resource: &Value, tables: &BTreeSet<String>) -> bool {
    let Value::Tagged(tagged) = resource else { return false };
    let text = tagged.value.as_str().unwrap_or("");
    if tagged.tag == "GetAtt" {
        let Some((table, attribute)) = text.split_once('.') else { return false };
        return tables.contains(table) && (attribute == "Arn" || attribute == "StreamArn");
    }
    tagged.tag == "Sub" && text == "${ArtifactBucket.Arn}/models/*"
}

#[test]
fn policies_grant_only_own_resources() {
    let violations = policy_violations(&template());
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn policy_check_catches_wildcards() {
    let text = std::fs::read_to_string(repo_root().join("template.yaml")).unwrap();
    let widened = text
        .replacen("Action: dynamodb:GetItem", "Action: dynamodb:*", 1)
        .replacen("Resource: !GetAtt EventsTable.Arn", "Resource: \"*\"", 1)
        .replacen("${ArtifactBucket.Arn}/models/*", "${ArtifactBucket.Arn}/*", 1);
    assert_ne!(widened, text, "the widening edits no longer match template.yaml");
    let violations = policy_violations(&serde_norway::from_str(&widened).unwrap());
    assert!(violations.iter().any(|line| line.contains("dynamodb:*")), "{violations:?}");
    assert!(violations.iter().any(|line| line.contains("String(\"*\")")), "{violations:?}");
    assert!(violations.iter().any(|line| line.contains("/*")), "{violations:?}");
}

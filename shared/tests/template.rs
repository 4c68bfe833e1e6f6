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

/// DynamoDB, S3 and SQS actions that a function may be granted.
const ALLOWED_ACTIONS: [&str; 11] = [
    "dynamodb:GetItem",
    "dynamodb:Query",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:DescribeStream",
    "dynamodb:GetRecords",
    "dynamodb:GetShardIterator",
    "dynamodb:ListStreams",
    "s3:GetObject",
    "sqs:SendMessage",
];

/// The only managed policies a role may attach: writing the function's logs,
/// and trace segments, which X-Ray accepts on no narrower resource than "*".
const ALLOWED_MANAGED_POLICIES: [&str; 2] = [
    "arn:${AWS::Partition}:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:${AWS::Partition}:iam::aws:policy/AWSXrayWriteOnlyAccess",
];

/// Event types for which SAM attaches a managed policy on every resource
/// unless the function brings its own role.
const PULL_EVENT_TYPES: [&str; 3] = ["DynamoDB", "Kinesis", "SQS"];

/// Returns the policy statements of a function (SAM `Policies`) or of an IAM
/// role (`Policies[].PolicyDocument`), or a violation for any other form.
fn statements<'a>(owner: &str, resource: &'a Value, violations: &mut Vec<String>) -> Vec<&'a Value> {
    let mut found = Vec::new();
    let Some(policies) = resource["Properties"]["Policies"].as_sequence() else { return found };
    for policy in policies {
        let document = if resource["Type"].as_str() == Some("AWS::IAM::Role") { &policy["PolicyDocument"] } else { policy };
        match document["Statement"].as_sequence() {
            Some(list) => found.extend(list),
            None => violations.push(format!("{owner}: policy {policy:?} is not an inline statement list")),
        }
    }
    found
}

/// Returns every grant in the functions' and roles' policies that is wider than
/// the template's own tables, streams, queues and the artifact prefix, as readable lines.
fn policy_violations(template: &Value) -> Vec<String> {
    let resources = template["Resources"].as_mapping().unwrap();
    let owned = |resource_type: &str| -> BTreeSet<String> {
        resources
            .iter()
            .filter(|(_, resource)| resource["Type"].as_str() == Some(resource_type))
            .filter_map(|(logical_id, _)| logical_id.as_str().map(str::to_string))
            .collect()
    };
    let tables = owned("AWS::DynamoDB::Table");
    let queues = owned("AWS::SQS::Queue");

    let mut violations = Vec::new();
    for (logical_id, resource) in resources {
        let owner = logical_id.as_str().unwrap_or("?");
        match resource["Type"].as_str() {
            Some("AWS::Serverless::Function") => {
                let pulls = resource["Properties"]["Events"]
                    .as_mapping()
                    .into_iter()
                    .flatten()
                    .any(|(_, event)| event["Type"].as_str().is_some_and(|kind| PULL_EVENT_TYPES.contains(&kind)));
                if pulls && resource["Properties"]["Role"].is_null() {
                    violations.push(format!(
                        "{owner}: reads a stream or queue without its own Role, so SAM attaches a managed policy on every resource"
                    ));
                }
            }
            Some("AWS::IAM::Role") => {
                for arn in resource["Properties"]["ManagedPolicyArns"].as_sequence().into_iter().flatten() {
                    let allowed = matches!(arn, Value::Tagged(tagged)
                        if tagged.tag == "Sub" && tagged.value.as_str().is_some_and(|text| ALLOWED_MANAGED_POLICIES.contains(&text)));
                    if !allowed {
                        violations.push(format!("{owner}: managed policy {arn:?} is not the basic execution or X-Ray write policy"));
                    }
                }
            }
            _ => continue,
        }

        for statement in statements(owner, resource, &mut violations) {
            if statement["Effect"].as_str() != Some("Allow") {
                continue;
            }
            let actions: Vec<&Value> =
                statement["Action"].as_sequence().map_or_else(|| vec![&statement["Action"]], |list| list.iter().collect());
            for action in actions {
                match action.as_str() {
                    Some(action) if ALLOWED_ACTIONS.contains(&action) => {}
                    _ => violations.push(format!("{owner}: action {action:?} is not in the allowed list")),
                }
            }
            let granted: Vec<&Value> =
                statement["Resource"].as_sequence().map_or_else(|| vec![&statement["Resource"]], |list| list.iter().collect());
            for resource in granted {
                if !resource_is_own(resource, &tables, &queues) {
                    violations.push(format!("{owner}: resource {resource:?} is wider than its tables, queues and the artifact prefix"));
                }
            }
        }
    }
    violations
}

/// Returns true for `!GetAtt <table>.Arn`, `!GetAtt <table>.StreamArn` of a table in
/// the template, `!GetAtt <queue>.Arn` of a queue in it, and `!Sub "${ArtifactBucket.Arn}/models/*"`.
fn resource_is_own(resource: &Value, tables: &BTreeSet<String>, queues: &BTreeSet<String>) -> bool {
    let Value::Tagged(tagged) = resource else { return false };
    let text = tagged.value.as_str().unwrap_or("");
    if tagged.tag == "GetAtt" {
        let Some((name, attribute)) = text.split_once('.') else { return false };
        let own_table = tables.contains(name) && (attribute == "Arn" || attribute == "StreamArn");
        let own_queue = queues.contains(name) && attribute == "Arn";
        return own_table || own_queue;
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
        .replacen("${ArtifactBucket.Arn}/models/*", "${ArtifactBucket.Arn}/*", 1)
        .replacen("Resource: !GetAtt StreamFailureQueue.Arn", "Resource: !Sub \"arn:${AWS::Partition}:sqs:*\"", 1)
        .replacen("service-role/AWSLambdaBasicExecutionRole", "AdministratorAccess", 1)
        .replacen("      Role: !GetAtt LiveProfileFunctionRole.Arn\n", "", 1);
    assert_ne!(widened, text, "the widening edits no longer match template.yaml");
    let violations = policy_violations(&serde_norway::from_str(&widened).unwrap());
    assert!(violations.iter().any(|line| line.contains("dynamodb:*")), "{violations:?}");
    assert!(violations.iter().any(|line| line.contains("String(\"*\")")), "{violations:?}");
    assert!(violations.iter().any(|line| line.contains("${ArtifactBucket.Arn}/*")), "{violations:?}");
    assert!(violations.iter().any(|line| line.contains("sqs:*")), "{violations:?}");
    assert!(violations.iter().any(|line| line.contains("AdministratorAccess")), "{violations:?}");
    assert!(violations.iter().any(|line| line.contains("LiveProfileFunction: reads a stream")), "{violations:?}");
}

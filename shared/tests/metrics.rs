//! A handled request records CloudWatch Embedded Metric Format (EMF) metrics:
//! the flushed documents are valid EMF with the function and model version as
//! dimensions and the request id as a property.

mod common;

use std::time::Duration;

use serde_json::Value;
use shoprec::handlers::{handle, Function};
use shoprec::metrics::{flush_request_metrics, init_metrics, names, NAMESPACE};

use common::{get_request, local_stack, publish_synthetic};

/// Checks one document against the EMF specification and returns its metric names.
fn check_emf(document: &Value) -> Vec<String> {
    let metadata = &document["_aws"];
    assert!(metadata["Timestamp"].as_u64().is_some(), "no numeric _aws.Timestamp: {document}");
    let directives = metadata["CloudWatchMetrics"].as_array().expect("_aws.CloudWatchMetrics is an array");
    assert_eq!(directives.len(), 1, "{document}");
    let directive = &directives[0];
    assert_eq!(directive["Namespace"], NAMESPACE);

    for dimension_set in directive["Dimensions"].as_array().expect("Dimensions is an array") {
        for dimension in dimension_set.as_array().expect("a dimension set is an array") {
            let name = dimension.as_str().expect("a dimension name is a string");
            assert!(document[name].is_string(), "dimension {name} has no string value at the top level: {document}");
        }
    }

    let mut metric_names = Vec::new();
    for metric in directive["Metrics"].as_array().expect("Metrics is an array") {
        let name = metric["Name"].as_str().expect("a metric has a Name").to_string();
        let value = &document[name.as_str()];
        let numeric = value.is_number() || value.as_array().is_some_and(|values| !values.is_empty() && values.iter().all(Value::is_number));
        assert!(numeric, "metric {name} has no numeric value: {document}");
        metric_names.push(name);
    }
    metric_names
}

#[tokio::test]
async fn handled_request_emits_valid_emf() {
    let stack = local_stack("metrics").await;
    let published = publish_synthetic(&stack).await;
    let collector = init_metrics(Function::Inference.name()).unwrap();
    let state = stack.app(Function::Inference, Duration::from_secs(60));

    let response = handle(&state, get_request("/users/17850/recommendations", "limit=5")).await;
    assert_eq!(response.status(), 200);
    let mut output = Vec::new();
    flush_request_metrics(collector, "request-1", "/users/17850/recommendations", &mut output).unwrap();

    let text = String::from_utf8(output).unwrap();
    let documents: Vec<Value> = text.lines().map(|line| serde_json::from_str(line).expect("each line is JSON")).collect();
    assert!(!documents.is_empty(), "no EMF document was written");
    let mut metric_names = Vec::new();
    for document in &documents {
        metric_names.extend(check_emf(document));
        assert_eq!(document["Function"], "inference");
        assert_eq!(document["RequestId"], "request-1");
    }
    for expected in [names::LATENCY, names::CANDIDATES_SCORED, names::PEAK_RSS] {
        assert!(metric_names.iter().any(|name| name == expected), "{expected} missing from {text}");
    }
    let versioned = documents.iter().find(|document| document[names::LATENCY].is_array()).expect("a latency document");
    assert_eq!(versioned["ModelVersion"], published.model_version.as_str());
    let candidates = documents.iter().find_map(|document| document[names::CANDIDATES_SCORED].as_f64()).unwrap();
    assert!(candidates > 0.0, "the ranker scored no candidates: {text}");
}

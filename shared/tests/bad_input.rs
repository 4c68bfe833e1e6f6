//! Table-driven bad input over every route: each case must get a 4xx
//! `application/problem+json` response that names the rejected field and value
//! where there is one, never a 5xx, and must leave the events table unchanged.
//!
//! The suite prints how many cases it tried, by route.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use lambda_http::Body;
use serde_json::{json, Value};
use shoprec::handlers::{handle, AppState, Function};
use shoprec::preferences::{MAX_EVENTS_PER_REQUEST, MAX_ID_LEN, MAX_QUANTITY};

use common::{local_stack, publish_synthetic};

/// User whose events every POST case targets; nothing may be stored for it.
const USER: &str = "17850";

/// One request and the response it must get.
struct Case {
    name: String,
    function: Function,
    method: &'static str,
    path: String,
    query: String,
    content_type: Option<&'static str>,
    body: Option<Vec<u8>>,
    status: u16,
    /// The problem's `field`, when the request has one field to blame.
    field: Option<String>,
}

impl Case {
    fn get(name: impl Into<String>, function: Function, path: impl Into<String>, query: impl Into<String>, field: Option<&str>) -> Self {
        Case {
            name: name.into(),
            function,
            method: "GET",
            path: path.into(),
            query: query.into(),
            content_type: None,
            body: None,
            status: 400,
            field: field.map(str::to_string),
        }
    }

    fn post(name: impl Into<String>, body: impl Into<Vec<u8>>, status: u16, field: Option<&str>) -> Self {
        Case {
            name: name.into(),
            function: Function::Preferences,
            method: "POST",
            path: format!("/users/{USER}/events"),
            query: String::new(),
            content_type: Some("application/json"),
            body: Some(body.into()),
            status,
            field: field.map(str::to_string),
        }
    }

    fn route(&self) -> String {
        let template = match (self.method, self.function) {
            ("GET", Function::Similarity) if self.path.ends_with("/popular") => "GET /items/popular",
            ("GET", Function::Similarity) => "GET /items/{item_id}/similar",
            ("GET", Function::Inference) => "GET /users/{user_id}/recommendations",
            ("GET", Function::Preferences) => "GET /users/{user_id}/preferences",
            _ => "POST /users/{user_id}/events",
        };
        template.to_string()
    }

    fn request(&self) -> lambda_http::Request {
        let mut headers = json!({"accept": "application/json"});
        if let Some(content_type) = self.content_type {
            headers["content-type"] = json!(content_type);
        }
        let mut event = json!({
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": self.path,
            "rawQueryString": self.query,
            "headers": headers,
            "requestContext": {
                "accountId": "123456789012", "apiId": "local", "domainName": "127.0.0.1", "domainPrefix": "local",
                "http": {"method": self.method, "path": self.path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "test"},
                "requestId": "bad-input", "routeKey": "$default", "stage": "$default",
                "time": "09/Dec/2011:12:00:00 +0000", "timeEpoch": 1323432000000u64
            },
            "isBase64Encoded": false
        });
        if let Some(body) = &self.body {
            match std::str::from_utf8(body) {
                Ok(text) => event["body"] = json!(text),
                Err(_) => {
                    event["body"] = json!(base64::engine::general_purpose::STANDARD.encode(body));
                    event["isBase64Encoded"] = json!(true);
                }
            }
        }
        lambda_http::request::from_str(&event.to_string()).expect("valid API Gateway v2 event")
    }
}

/// Returns a valid event object that each body case breaks in one place.
fn valid_event(index: usize) -> Value {
    json!({"event_id": format!("e{index}"), "type": "view", "item_id": "22423", "quantity": 1, "timestamp": "2011-12-09T12:00:00Z"})
}

/// Bad values of one event field, with the reason they are bad.
fn bad_event_values() -> Vec<(&'static str, Value)> {
    let long_id = "x".repeat(MAX_ID_LEN + 1);
    let future = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    vec![
        ("event_id", json!("")),
        ("event_id", json!("   ")),
        ("event_id", json!(long_id)),
        ("event_id", json!("a\u{0}b")),
        ("event_id", json!("a\nb")),
        ("event_id", json!("a\u{7f}b")),
        ("event_id", json!(42)),
        ("event_id", json!(null)),
        ("event_id", json!(["e1"])),
        ("type", json!("like")),
        ("type", json!("")),
        ("type", json!("VIEW")),
        ("type", json!(1)),
        ("type", json!(null)),
        ("item_id", json!("")),
        ("item_id", json!("\t")),
        ("item_id", json!("x".repeat(MAX_ID_LEN + 1))),
        ("item_id", json!("a\u{1b}b")),
        ("item_id", json!(85123)),
        ("item_id", json!({"id": "85123A"})),
        ("quantity", json!(0)),
        ("quantity", json!(-1)),
        ("quantity", json!(MAX_QUANTITY + 1)),
        ("quantity", json!(1.5)),
        ("quantity", json!("3")),
        ("quantity", json!(1e20)),
        ("quantity", json!(true)),
        ("timestamp", json!("yesterday")),
        ("timestamp", json!("12/10/2011")),
        ("timestamp", json!("2011-13-01T00:00:00Z")),
        ("timestamp", json!("2011-12-09 12:00:00")),
        ("timestamp", json!("1989-12-31T23:59:59Z")),
        ("timestamp", json!("0001-01-01T00:00:00Z")),
        ("timestamp", json!(future)),
        ("timestamp", json!(1323432000)),
        ("timestamp", json!("")),
    ]
}

/// Fields that every event must carry.
const REQUIRED_FIELDS: [&str; 3] = ["event_id", "type", "item_id"];

fn body_cases() -> Vec<Case> {
    let mut cases = Vec::new();

    // Each bad field value, alone and as the second event of a batch.
    for (field, value) in bad_event_values() {
        let mut single = valid_event(0);
        single[field] = value.clone();
        cases.push(Case::post(format!("single {field} = {value}"), single.to_string(), 400, Some(field)));

        let mut second = valid_event(1);
        second[field] = value.clone();
        let batch = json!({"events": [valid_event(0), second]});
        cases.push(Case::post(format!("batch {field} = {value}"), batch.to_string(), 400, Some(&format!("events[1].{field}"))));

        // The last event of a full batch, so that the valid ones before it are not stored either.
        let mut full: Vec<Value> = (0..MAX_EVENTS_PER_REQUEST).map(valid_event).collect();
        full[MAX_EVENTS_PER_REQUEST - 1][field] = value;
        let last = format!("events[{}].{field}", MAX_EVENTS_PER_REQUEST - 1);
        cases.push(Case::post(format!("full batch, last {field} bad"), json!({"events": full}).to_string(), 400, Some(&last)));
    }

    // Each required field missing, alone and in a batch.
    for field in REQUIRED_FIELDS {
        let mut single = valid_event(0);
        single.as_object_mut().unwrap().remove(field);
        cases.push(Case::post(format!("single without {field}"), single.to_string(), 400, Some(field)));
        let mut second = valid_event(1);
        second.as_object_mut().unwrap().remove(field);
        let batch = json!({"events": [valid_event(0), second]});
        cases.push(Case::post(format!("batch without {field}"), batch.to_string(), 400, Some(&format!("events[1].{field}"))));
    }

    // Batch shape.
    let too_many: Vec<Value> = (0..=MAX_EVENTS_PER_REQUEST).map(valid_event).collect();
    cases.push(Case::post("batch over the maximum", json!({"events": too_many}).to_string(), 400, Some("events")));
    cases.push(Case::post("empty batch", json!({"events": []}).to_string(), 400, Some("events")));
    cases.push(Case::post("events not an array", json!({"events": {"a": 1}}).to_string(), 400, Some("events")));
    cases.push(Case::post("events null", json!({"events": null}).to_string(), 400, Some("events")));
    cases.push(Case::post("events of strings", json!({"events": ["e1"]}).to_string(), 400, Some("events[0]")));
    let duplicate = json!({"events": [valid_event(0), valid_event(1), valid_event(0)]});
    cases.push(Case::post("duplicate event_id in batch", duplicate.to_string(), 400, Some("events[2].event_id")));

    // Bodies that are not an event object.
    for (name, body) in [
        ("empty body", ""),
        ("white space body", "  \n"),
        ("truncated JSON", "{\"event_id\": \"e1\""),
        ("trailing garbage", "{\"event_id\":\"e1\",\"type\":\"view\",\"item_id\":\"22423\"} x"),
        ("JSON array", "[]"),
        ("JSON null", "null"),
        ("JSON number", "42"),
        ("JSON string", "\"view\""),
        ("single quotes", "{'event_id': 'e1'}"),
        ("comment", "/* x */ {}"),
        ("empty object", "{}"),
    ] {
        cases.push(Case::post(name, body, 400, None));
    }
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    cases.push(Case::post("nesting 10,000 deep", deep, 400, None));
    let mut huge_number = valid_event(0).to_string();
    huge_number.insert_str(huge_number.len() - 1, &format!(",\"extra\":1{}", "0".repeat(5_000)));
    cases.push(Case::post("5,000-digit number", huge_number, 400, None));
    let mut invalid_utf8 = br#"{"event_id":"e1","type":"view","item_id":""#.to_vec();
    invalid_utf8.extend_from_slice(&[0xff, 0xfe]);
    invalid_utf8.extend_from_slice(br#""}"#);
    cases.push(Case::post("invalid UTF-8 body", invalid_utf8, 400, None));

    // Content type and size.
    for content_type in ["text/plain", "application/xml", "application/x-www-form-urlencoded", "multipart/form-data", "json"] {
        let mut case = Case::post(format!("content type {content_type}"), valid_event(0).to_string(), 415, None);
        case.content_type = Some(content_type);
        cases.push(case);
    }
    let mut missing_type = Case::post("no content type", valid_event(0).to_string(), 415, None);
    missing_type.content_type = None;
    cases.push(missing_type);
    let mut large = valid_event(0);
    large["padding"] = json!("x".repeat(70 * 1024));
    cases.push(Case::post("body over 64 KiB", large.to_string(), 413, None));

    cases
}

fn path_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let long_id = "x".repeat(MAX_ID_LEN + 1);
    let bad_ids: Vec<(String, &str)> = vec![
        ("%20%20".to_string(), "blank"),
        ("a%00b".to_string(), "NUL"),
        ("a%07b".to_string(), "bell"),
        ("a%0Ab".to_string(), "new line"),
        ("a%1Fb".to_string(), "unit separator"),
        ("a%7Fb".to_string(), "delete"),
        (long_id, "too long"),
        ("x-%FF".to_string(), "invalid UTF-8"),
        ("x-%C3".to_string(), "truncated UTF-8"),
    ];
    for (id, reason) in &bad_ids {
        cases.push(Case::get(format!("similar id {reason}"), Function::Similarity, format!("/items/{id}/similar"), "", None));
        cases.push(Case::get(
            format!("recommendations id {reason}"),
            Function::Inference,
            format!("/users/{id}/recommendations"),
            "",
            None,
        ));
        cases.push(Case::get(format!("preferences id {reason}"), Function::Preferences, format!("/users/{id}/preferences"), "", None));
        let mut post = Case::post(format!("events id {reason}"), valid_event(0).to_string(), 400, None);
        post.path = format!("/users/{id}/events");
        cases.push(post);
    }
    cases
}

fn query_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let routes = [
        (Function::Similarity, "/items/85123A/similar"),
        (Function::Similarity, "/items/popular"),
        (Function::Inference, format!("/users/{USER}/recommendations").leak() as &str),
    ];
    let bad_limits =
        ["0", "-1", "101", "1000000", "99999999999999999999", "abc", "1.5", "1e2", "", "%20", "0x10", "%2B5", "10abc", "limit"];
    for (function, path) in routes {
        for limit in bad_limits {
            cases.push(Case::get(format!("{path} limit={limit}"), function, path, format!("limit={limit}"), Some("limit")));
        }
        cases.push(Case::get(format!("{path} repeated limit"), function, path, "limit=5&limit=6", Some("limit")));
    }
    for window in ["weekly", "", "RECENT", "all-time", "recent,all_time"] {
        cases.push(Case::get(
            format!("popular window={window}"),
            Function::Similarity,
            "/items/popular",
            format!("window={window}"),
            Some("window"),
        ));
    }
    cases.push(Case::get(
        "popular repeated window",
        Function::Similarity,
        "/items/popular",
        "window=recent&window=all_time",
        Some("window"),
    ));
    cases
}

fn check(case: &Case, response: &lambda_http::Response<Body>) -> Result<(), String> {
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").and_then(|value| value.to_str().ok()).unwrap_or("");
    let problem: Value = match response.body() {
        Body::Text(text) => serde_json::from_str(text).map_err(|error| format!("body is not JSON: {error}"))?,
        other => return Err(format!("body is not text: {other:?}")),
    };
    if status != case.status {
        return Err(format!("status {status}, expected {}: {problem}", case.status));
    }
    if content_type != "application/problem+json" {
        return Err(format!("content type {content_type:?}: {problem}"));
    }
    if problem["status"] != status
        || problem["title"].as_str().unwrap_or("").is_empty()
        || problem["detail"].as_str().unwrap_or("").is_empty()
    {
        return Err(format!("incomplete problem: {problem}"));
    }
    if let Some(field) = &case.field {
        if problem["field"] != field.as_str() {
            return Err(format!("field {}, expected {field}: {problem}", problem["field"]));
        }
        if problem.get("value").is_none() {
            return Err(format!("no value named: {problem}"));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_problem_and_writes_nothing() {
    let stack = local_stack("badinput").await;
    publish_synthetic(&stack).await;
    let states: [(Function, AppState); 3] = [Function::Similarity, Function::Inference, Function::Preferences]
        .map(|function| (function, stack.app(function, Duration::from_secs(60))));

    let cases: Vec<Case> = body_cases().into_iter().chain(path_cases()).chain(query_cases()).collect();
    let mut tried: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for case in &cases {
        let state = &states.iter().find(|(function, _)| *function == case.function).unwrap().1;
        let response = handle(state, case.request()).await;
        *tried.entry(case.route()).or_default() += 1;
        if let Err(reason) = check(case, &response) {
            failures.push(format!("{}: {reason}", case.name));
        }
    }

    let stored = stack.store.list_events(USER).await.unwrap();
    println!("bad-input cases tried: {} in all", cases.len());
    for (route, count) in &tried {
        println!("  {route}: {count}");
    }
    println!("events stored by rejected requests: {}", stored.len());
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
    assert!(cases.len() >= 200, "only {} cases", cases.len());
    assert!(stored.is_empty(), "rejected requests stored {stored:?}");
}

/// Collects everything the subscriber writes, for the log test.
#[derive(Clone, Default)]
struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_hold_no_bodies_or_credentials() {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    tracing_subscriber::fmt().json().with_max_level(tracing::Level::DEBUG).with_writer(move || writer.clone()).init();

    let stack = local_stack("badlogs").await;
    publish_synthetic(&stack).await;
    let state = stack.app(Function::Preferences, Duration::from_secs(60));

    // Markers in an unknown field, in a rejected field value and in credentials,
    // and a stored event whose raw body must not appear either.
    let stored = valid_event(0).to_string();
    let mut unknown = valid_event(1);
    unknown["note"] = json!("BODY-MARKER-1");
    let mut rejected = valid_event(2);
    rejected["quantity"] = json!("BODY-MARKER-2");
    let cases = [
        Case::post("stored event", stored.clone(), 201, None),
        Case::post("unknown field", unknown.to_string(), 400, None),
        Case::post("rejected event", rejected.to_string(), 400, Some("quantity")),
        Case::post("malformed body", "{\"event_id\": \"BODY-MARKER-3\"", 400, None),
    ];
    for case in &cases {
        let mut request = case.request();
        request.headers_mut().insert("authorization", "Bearer CREDENTIAL-MARKER".parse().unwrap());
        request.headers_mut().insert("x-amz-security-token", "CREDENTIAL-MARKER".parse().unwrap());
        let response = handle(&state, request).await;
        assert_eq!(response.status().as_u16(), case.status, "{}", case.name);
    }

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("stored events"), "the subscriber captured nothing: {text}");
    for marker in ["BODY-MARKER", "CREDENTIAL-MARKER", stored.as_str()] {
        assert!(!text.contains(marker), "the logs contain {marker}:\n{text}");
    }
}

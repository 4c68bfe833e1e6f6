//! Handler tests: the API Gateway events in `events/` fed to the handlers, with
//! the model published to DynamoDB Local and the S3 emulator.

mod common;

use std::time::Duration;

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde_json::Value;
use shoprec::handlers::{handle, AppState, Function};

use common::{local_stack, publish_synthetic, repo_root};

fn event(name: &str) -> Value {
    let path = repo_root().join("events").join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    serde_json::from_str(&text).expect("event is JSON")
}

fn request(event: &Value) -> Request {
    lambda_http::request::from_str(&event.to_string()).expect("valid API Gateway v2 event")
}

async fn call(state: &AppState, event: &Value) -> (StatusCode, String, Value) {
    let response: Response<Body> = handle(state, request(event)).await;
    let status = response.status();
    let content_type = response.headers().get("content-type").map(|value| value.to_str().unwrap().to_string()).unwrap_or_default();
    let body = match response.body() {
        Body::Text(text) => serde_json::from_str(text).expect("JSON body"),
        other => panic!("expected a text body, got {other:?}"),
    };
    (status, content_type, body)
}

fn with_query(mut event: Value, query: &str, value: &str) -> Value {
    event["rawQueryString"] = Value::String(format!("{query}={value}"));
    event["queryStringParameters"] = serde_json::json!({ query: value });
    event
}

#[tokio::test]
async fn similar_items_event_returns_neighbours() {
    let stack = local_stack("similar").await;
    let published = publish_synthetic(&stack).await;
    let state = stack.app(Function::Similarity, Duration::from_secs(60));

    let (status, content_type, body) = call(&state, &event("similar-items")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(content_type, "application/json");
    assert_eq!(body["item_id"], "85123A");
    assert_eq!(body["title"], "WHITE HANGING HEART T-LIGHT HOLDER");
    assert_eq!(body["model_version"], published.model_version.as_str());
    let neighbours = body["neighbours"].as_array().unwrap();
    assert!(!neighbours.is_empty());
    assert!(neighbours.len() <= 5);
    let same_theme = ["21733", "22804", "22470"];
    assert!(same_theme.contains(&neighbours[0]["item_id"].as_str().unwrap()), "{body}");
    assert!(neighbours.iter().all(|n| n["title"].as_str().is_some_and(|t| !t.is_empty())));
}

#[tokio::test]
async fn similar_items_unknown_item_is_404_problem() {
    let stack = local_stack("similar404").await;
    publish_synthetic(&stack).await;
    let state = stack.app(Function::Similarity, Duration::from_secs(60));

    let mut unknown = event("similar-items");
    unknown["rawPath"] = Value::String("/items/NOPE/similar".into());
    unknown["pathParameters"]["item_id"] = Value::String("NOPE".into());
    let (status, content_type, body) = call(&state, &unknown).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(body["status"], 404);
    assert!(body["detail"].as_str().unwrap().contains("NOPE"));
}

#[tokio::test]
async fn limit_out_of_range_is_400_problem() {
    let stack = local_stack("limit").await;
    publish_synthetic(&stack).await;
    let state = stack.app(Function::Similarity, Duration::from_secs(60));

    for bad in ["0", "101", "abc", "-1", "1.5", ""] {
        let (status, content_type, body) = call(&state, &with_query(event("popular-items"), "limit", bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "limit={bad:?}: {body}");
        assert_eq!(content_type, "application/problem+json");
        assert_eq!(body["field"], "limit");
        assert_eq!(body["value"], bad);
    }
}

#[tokio::test]
async fn popular_items_event_lists_items() {
    let stack = local_stack("popular").await;
    publish_synthetic(&stack).await;
    let state = stack.app(Function::Similarity, Duration::from_secs(60));

    let (status, _, body) = call(&state, &event("popular-items")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["window"], "recent");
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    assert!(items.iter().all(|item| item["buyers"].as_u64().unwrap() > 0));

    let (status, _, body) = call(&state, &with_query(event("popular-items"), "window", "all_time")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["window"], "all_time");

    let (status, _, body) = call(&state, &with_query(event("popular-items"), "window", "weekly")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["field"], "window");
}

#[tokio::test]
async fn recommendations_event_excludes_purchases() {
    let stack = local_stack("recommend").await;
    let published = publish_synthetic(&stack).await;
    let state = stack.app(Function::Inference, Duration::from_secs(60));

    let (status, _, body) = call(&state, &event("recommendations")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], "17850");
    assert_eq!(body["model_version"], published.model_version.as_str());
    assert_eq!(body["known_user"], true);
    assert_eq!(body["fallback"], Value::Null);

    let profile = stack.store.get_profile(&published.model_version, "17850").await.unwrap().unwrap();
    let bought: Vec<&str> = profile.purchases.iter().map(|p| p.item_id.as_str()).collect();
    let recommendations = body["recommendations"].as_array().unwrap();
    assert!(!recommendations.is_empty());
    for recommendation in recommendations {
        let item_id = recommendation["item_id"].as_str().unwrap();
        assert!(!bought.contains(&item_id), "recommended {item_id}, which 17850 bought");
        assert!(["neighbours", "popular"].contains(&recommendation["source"].as_str().unwrap()));
        assert!(recommendation["score"].as_f64().is_some());
    }
}

#[tokio::test]
async fn trained_profile_is_read_once_per_version() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use shoprec::store::keys;

    let stack = local_stack("profilecache").await;
    let published = publish_synthetic(&stack).await;
    let state = stack.app(Function::Inference, Duration::from_secs(60));
    let (_, _, first) = call(&state, &event("recommendations")).await;
    assert_eq!(first["known_user"], true, "{first}");

    // A published version's profiles never change, so the cached profile
    // serves the next request although the stored one is gone.
    stack
        .dynamodb
        .delete_item()
        .table_name(&stack.store.tables().profiles)
        .key(keys::MODEL_VERSION, AttributeValue::S(published.model_version.clone()))
        .key(keys::USER_ID, AttributeValue::S("17850".into()))
        .send()
        .await
        .unwrap();
    let (status, _, second) = call(&state, &event("recommendations")).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second, first);

    let fresh = stack.app(Function::Inference, Duration::from_secs(60));
    let (_, _, uncached) = call(&fresh, &event("recommendations")).await;
    assert_eq!(uncached["known_user"], false, "a new state reads the table: {uncached}");
}

#[tokio::test]
async fn recommendations_unknown_user_gets_popular() {
    let stack = local_stack("fallback").await;
    publish_synthetic(&stack).await;
    let state = stack.app(Function::Inference, Duration::from_secs(60));

    let mut unknown = with_query(event("recommendations"), "limit", "3");
    unknown["rawPath"] = Value::String("/users/new-visitor/recommendations".into());
    unknown["pathParameters"]["user_id"] = Value::String("new-visitor".into());
    let (status, _, body) = call(&state, &unknown).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["known_user"], false);
    assert_eq!(body["fallback"], "popular");
    let recommendations = body["recommendations"].as_array().unwrap();
    assert_eq!(recommendations.len(), 3);
    assert!(recommendations.iter().all(|r| r["source"] == "popular"));
}

#[tokio::test]
async fn post_events_is_idempotent_and_updates_profile() {
    let stack = local_stack("events").await;
    publish_synthetic(&stack).await;
    let preferences = stack.app(Function::Preferences, Duration::from_secs(60));
    let inference = stack.app(Function::Inference, Duration::from_secs(60));

    let (status, _, body) = call(&preferences, &event("post-events")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["stored"], serde_json::json!(["sample-view-1", "sample-purchase-1"]));

    let (status, _, body) = call(&preferences, &event("post-events")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["stored"], serde_json::json!([]));
    assert_eq!(body["duplicates"], serde_json::json!(["sample-view-1", "sample-purchase-1"]));

    let stored = stack.store.list_events("17850").await.unwrap();
    assert_eq!(stored.len(), 2);

    let (status, _, body) = call(&preferences, &event("preferences")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["events"]["purchase"], 1);
    assert_eq!(body["events"]["view"], 1);
    assert_eq!(body["last_activity"], "2011-12-10T09:05:00Z");
    assert!(body["favourite_items"].as_array().unwrap().iter().any(|item| item["item_id"] == "22423"));

    let (_, _, body) = call(&inference, &event("recommendations")).await;
    let recommended: Vec<&str> = body["recommendations"].as_array().unwrap().iter().map(|r| r["item_id"].as_str().unwrap()).collect();
    assert!(!recommended.contains(&"22423"), "the purchased item 22423 is still recommended");
}

#[tokio::test]
async fn post_events_rejects_bad_input_without_writing() {
    let stack = local_stack("badevents").await;
    publish_synthetic(&stack).await;
    let state = stack.app(Function::Preferences, Duration::from_secs(60));

    let mut wrong_type = event("post-events");
    wrong_type["headers"]["content-type"] = Value::String("text/plain".into());
    let (status, content_type, _) = call(&state, &wrong_type).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(content_type, "application/problem+json");

    let cases = [
        (r#"{"event_id":"x1","type":"like","item_id":"22423"}"#, "type"),
        (r#"{"event_id":"","type":"view","item_id":"22423"}"#, "event_id"),
        (r#"{"event_id":"x1","type":"view","item_id":"22423","quantity":-2}"#, "quantity"),
        (r#"{"event_id":"x1","type":"view","item_id":"22423","timestamp":"12/10/2011"}"#, "timestamp"),
        (
            r#"{"events":[{"event_id":"x1","type":"view","item_id":"A"},{"event_id":"x1","type":"view","item_id":"B"}]}"#,
            "events[1].event_id",
        ),
    ];
    for (body, field) in cases {
        let mut bad = event("post-events");
        bad["body"] = Value::String(body.into());
        let (status, _, problem) = call(&state, &bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {problem}");
        assert_eq!(problem["field"], field, "{body}");
    }

    let mut malformed = event("post-events");
    malformed["body"] = Value::String("{\"events\": [".into());
    let (status, _, problem) = call(&state, &malformed).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem["title"], "Invalid JSON body");

    let stored = stack.store.list_events("17850").await.unwrap();
    assert!(stored.is_empty(), "rejected requests stored {stored:?}");
}

#[tokio::test]
async fn preferences_event_describes_user() {
    let stack = local_stack("preferences").await;
    publish_synthetic(&stack).await;
    let state = stack.app(Function::Preferences, Duration::from_secs(60));

    let (status, _, body) = call(&state, &event("preferences")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], "17850");
    assert_eq!(body["known_user"], true);
    assert!(!body["favourite_items"].as_array().unwrap().is_empty());
    assert_eq!(body["themes"][0]["term"], "heart", "{body}");
    assert!(body["price_band"]["band"].is_string());
    assert!(body["purchase_frequency"]["orders"].as_u64().unwrap() > 5);

    let mut unknown = event("preferences");
    unknown["rawPath"] = Value::String("/users/nobody/preferences".into());
    unknown["pathParameters"]["user_id"] = Value::String("nobody".into());
    let (status, _, body) = call(&state, &unknown).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["detail"].as_str().unwrap().contains("nobody"));
}

#[tokio::test]
async fn wrong_function_route_is_404() {
    let stack = local_stack("routes").await;
    publish_synthetic(&stack).await;
    let state = stack.app(Function::Similarity, Duration::from_secs(60));

    let (status, content_type, _) = call(&state, &event("recommendations")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(content_type, "application/problem+json");
}

#[tokio::test]
async fn no_published_model_is_503_with_retry_after() {
    let stack = local_stack("nomodel").await;
    let state = stack.app(Function::Similarity, Duration::from_secs(60));

    let response = handle(&state, request(&event("popular-items"))).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
}

#[tokio::test]
async fn view_only_visitor_gets_neighbours_first() {
    let stack = local_stack("viewonly").await;
    publish_synthetic(&stack).await;
    let preferences = stack.app(Function::Preferences, Duration::from_secs(60));
    let inference = stack.app(Function::Inference, Duration::from_secs(60));

    let mut view = event("post-events");
    view["rawPath"] = Value::String("/users/visitor-1/events".into());
    view["pathParameters"]["user_id"] = Value::String("visitor-1".into());
    view["body"] = Value::String(r#"{"event_id":"v1","type":"view","item_id":"85123A"}"#.into());
    let (status, _, body) = call(&preferences, &view).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let mut recommend = event("recommendations");
    recommend["rawPath"] = Value::String("/users/visitor-1/recommendations".into());
    recommend["pathParameters"]["user_id"] = Value::String("visitor-1".into());
    let (status, _, body) = call(&inference, &recommend).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["known_user"], false);
    assert_eq!(body["fallback"], Value::Null);
    let recommendations = body["recommendations"].as_array().unwrap();
    assert_eq!(recommendations[0]["source"], "neighbours", "{body}");
    assert!(recommendations.iter().all(|r| r["item_id"] != "85123A"), "the viewed item is recommended: {body}");
}

#[tokio::test]
async fn wrong_method_is_405_with_allow() {
    let stack = local_stack("method").await;
    publish_synthetic(&stack).await;
    let state = stack.app(Function::Preferences, Duration::from_secs(60));

    let mut delete = event("preferences");
    delete["requestContext"]["http"]["method"] = Value::String("DELETE".into());
    let response = handle(&state, request(&delete)).await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "GET");
}

#[tokio::test]
async fn invalid_utf8_path_is_400() {
    let stack = local_stack("utf8").await;
    publish_synthetic(&stack).await;
    let state = stack.app(Function::Preferences, Duration::from_secs(60));

    let mut bad = event("preferences");
    bad["rawPath"] = Value::String("/users/x-%FF/preferences".into());
    bad["pathParameters"] = Value::Null;
    let (status, _, body) = call(&state, &bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["field"], "path");
    assert_eq!(body["value"], "x-%FF");
}

#[tokio::test]
async fn repeated_limit_is_400() {
    let stack = local_stack("repeated").await;
    publish_synthetic(&stack).await;
    let state = stack.app(Function::Similarity, Duration::from_secs(60));

    let mut repeated = event("popular-items");
    repeated["rawQueryString"] = Value::String("limit=5&limit=500".into());
    repeated["queryStringParameters"] = serde_json::json!({"limit": "5,500"});
    let (status, _, body) = call(&state, &repeated).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["field"], "limit");
}

fn with_claims(mut event: Value, claims: Value) -> Value {
    event["requestContext"]["authorizer"] = serde_json::json!({ "jwt": { "claims": claims, "scopes": null } });
    event
}

#[tokio::test]
async fn user_claim_must_match_path() {
    let stack = local_stack("user-claim").await;
    publish_synthetic(&stack).await;
    let mut preferences = stack.app(Function::Preferences, Duration::from_secs(60));
    let mut inference = stack.app(Function::Inference, Duration::from_secs(60));
    preferences.user_id_claim = Some("shop_user_id".into());
    inference.user_id_claim = Some("shop_user_id".into());
    let own = serde_json::json!({ "sub": "abc", "shop_user_id": "17850" });
    let other = serde_json::json!({ "sub": "abc", "shop_user_id": "20001" });
    let without = serde_json::json!({ "sub": "abc" });

    for (state, name) in [(&preferences, "preferences"), (&inference, "recommendations"), (&preferences, "post-events")] {
        let (status, _, body) = call(state, &with_claims(event(name), own.clone())).await;
        assert!(status.is_success(), "{name} with the user's own claim: {status} {body}");

        let (status, content_type, body) = call(state, &with_claims(event(name), other.clone())).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{name} with another user's claim: {body}");
        assert_eq!(content_type, "application/problem+json");
        assert!(body["detail"].as_str().unwrap().contains("shop_user_id"), "{body}");

        let (status, _, body) = call(state, &with_claims(event(name), without.clone())).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{name} without the claim: {body}");

        let (status, _, body) = call(state, &event(name)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{name} without any token: {body}");
    }

    // Item routes name no user, so they need no claim.
    let mut similarity = stack.app(Function::Similarity, Duration::from_secs(60));
    similarity.user_id_claim = Some("shop_user_id".into());
    let (status, _, body) = call(&similarity, &event("similar-items")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn unset_claim_lets_any_caller() {
    let stack = local_stack("no-user-claim").await;
    publish_synthetic(&stack).await;
    let preferences = stack.app(Function::Preferences, Duration::from_secs(60));
    let other = serde_json::json!({ "sub": "abc", "shop_user_id": "20001" });

    let (status, _, body) = call(&preferences, &with_claims(event("preferences"), other)).await;

    assert_eq!(status, StatusCode::OK, "{body}");
}

//! Helpers shared by the integration tests: the local stack and a small synthetic shop.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use shoprec::artifacts::ArtifactStore;
use shoprec::config::{dynamodb_client, load_sdk_config, s3_client};
use shoprec::handlers::{AppState, Function};
use shoprec::ingest::{CleaningReport, InputFormat, Interaction};
use shoprec::publish::{publish, PublishReport};
use shoprec::store::{DynamoStore, TableNames};
use shoprec::template::{create_bucket, create_tables};
use shoprec::train::{train, Progress, TrainOptions, TrainedModel};

/// Returns the repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Fresh tables and bucket on the local stack for one test.
pub struct LocalStack {
    pub store: DynamoStore,
    pub artifacts: ArtifactStore,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub s3: aws_sdk_s3::Client,
}

fn require_loopback(variable: &str) -> String {
    let value = std::env::var(variable).unwrap_or_default();
    assert!(
        value.starts_with("http://127.0.0.1:"),
        "{variable} is {value:?}: start the local stack (bash scripts/stack.sh start) and source scripts/env.sh before these tests"
    );
    value
}

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// Creates uniquely named tables and a bucket from `template.yaml` on the local stack.
pub async fn local_stack(test: &str) -> LocalStack {
    require_loopback("AWS_ENDPOINT_URL_DYNAMODB");
    require_loopback("AWS_ENDPOINT_URL_S3");

    let unique = format!("{test}-{}-{}", std::process::id(), NEXT_ID.fetch_add(1, Ordering::Relaxed));
    let tables = TableNames {
        items: format!("t-{unique}-items"),
        profiles: format!("t-{unique}-profiles"),
        events: format!("t-{unique}-events"),
        model_state: format!("t-{unique}-model-state"),
        live_profiles: format!("t-{unique}-live-profiles"),
    };
    let bucket = format!("t-{unique}").to_lowercase().replace('_', "-");

    let sdk_config = load_sdk_config().await;
    let dynamodb = dynamodb_client(&sdk_config);
    let s3 = s3_client(&sdk_config);
    create_tables(&dynamodb, &repo_root().join("template.yaml"), &tables).await.expect("create tables");
    create_bucket(&s3, &bucket).await.expect("create bucket");

    LocalStack { store: DynamoStore::new(dynamodb.clone(), tables), artifacts: ArtifactStore::new(s3.clone(), bucket), dynamodb, s3 }
}

impl LocalStack {
    /// Builds a function's state on this stack; a zero refresh checks the active version on every request.
    pub fn app(&self, function: Function, refresh: Duration) -> AppState {
        AppState::new(function, self.store.clone(), self.artifacts.clone(), refresh)
    }
}

/// Progress sink that prints nothing.
pub struct Quiet;

impl Progress for Quiet {
    fn started(&mut self, _step: &str) {}
    fn finished(&mut self, _step: &str, _elapsed: std::time::Duration, _summary: &str) {}
}

const DAY: i64 = 86_400;

/// Items of the synthetic shop in three themes; the ids and titles of the first
/// theme are real ones from the Online Retail data.
pub const THEMES: [[(&str, &str); 4]; 3] = [
    [
        ("85123A", "WHITE HANGING HEART T-LIGHT HOLDER"),
        ("21733", "RED HANGING HEART T-LIGHT HOLDER"),
        ("22804", "CANDLEHOLDER PINK HANGING HEART"),
        ("22470", "HEART OF WICKER LARGE"),
    ],
    [
        ("22423", "REGENCY CAKESTAND 3 TIER"),
        ("22697", "GREEN REGENCY TEACUP AND SAUCER"),
        ("22698", "PINK REGENCY TEACUP AND SAUCER"),
        ("22699", "ROSES REGENCY TEACUP AND SAUCER"),
    ],
    [
        ("85099B", "JUMBO BAG RED RETROSPOT"),
        ("22386", "JUMBO BAG PINK POLKADOT"),
        ("21931", "JUMBO STORAGE BAG SUKI"),
        ("20712", "JUMBO BAG WOODLAND ANIMALS"),
    ],
];

/// Builds a small shop: 60 users, each loyal to one theme, ordering every 9 days
/// over 120 days, with user "17850" in the first theme.
pub fn synthetic_interactions() -> Vec<Interaction> {
    let mut rows = Vec::new();
    let mut seed: u64 = 42;
    let mut next = move || {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) as usize
    };
    for user in 0..60 {
        let user_id = if user == 0 { "17850".to_string() } else { format!("{}", 20_000 + user) };
        let theme = &THEMES[user % THEMES.len()];
        let mut day = (user % 9) as i64;
        let mut order = 0;
        while day < 120 {
            let basket = format!("{user_id}-{order}");
            for _ in 0..2 {
                let (item_id, title) = if next() % 5 == 0 { THEMES[next() % THEMES.len()][next() % 4] } else { theme[next() % 4] };
                rows.push(Interaction {
                    user_id: user_id.clone(),
                    item_id: item_id.to_string(),
                    timestamp: 1_291_161_600 + day * DAY,
                    quantity: 1.0 + (next() % 6) as f64,
                    unit_price: Some(1.25 + (item_id.len() as f64) * 0.5),
                    title: Some(title.to_string()),
                    basket_id: Some(basket.clone()),
                });
            }
            order += 1;
            day += 9;
        }
    }
    rows
}

/// Cleaning report of data that needed no cleaning.
pub fn clean_report(rows: usize) -> CleaningReport {
    CleaningReport {
        format: InputFormat::Interactions,
        rows_read: rows as u64,
        rows_kept: rows as u64,
        dropped: Default::default(),
        descriptions_trimmed: 0,
        guest_listings: Vec::new(),
    }
}

/// Training options for the small shop: two neighbours fewer than it has items per theme.
pub fn small_options() -> TrainOptions {
    let mut options = TrainOptions::default();
    options.neighbours.min_support = 1;
    options
}

/// Trains on the synthetic shop.
pub fn train_synthetic() -> (TrainedModel, TrainOptions) {
    let rows = synthetic_interactions();
    let options = small_options();
    let trained = train(&rows, &clean_report(rows.len()), &options, &mut Quiet).expect("training on the synthetic shop");
    (trained, options)
}

/// Trains on the synthetic shop and publishes the model to the stack.
pub async fn publish_synthetic(stack: &LocalStack) -> PublishReport {
    let (trained, options) = train_synthetic();
    publish(&trained, &options, &stack.store, &stack.artifacts, &mut Quiet).await.expect("publish")
}

/// Builds an API Gateway v2 request event; a POST carries `body` as JSON.
fn api_request(method: &str, path: &str, query: &str, body: Option<&str>) -> lambda_http::Request {
    let mut event = serde_json::json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {"accept": "application/json"},
        "requestContext": {
            "accountId": "123456789012", "apiId": "local", "domainName": "127.0.0.1", "domainPrefix": "local",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "test"},
            "requestId": "test", "routeKey": "$default", "stage": "$default",
            "time": "09/Dec/2011:12:00:00 +0000", "timeEpoch": 1323432000000u64
        },
        "isBase64Encoded": false
    });
    if let Some(body) = body {
        event["headers"]["content-type"] = "application/json".into();
        event["body"] = body.into();
    }
    lambda_http::request::from_str(&event.to_string()).expect("valid API Gateway v2 event")
}

/// Builds an API Gateway v2 GET request for `path` with the raw query string `query`.
pub fn get_request(path: &str, query: &str) -> lambda_http::Request {
    api_request("GET", path, query, None)
}

/// Builds an API Gateway v2 POST request for `path` with a JSON `body`.
pub fn post_request(path: &str, body: &str) -> lambda_http::Request {
    api_request("POST", path, "", Some(body))
}

//! Damaged artifacts injected into the S3 emulator: a function keeps serving the
//! last good model version, or responds 503 with `Retry-After` when it has none,
//! and never 500.

mod common;

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use lambda_http::Body;
use serde_json::Value;
use shoprec::handlers::{handle, AppState, Function};
use shoprec::model::{artifact_key, files};

use common::{get_request, local_stack, publish_synthetic, LocalStack};

/// How an artifact is damaged.
#[derive(Debug, Clone, Copy)]
enum Damage {
    Missing,
    Truncated,
    FlippedByte,
}

async fn damage(stack: &LocalStack, key: &str, kind: Damage) {
    let bucket = stack.artifacts.bucket();
    match kind {
        Damage::Missing => {
            stack.s3.delete_object().bucket(bucket).key(key).send().await.unwrap();
        }
        Damage::Truncated | Damage::FlippedByte => {
            let mut bytes = stack.artifacts.get(key).await.unwrap();
            if matches!(kind, Damage::Truncated) {
                bytes.truncate(bytes.len() / 2);
            } else {
                let middle = bytes.len() / 2;
                bytes[middle] ^= 0x20;
            }
            stack.s3.put_object().bucket(bucket).key(key).body(ByteStream::from(bytes)).send().await.unwrap();
        }
    }
}

/// One route per function, each of which needs the model.
const ROUTES: [(Function, &str); 3] = [
    (Function::Similarity, "/items/popular"),
    (Function::Inference, "/users/17850/recommendations"),
    (Function::Preferences, "/users/17850/preferences"),
];

async fn call(state: &AppState, path: &str) -> (u16, Option<String>, Value) {
    let response = handle(state, get_request(path, "limit=3")).await;
    let retry_after = response.headers().get("retry-after").map(|value| value.to_str().unwrap().to_string());
    let body = match response.body() {
        Body::Text(text) => serde_json::from_str(text).unwrap(),
        other => panic!("expected text, got {other:?}"),
    };
    (response.status().as_u16(), retry_after, body)
}

/// Files that every function loads, and files that only the inference function loads.
const SHARED_FILES: [&str; 3] = [files::MANIFEST, files::CATALOGUE, files::POPULARITY];
const INFERENCE_FILES: [&str; 3] = [files::NEIGHBOURS, files::RANKER, files::ITEM_EMBEDDINGS];

#[tokio::test(flavor = "multi_thread")]
async fn damaged_new_version_keeps_last_good() {
    let stack = local_stack("faults").await;
    let good = publish_synthetic(&stack).await.model_version;
    let states: Vec<(Function, &str, AppState)> =
        ROUTES.iter().map(|(function, path)| (*function, *path, stack.app(*function, Duration::ZERO))).collect();
    for (_, path, state) in &states {
        let (status, _, body) = call(state, path).await;
        assert_eq!(status, 200, "{path}: {body}");
    }

    let mut injected = 0;
    for file in SHARED_FILES.iter().chain(&INFERENCE_FILES) {
        for kind in [Damage::Missing, Damage::Truncated, Damage::FlippedByte] {
            let broken = publish_synthetic(&stack).await.model_version;
            damage(&stack, &artifact_key(&broken, file), kind).await;
            injected += 1;

            for (function, path, state) in &states {
                let (status, _, body) = call(state, path).await;
                let case = format!("{file} {kind:?}, {function:?} {path}");
                assert_eq!(status, 200, "{case}: {body}");
                let loads_file = SHARED_FILES.contains(file) || *function == Function::Inference;
                if loads_file {
                    assert_eq!(body["model_version"], good.as_str(), "{case}: the damaged version replaced the good one");
                }
            }
        }
    }
    println!("faults injected: {injected} damaged artifacts, every request served");
}

#[tokio::test(flavor = "multi_thread")]
async fn damaged_first_version_is_503_with_retry_after() {
    let stack = local_stack("faultsfirst").await;
    let broken = publish_synthetic(&stack).await.model_version;
    damage(&stack, &artifact_key(&broken, files::CATALOGUE), Damage::FlippedByte).await;

    for (function, path) in ROUTES {
        let state = stack.app(function, Duration::ZERO);
        let (status, retry_after, body) = call(&state, path).await;
        assert_eq!(status, 503, "{path}: {body}");
        assert!(retry_after.is_some(), "{path} has no Retry-After");
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains(&broken), "{path}: the problem does not name the version: {detail}");
        assert!(detail.contains(files::CATALOGUE), "{path}: the problem does not name the artifact: {detail}");
    }
}

/// A TCP server on loopback that accepts connections and never responds.
async fn silent_server() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        // Keeping the sockets open makes the client wait instead of seeing a reset.
        let mut open_sockets = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open_sockets.push(socket);
        }
    });
    (address, task)
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_dynamodb_times_out_with_503() {
    let stack = local_stack("slowdynamo").await;
    publish_synthetic(&stack).await;
    let (address, server) = silent_server().await;

    // The functions' own SDK settings, with DynamoDB pointed at the silent server.
    let sdk_config = shoprec::config::load_sdk_config().await;
    let silent = aws_sdk_dynamodb::config::Builder::from(&sdk_config).endpoint_url(format!("http://{address}")).build();
    let store = shoprec::store::DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(silent), stack.store.tables().clone());
    let state = AppState::new(Function::Inference, store, stack.artifacts.clone(), Duration::ZERO);

    let started = std::time::Instant::now();
    let (status, retry_after, body) = call(&state, "/users/17850/recommendations").await;
    let elapsed = started.elapsed();
    server.abort();

    assert_eq!(status, 503, "{body}");
    assert!(retry_after.is_some(), "no Retry-After: {body}");
    // The operation timeout is 5 s; the Lambda timeout in template.yaml is 10 s.
    assert!(elapsed < Duration::from_secs(7), "the request took {elapsed:?}");
    println!("faults injected: silent DynamoDB, request ended with 503 after {:.1} s", elapsed.as_secs_f64());
}

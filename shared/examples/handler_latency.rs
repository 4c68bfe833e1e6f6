//! Measures warm handler latency of every route against the model published
//! in the stack named by the environment (see `scripts/env.sh`).
//!
//! Run: `cargo run --release -p shoprec --example handler_latency [REQUESTS]`.
//! It prints p50, p99 and max per route. The first request of each function
//! loads the model, so it is reported separately as the model load.

use std::time::{Duration, Instant};

use shoprec::handlers::{handle, AppState, Function};

fn request(method: &str, path: &str, query: &str, body: Option<&str>) -> lambda_http::Request {
    let mut event = serde_json::json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {"content-type": "application/json"},
        "requestContext": {
            "accountId": "123456789012", "apiId": "local", "domainName": "127.0.0.1", "domainPrefix": "local",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "bench"},
            "requestId": "bench", "routeKey": "$default", "stage": "$default",
            "time": "09/Dec/2011:12:00:00 +0000", "timeEpoch": 1323432000000u64
        },
        "isBase64Encoded": false
    });
    if let Some(body) = body {
        event["body"] = serde_json::Value::String(body.to_string());
    }
    lambda_http::request::from_str(&event.to_string()).expect("valid event")
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * fraction).round() as usize]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let requests: usize = std::env::args().nth(1).map(|text| text.parse()).transpose()?.unwrap_or(1_000);
    let routes = [
        (Function::Similarity, "GET /items/85123A/similar", "GET", "/items/85123A/similar", "limit=10"),
        (Function::Similarity, "GET /items/popular", "GET", "/items/popular", "limit=10"),
        (Function::Inference, "GET /users/17850/recommendations", "GET", "/users/17850/recommendations", "limit=10"),
        (Function::Inference, "GET /users/12347/recommendations", "GET", "/users/12347/recommendations", "limit=10"),
        (Function::Preferences, "GET /users/17850/preferences", "GET", "/users/17850/preferences", ""),
    ];

    println!("{:<36} {:>12} {:>10} {:>10} {:>10}", "route", "model load", "p50", "p99", "max");
    for (function, name, method, path, query) in routes {
        let state = AppState::from_env(function).await?;
        let started = Instant::now();
        let response = handle(&state, request(method, path, query, None)).await;
        let cold = started.elapsed();
        assert_eq!(response.status(), 200, "{name} answered {}", response.status());

        let mut times = Vec::with_capacity(requests);
        for _ in 0..requests {
            let started = Instant::now();
            let response = handle(&state, request(method, path, query, None)).await;
            times.push(started.elapsed());
            assert_eq!(response.status(), 200);
        }
        times.sort();
        println!(
            "{name:<36} {:>9.1} ms {:>7.0} µs {:>7.0} µs {:>7.0} µs",
            cold.as_secs_f64() * 1e3,
            percentile(&times, 0.5).as_secs_f64() * 1e6,
            percentile(&times, 0.99).as_secs_f64() * 1e6,
            times[times.len() - 1].as_secs_f64() * 1e6
        );
    }
    Ok(())
}

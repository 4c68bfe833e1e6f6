//! Feeds arbitrary bytes to the event body parser and, as a query string, to the
//! limit parser. Neither may panic, and every accepted batch must satisfy the
//! input rules that the handlers rely on.

#![no_main]

use std::collections::HashSet;

use chrono::TimeZone;
use libfuzzer_sys::fuzz_target;
use shoprec::http::{parse_limit, MAX_LIMIT};
use shoprec::preferences::{parse_events, MAX_EVENTS_PER_REQUEST, MAX_ID_LEN, MAX_QUANTITY};

fuzz_target!(|data: &[u8]| {
    let now = chrono::Utc.timestamp_opt(1_323_432_000, 0).unwrap();
    if let Ok(events) = parse_events("fuzz-user", data, now) {
        assert!(!events.is_empty(), "an empty batch was accepted");
        assert!(events.len() <= MAX_EVENTS_PER_REQUEST, "{} events were accepted", events.len());
        let mut ids = HashSet::new();
        for event in &events {
            assert!(ids.insert(event.event_id.clone()), "duplicate event id accepted");
            for id in [&event.event_id, &event.item_id] {
                assert!(!id.trim().is_empty(), "blank id accepted: {id:?}");
                assert!(id.len() <= MAX_ID_LEN, "id of {} bytes accepted", id.len());
                assert!(!id.chars().any(char::is_control), "control character accepted: {id:?}");
            }
            assert!((1..=MAX_QUANTITY).contains(&event.quantity));
            assert!(event.timestamp <= now.timestamp() + 300);
        }
    }

    if let Ok(query) = std::str::from_utf8(data) {
        let uri = format!("https://127.0.0.1/items/popular?{query}");
        if let Ok(request) = lambda_http::http::Request::builder().uri(uri).body(lambda_http::Body::Empty) {
            if let Ok(limit) = parse_limit(&lambda_http::Request::from(request)) {
                assert!((1..=MAX_LIMIT).contains(&limit));
            }
        }
    }
});

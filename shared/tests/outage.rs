//! DynamoDB Local killed in the middle of a stream of event writes. Concurrent
//! clients get 503 with `Retry-After` and resend the same batches with the same
//! event ids. After DynamoDB Local restarts on the same database file, the events
//! table contains exactly the events sent, each once, with the fields sent.
//!
//! The test starts its own DynamoDB Local with `-dbPath` in a temporary folder,
//! so the data outlives the process, and kills it with SIGKILL, which models a
//! crash: writes in flight get a reset connection or no response at all.

mod common;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat};
use lambda_http::Body;
use serde_json::{json, Value};
use shoprec::artifacts::ArtifactStore;
use shoprec::config::{load_sdk_config, s3_client};
use shoprec::handlers::{handle, AppState, Function};
use shoprec::preferences::{EventType, StoredEvent};
use shoprec::store::{DynamoStore, TableNames};
use shoprec::template::create_tables;

use common::{post_request, repo_root, THEMES};

/// Concurrent clients, batches per client and events per batch.
const CLIENTS: usize = 4;
const BATCHES_PER_CLIENT: usize = 40;
const EVENTS_PER_BATCH: usize = 5;

/// Users per client. A client sends its batches to them in turn.
const USERS_PER_CLIENT: usize = 3;

/// Successful batches of all clients before DynamoDB Local is killed.
const BATCHES_BEFORE_KILL: usize = 40;

/// Minimum time between the kill and the restart.
const DOWN_TIME: Duration = Duration::from_millis(2_500);

/// Maximum wait for DynamoDB Local to respond after it starts, because a cold
/// JVM on a busy machine takes a few seconds.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Maximum time the clients may take for all their batches, outage included.
const CLIENT_DEADLINE: Duration = Duration::from_secs(45);

/// Wait before a resend when a 503 has no readable `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// 2024-01-01T00:00:00Z as unix seconds, the time stamp of the first event.
const FIRST_TIMESTAMP: i64 = 1_704_067_200;

/// User of the batch that is partly written before the kill.
const PARTIAL_USER: &str = "outage-partial";

/// Events of that batch written before the kill.
const PARTIAL_WRITTEN: usize = 2;

/// Reads a variable that `scripts/env.sh` sets, or fails with the commands that set it.
fn required_env(name: &str) -> String {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => value,
        _ => panic!(
            "{name} is not set: install Java 17 and DynamoDB Local with `bash scripts/install-tools.sh`, \
             then `source scripts/env.sh` before cargo"
        ),
    }
}

/// A DynamoDB Local process that this test started, with its database folder.
///
/// Dropping it kills the process, so a failing test leaves no java process behind.
struct DynamoDbLocal {
    java: String,
    jar: PathBuf,
    port: u16,
    folder: PathBuf,
    process: Option<Child>,
}

impl DynamoDbLocal {
    /// Starts DynamoDB Local on a free loopback port with a new database folder.
    fn start() -> Self {
        let java = required_env("SHOPREC_JAVA17");
        let jar = PathBuf::from(required_env("SHOPREC_DYNAMODB_LOCAL_JAR"));
        let folder = std::env::temp_dir().join(format!(
            "shoprec-outage-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        ));
        std::fs::create_dir_all(&folder).expect("create the database folder");

        // The port is free when this listener closes. Another process could take
        // it before Java binds it, which makes the start-up poll time out.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();

        let mut local = DynamoDbLocal { java, jar, port, folder, process: None };
        local.spawn();
        local
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log_path(&self) -> PathBuf {
        self.folder.join("dynamodb-local.log")
    }

    /// Starts the java process on this port and database folder, the same way scripts/stack.sh does.
    fn spawn(&mut self) {
        let log = File::options().create(true).append(true).open(self.log_path()).expect("open the DynamoDB Local log");
        let library_path = self.jar.parent().expect("the jar is in a folder").join("DynamoDBLocal_lib");
        let child = Command::new(&self.java)
            .arg(format!("-Djava.library.path={}", library_path.display()))
            .arg("-jar")
            .arg(&self.jar)
            .args(["-disableTelemetry", "-sharedDb", "-port", &self.port.to_string(), "-dbPath"])
            .arg(&self.folder)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log file handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| panic!("failed to start {} -jar {}: {error}", self.java, self.jar.display()));
        self.process = Some(child);
    }

    /// Sends SIGKILL to the process this test started and reaps it, which frees the port.
    fn kill(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until DynamoDB Local responds to ListTables, or fails after [`STARTUP_TIMEOUT`].
    async fn wait_until_ready(&mut self, client: &aws_sdk_dynamodb::Client) {
        let started = Instant::now();
        loop {
            if let Some(child) = self.process.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("DynamoDB Local exited with {status} during start-up: {}", self.log_tail());
                }
            }
            let listening = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok();
            if listening && client.list_tables().send().await.is_ok() {
                return;
            }
            assert!(
                started.elapsed() < STARTUP_TIMEOUT,
                "DynamoDB Local did not respond on port {} within {STARTUP_TIMEOUT:?}: {}",
                self.port,
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        format!("last lines of {}:\n{}", self.log_path().display(), lines[lines.len().saturating_sub(20)..].join("\n"))
    }
}

impl Drop for DynamoDbLocal {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("outage test failed: DynamoDB Local database and log kept in {}", self.folder.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.folder);
        }
    }
}

/// One event as the client sends it, and the fields it expects stored.
#[derive(Debug, Clone)]
struct SentEvent {
    event_id: String,
    event_type: EventType,
    item_id: String,
    quantity: u32,
    timestamp: i64,
}

impl SentEvent {
    fn to_json(&self) -> Value {
        let event_type = match self.event_type {
            EventType::View => "view",
            EventType::AddToCart => "add_to_cart",
            EventType::Purchase => "purchase",
        };
        let timestamp = DateTime::from_timestamp(self.timestamp, 0).unwrap().to_rfc3339_opts(SecondsFormat::Secs, true);
        json!({
            "event_id": self.event_id,
            "type": event_type,
            "item_id": self.item_id,
            "quantity": self.quantity,
            "timestamp": timestamp,
        })
    }

    fn to_stored(&self, user_id: &str) -> StoredEvent {
        StoredEvent {
            user_id: user_id.to_string(),
            event_id: self.event_id.clone(),
            event_type: self.event_type,
            item_id: self.item_id.clone(),
            quantity: self.quantity,
            timestamp: self.timestamp,
            received_at: chrono::Utc::now().timestamp(),
        }
    }
}

/// One request body of events for one user.
#[derive(Debug, Clone)]
struct Batch {
    user_id: String,
    events: Vec<SentEvent>,
}

impl Batch {
    fn path(&self) -> String {
        format!("/users/{}/events", self.user_id)
    }

    fn body(&self) -> String {
        json!({"events": self.events.iter().map(SentEvent::to_json).collect::<Vec<_>>()}).to_string()
    }

    fn event_ids(&self) -> HashSet<String> {
        self.events.iter().map(|event| event.event_id.clone()).collect()
    }
}

/// Builds a batch with a fixed mix of event types, items and quantities.
fn make_batch(user_id: String, id_prefix: &str, sequence: usize) -> Batch {
    let events = (0..EVENTS_PER_BATCH)
        .map(|index| {
            let number = sequence * EVENTS_PER_BATCH + index;
            let event_type = [EventType::View, EventType::AddToCart, EventType::Purchase][number % 3];
            SentEvent {
                event_id: format!("{id_prefix}-e{index}"),
                event_type,
                item_id: THEMES[number % THEMES.len()][number % 4].0.to_string(),
                quantity: 1 + (number % 4) as u32,
                timestamp: FIRST_TIMESTAMP + number as i64,
            }
        })
        .collect();
    Batch { user_id, events }
}

/// One response to one send of a batch.
#[derive(Debug)]
struct RecordedResponse {
    status: u16,
    retry_after: Option<String>,
    content_type: Option<String>,
    body: Value,
    sent_at: Instant,
}

impl RecordedResponse {
    fn ids(&self, field: &str) -> Vec<String> {
        self.body[field].as_array().map(|ids| ids.iter().filter_map(|id| id.as_str().map(String::from)).collect()).unwrap_or_default()
    }
}

async fn send(state: &AppState, batch: &Batch) -> RecordedResponse {
    let sent_at = Instant::now();
    let response = handle(state, post_request(&batch.path(), &batch.body())).await;
    let header = |name: &str| response.headers().get(name).map(|value| value.to_str().unwrap_or("<not text>").to_string());
    let body = match response.body() {
        Body::Text(text) => serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.clone())),
        other => Value::String(format!("{other:?}")),
    };
    RecordedResponse {
        status: response.status().as_u16(),
        retry_after: header("retry-after"),
        content_type: header("content-type"),
        body,
        sent_at,
    }
}

/// Sends a batch until it succeeds, waiting `Retry-After` after each 503.
///
/// Stops at the first status other than 200, 201 or 503, or at the deadline,
/// and returns every response so the test can check it.
async fn send_until_stored(state: &AppState, batch: &Batch, deadline: Instant) -> Vec<RecordedResponse> {
    let mut responses = Vec::new();
    loop {
        let response = send(state, batch).await;
        let status = response.status;
        let wait = response.retry_after.as_deref().and_then(|value| value.parse().ok()).map(Duration::from_secs);
        responses.push(response);
        if status != 503 || Instant::now() > deadline {
            return responses;
        }
        tokio::time::sleep(wait.unwrap_or(DEFAULT_RETRY_AFTER)).await;
    }
}

/// Reads every event in the table with a consistent Scan.
async fn scan_events(client: &aws_sdk_dynamodb::Client, table: &str) -> Vec<StoredEvent> {
    let pages: Vec<_> = client.scan().table_name(table).consistent_read(true).into_paginator().send().collect().await;
    let mut events = Vec::new();
    for page in pages {
        let page = page.unwrap_or_else(|error| panic!("Scan of {table} failed: {error:?}"));
        for item in page.items.unwrap_or_default() {
            let event: StoredEvent = serde_dynamo::from_item(item).expect("stored event has the expected shape");
            events.push(event);
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread")]
async fn events_survive_dynamodb_restart() {
    let mut dynamodb_local = DynamoDbLocal::start();

    // The functions' own SDK settings (bounded timeouts and retries), pointed at this DynamoDB Local.
    let sdk_config = load_sdk_config().await;
    let dynamodb_config = aws_sdk_dynamodb::config::Builder::from(&sdk_config).endpoint_url(dynamodb_local.endpoint()).build();
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(dynamodb_config);
    dynamodb_local.wait_until_ready(&dynamodb).await;

    let tables = TableNames {
        items: "outage-items".into(),
        profiles: "outage-profiles".into(),
        events: "outage-events".into(),
        model_state: "outage-model-state".into(),
        live_profiles: "outage-live-profiles".into(),
    };
    create_tables(&dynamodb, &repo_root().join("template.yaml"), &tables).await.expect("create tables on DynamoDB Local");
    let store = DynamoStore::new(dynamodb.clone(), tables.clone());
    // POST events reads no model, so this bucket is never created or read.
    let artifacts = ArtifactStore::new(s3_client(&sdk_config), "outage-artifacts");
    let state = Arc::new(AppState::new(Function::Preferences, store.clone(), artifacts, Duration::ZERO));

    // A batch whose first events are stored before the kill, as when DynamoDB
    // Local dies after some of a request's PutItem calls have succeeded.
    let partial = make_batch(PARTIAL_USER.to_string(), "partial", 0);
    for event in &partial.events[..PARTIAL_WRITTEN] {
        let stored = store.put_event(&event.to_stored(PARTIAL_USER)).await.expect("store a partial batch event");
        assert!(stored, "{} was already stored before the test wrote it", event.event_id);
    }

    // Concurrent clients, each with its own stream of batches.
    let successes = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + CLIENT_DEADLINE;
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let state = state.clone();
        let successes = successes.clone();
        clients.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for sequence in 0..BATCHES_PER_CLIENT {
                let user_id = format!("outage-user-{client}-{}", sequence % USERS_PER_CLIENT);
                let batch = make_batch(user_id, &format!("c{client}-b{sequence}"), client * BATCHES_PER_CLIENT + sequence);
                let responses = send_until_stored(&state, &batch, deadline).await;
                let stored = matches!(responses.last().map(|response| response.status), Some(200 | 201));
                outcomes.push((batch, responses));
                if !stored {
                    break;
                }
                successes.fetch_add(1, Ordering::SeqCst);
            }
            outcomes
        }));
    }

    // Kill DynamoDB Local once the clients have stored some batches.
    while successes.load(Ordering::SeqCst) < BATCHES_BEFORE_KILL {
        // Clients stop early only on an unexpected status, which the checks below report.
        if clients.iter().all(|client| client.is_finished()) {
            break;
        }
        assert!(Instant::now() < deadline, "the clients stored only {} batches before the deadline", successes.load(Ordering::SeqCst));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let killed_at = Instant::now();
    dynamodb_local.kill();
    let stored_before_kill = successes.load(Ordering::SeqCst);

    // While DynamoDB Local is down, the partial batch fails like any other.
    let partial_outage = send(&state, &partial).await;
    assert_eq!(partial_outage.status, 503, "the partial batch during the outage: {}", partial_outage.body);

    // Restart on the same port and database file.
    tokio::time::sleep(DOWN_TIME.saturating_sub(killed_at.elapsed())).await;
    dynamodb_local.spawn();
    dynamodb_local.wait_until_ready(&dynamodb).await;
    let down_time = killed_at.elapsed();

    // The resent partial batch stores the rest and reports the first events as duplicates.
    let mut partial_responses = vec![partial_outage];
    partial_responses.extend(send_until_stored(&state, &partial, deadline).await);
    let partial_final = partial_responses.last().unwrap();
    assert_eq!(partial_final.status, 201, "the resent partial batch: {}", partial_final.body);
    let expected_duplicates: HashSet<String> = partial.events[..PARTIAL_WRITTEN].iter().map(|event| event.event_id.clone()).collect();
    let expected_stored: HashSet<String> = partial.events[PARTIAL_WRITTEN..].iter().map(|event| event.event_id.clone()).collect();
    let reported_duplicates: HashSet<String> = partial_final.ids("duplicates").into_iter().collect();
    let reported_stored: HashSet<String> = partial_final.ids("stored").into_iter().collect();
    assert_eq!(reported_duplicates, expected_duplicates, "duplicates of the resent partial batch");
    assert_eq!(reported_stored, expected_stored, "stored ids of the resent partial batch");

    // Collect every batch with its responses.
    let mut outcomes = vec![(partial.clone(), partial_responses)];
    for client in clients {
        outcomes.extend(client.await.expect("client task panicked"));
    }
    // Every response is 200, 201 or a 503 problem with Retry-After.
    let mut responses_503 = 0;
    let mut client_responses_503 = 0;
    for (index, (batch, responses)) in outcomes.iter().enumerate() {
        for response in responses {
            let case = format!("{} {:?}", batch.path(), batch.event_ids());
            assert!(matches!(response.status, 200 | 201 | 503), "{case}: unexpected status {}: {}", response.status, response.body);
            if response.status != 503 {
                continue;
            }
            responses_503 += 1;
            if index > 0 {
                client_responses_503 += 1;
            }
            let retry_after =
                response.retry_after.as_deref().unwrap_or_else(|| panic!("{case}: 503 without Retry-After: {}", response.body));
            let seconds: u64 = retry_after.parse().unwrap_or_else(|_| panic!("{case}: Retry-After {retry_after:?} is not whole seconds"));
            assert!(seconds > 0, "{case}: Retry-After is 0");
            assert_eq!(response.content_type.as_deref(), Some("application/problem+json"), "{case}: content type of the 503");
            assert_eq!(response.body["status"], 503, "{case}: problem status: {}", response.body);
            let detail = response.body["detail"].as_str().unwrap_or_default();
            assert!(detail.contains("DynamoDB PutItem"), "{case}: the problem does not name the failed call: {detail}");
        }
    }
    let client_batches = outcomes.len() - 1;
    assert_eq!(client_batches, CLIENTS * BATCHES_PER_CLIENT, "batches the clients sent");
    assert!(client_responses_503 > 0, "no client saw a 503, so the kill did not hit the stream of writes");

    // The last response to each batch accounts for every event in it exactly once.
    let mut reported_stored_count: HashMap<(String, String), usize> = HashMap::new();
    let mut duplicate_events = 0;
    for (batch, responses) in &outcomes {
        let last = responses.last().expect("every batch was sent");
        let case = format!("{} {:?}", batch.path(), batch.event_ids());
        assert!(matches!(last.status, 200 | 201), "{case}: not stored by the deadline, last response {}: {}", last.status, last.body);
        assert_eq!(last.body["user_id"], batch.user_id.as_str(), "{case}: user_id of the response");
        let stored: HashSet<String> = last.ids("stored").into_iter().collect();
        let duplicates: HashSet<String> = last.ids("duplicates").into_iter().collect();
        assert!(stored.is_disjoint(&duplicates), "{case}: ids both stored and duplicate: {}", last.body);
        let reported: HashSet<String> = stored.union(&duplicates).cloned().collect();
        assert_eq!(reported, batch.event_ids(), "{case}: ids of the response: {}", last.body);
        let expected_status = if stored.is_empty() { 200 } else { 201 };
        assert_eq!(last.status, expected_status, "{case}: status for {} stored ids", stored.len());

        // Duplicates come only from an earlier send of the same batch, or from the
        // SDK resending a PutItem that DynamoDB Local applied just before the kill.
        if !duplicates.is_empty() {
            duplicate_events += duplicates.len();
            let resent = responses.len() > 1;
            let in_flight_at_kill = last.sent_at <= killed_at;
            assert!(resent || in_flight_at_kill, "{case}: duplicates on a first send after the restart: {}", last.body);
        }
        for response in responses {
            for event_id in response.ids("stored") {
                *reported_stored_count.entry((batch.user_id.clone(), event_id)).or_default() += 1;
            }
        }
    }
    for ((user_id, event_id), count) in &reported_stored_count {
        assert_eq!(*count, 1, "{user_id}/{event_id} was reported as stored {count} times");
    }

    // The table contains exactly the events sent, each once, with the fields sent.
    let sent: HashMap<(String, String), &SentEvent> = outcomes
        .iter()
        .flat_map(|(batch, _)| batch.events.iter().map(|event| ((batch.user_id.clone(), event.event_id.clone()), event)))
        .collect();
    let events_sent = outcomes.iter().map(|(batch, _)| batch.events.len()).sum::<usize>();
    assert_eq!(sent.len(), events_sent, "the test sent an event id twice");
    let stored_events = scan_events(&dynamodb, &tables.events).await;
    let mut stored_keys: HashMap<(String, String), usize> = HashMap::new();
    for event in &stored_events {
        *stored_keys.entry((event.user_id.clone(), event.event_id.clone())).or_default() += 1;
    }
    let missing: Vec<_> = sent.keys().filter(|key| !stored_keys.contains_key(*key)).collect();
    let extra: Vec<_> = stored_keys.keys().filter(|key| !sent.contains_key(*key)).collect();
    let stored_once = stored_keys.values().filter(|count| **count == 1).count();
    let total_responses = outcomes.iter().map(|(_, responses)| responses.len()).sum::<usize>();
    println!(
        "outage: {events_sent} events sent in {} batches, {responses_503} responses 503 with Retry-After, {} retries, \
         {stored_once} stored once, {} missing, {} extra; DynamoDB Local killed after {stored_before_kill} batches \
         and responding again after {:.1} s, {duplicate_events} events reported as duplicates",
        outcomes.len(),
        total_responses - outcomes.len(),
        missing.len(),
        extra.len(),
        down_time.as_secs_f64()
    );
    assert!(missing.is_empty(), "events sent but not stored: {missing:?}");
    assert!(extra.is_empty(), "events stored but never sent: {extra:?}");
    assert_eq!(stored_events.len(), events_sent, "stored events");
    assert_eq!(stored_once, events_sent, "events stored exactly once");
    for event in &stored_events {
        let expected = sent[&(event.user_id.clone(), event.event_id.clone())];
        let case = format!("{}/{}", event.user_id, event.event_id);
        assert_eq!(event.event_type, expected.event_type, "{case}: type");
        assert_eq!(event.item_id, expected.item_id, "{case}: item_id");
        assert_eq!(event.quantity, expected.quantity, "{case}: quantity");
        assert_eq!(event.timestamp, expected.timestamp, "{case}: timestamp");
    }
}

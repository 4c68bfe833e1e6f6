//! A new model version published while concurrent tasks send requests to every
//! model route: each response is wholly from one version, equal to that
//! version's reference response, and both versions are served during the load.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lambda_http::Body;
use serde_json::Value;
use shoprec::handlers::{handle, AppState, Function};
use shoprec::ingest::Interaction;
use shoprec::publish::publish;
use shoprec::train::{train, TrainOptions, TrainedModel};

use common::{clean_report, get_request, local_stack, synthetic_interactions, train_synthetic, LocalStack, Quiet, THEMES};

/// Routes whose response bodies depend on the model version, as (function, path,
/// query). The item and the user exist in both versions.
const ROUTES: [(Function, &str, &str); 4] = [
    (Function::Similarity, "/items/85123A/similar", "limit=3"),
    (Function::Similarity, "/items/popular", "limit=5"),
    (Function::Inference, "/users/17850/recommendations", "limit=5"),
    (Function::Preferences, "/users/17850/preferences", ""),
];

/// Concurrent tasks that send requests during the switch.
const TASKS: usize = 8;

/// Model refresh interval of each set of warm functions. Task `i` uses set
/// `i % REFRESHES.len()`, so tasks 6 and 7 share the sets of tasks 0 and 1.
const REFRESHES: [Duration; 6] =
    [Duration::ZERO, Duration::ZERO, Duration::ZERO, Duration::ZERO, Duration::from_millis(50), Duration::from_millis(50)];

/// Switches from the first version to the second, each on a fresh stack.
const ROUNDS: usize = 5;

/// Responses before the second version is published, in each round.
const RESPONSES_BEFORE_PUBLISH: usize = 200;

/// How long the load goes on after the publish returns, in each round.
const LOAD_AFTER_PUBLISH: Duration = Duration::from_secs(1);

/// Items whose ids swap places in the changed shop, so that their neighbours
/// and the purchase history of user 17850 change.
const SWAPPED: (&str, &str) = ("85123A", "22423");

/// Item that every user of the changed shop buys once more on the last day, so
/// that the popular items change.
const PROMOTED: &str = "20712";

/// Returns the title of an item of the synthetic shop.
fn title(item_id: &str) -> String {
    let (_, title) =
        THEMES.iter().flatten().find(|(id, _)| *id == item_id).unwrap_or_else(|| panic!("{item_id} is not an item of the synthetic shop"));
    title.to_string()
}

/// Builds the synthetic shop with two items swapped and one item promoted.
fn changed_interactions() -> Vec<Interaction> {
    let mut rows = synthetic_interactions();
    for row in &mut rows {
        let swapped = if row.item_id == SWAPPED.0 {
            SWAPPED.1
        } else if row.item_id == SWAPPED.1 {
            SWAPPED.0
        } else {
            continue;
        };
        row.item_id = swapped.to_string();
        row.title = Some(title(swapped));
    }

    let last_day = rows.iter().map(|row| row.timestamp).max().expect("the synthetic shop has rows");
    let users: BTreeSet<String> = rows.iter().map(|row| row.user_id.clone()).collect();
    for user_id in users {
        rows.push(Interaction {
            basket_id: Some(format!("{user_id}-promoted")),
            user_id,
            item_id: PROMOTED.to_string(),
            timestamp: last_day,
            quantity: 1.0,
            unit_price: Some(3.75),
            title: Some(title(PROMOTED)),
        });
    }
    rows
}

/// One warm instance of each function.
struct Functions {
    similarity: AppState,
    inference: AppState,
    preferences: AppState,
}

impl Functions {
    fn new(stack: &LocalStack, refresh: Duration) -> Self {
        Functions {
            similarity: stack.app(Function::Similarity, refresh),
            inference: stack.app(Function::Inference, refresh),
            preferences: stack.app(Function::Preferences, refresh),
        }
    }

    fn state(&self, function: Function) -> &AppState {
        match function {
            Function::Similarity => &self.similarity,
            Function::Inference => &self.inference,
            Function::Preferences => &self.preferences,
        }
    }
}

/// Sends the request of `ROUTES[route]` and returns the status and the JSON body.
async fn call(functions: &Functions, route: usize) -> (u16, Value) {
    let (function, path, query) = ROUTES[route];
    let response = handle(functions.state(function), get_request(path, query)).await;
    let body = match response.body() {
        Body::Text(text) => serde_json::from_str(text).unwrap_or_else(|error| panic!("{path}: body is not JSON ({error}): {text}")),
        other => panic!("{path}: expected a text body, got {other:?}"),
    };
    (response.status().as_u16(), body)
}

/// Returns the active model version and the response body of every route, from
/// new functions so that no cached state is involved.
async fn reference_responses(stack: &LocalStack) -> (String, Vec<Value>) {
    let functions = Functions::new(stack, Duration::ZERO);
    let mut bodies = Vec::new();
    for (route, (_, path, _)) in ROUTES.iter().enumerate() {
        let (status, body) = call(&functions, route).await;
        assert_eq!(status, 200, "reference of {path}: {body}");
        bodies.push(body);
    }

    let version = bodies[0]["model_version"].as_str().expect("model_version is a string").to_string();
    for (route, body) in bodies.iter().enumerate() {
        assert_eq!(body["model_version"], version.as_str(), "reference of {} is from another version", ROUTES[route].1);
    }
    (version, bodies)
}

/// Returns the body without its `model_version`, to compare the content of two versions.
fn content(body: &Value) -> Value {
    let mut body = body.clone();
    if let Some(object) = body.as_object_mut() {
        object.remove("model_version");
    }
    body
}

/// One response received during the load.
struct LoadResponse {
    task: usize,
    route: usize,
    status: u16,
    body: Value,
}

/// Formats a count with thousands separators.
fn thousands(count: usize) -> String {
    let digits = count.to_string();
    let mut formatted = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            formatted.push(',');
        }
        formatted.push(digit);
    }
    formatted
}

/// Counts and problems of one switch from the first version to the second.
#[derive(Default)]
struct Outcome {
    responses: usize,
    from_a: usize,
    from_b: usize,
    responses_during_publish: usize,
    publish_time: Duration,
    /// Responses other than 200.
    errors: Vec<String>,
    /// Responses that differ from the reference of the version they name.
    mixed: Vec<String>,
    /// Responses from the first version after the same task and route had one from the second.
    back_to_a: Vec<String>,
    /// Task and route pairs whose last response is not from the second version.
    stale_at_end: Vec<String>,
}

/// Publishes `first` on a fresh stack, then publishes `second` while `TASKS`
/// tasks send requests, and checks every response against the reference of
/// the version it names.
async fn switch_under_load(round: usize, first: &TrainedModel, second: &TrainedModel, options: &TrainOptions) -> Outcome {
    let stack = local_stack(&format!("versionswitch{round}")).await;
    let published_a = publish(first, options, &stack.store, &stack.artifacts, &mut Quiet).await.expect("publish the synthetic shop");
    let (version_a, reference_a) = reference_responses(&stack).await;
    assert_eq!(version_a, published_a.model_version, "the reference of the first version names another version");

    let sets: Vec<Arc<Functions>> = REFRESHES.iter().map(|refresh| Arc::new(Functions::new(&stack, *refresh))).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let completed = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let functions = sets[task % sets.len()].clone();
        let stop = stop.clone();
        let completed = completed.clone();
        tasks.push(tokio::spawn(async move {
            let mut responses = Vec::new();
            let mut route = task % ROUTES.len();
            while !stop.load(Ordering::Relaxed) {
                let (status, body) = call(&functions, route).await;
                responses.push(LoadResponse { task, route, status, body });
                completed.fetch_add(1, Ordering::Relaxed);
                route = (route + 1) % ROUTES.len();
            }
            responses
        }));
    }

    // The caller's task publishes, because `publish` takes a `&mut dyn Progress`
    // that is not `Send`, so the publish future cannot be spawned.
    let waited = Instant::now();
    while completed.load(Ordering::Relaxed) < RESPONSES_BEFORE_PUBLISH && waited.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let responses_at_publish = completed.load(Ordering::Relaxed);
    let started = Instant::now();
    let published_b = publish(second, options, &stack.store, &stack.artifacts, &mut Quiet).await.expect("publish the changed shop");
    let mut outcome = Outcome {
        publish_time: started.elapsed(),
        responses_during_publish: completed.load(Ordering::Relaxed) - responses_at_publish,
        ..Outcome::default()
    };
    tokio::time::sleep(LOAD_AFTER_PUBLISH).await;
    stop.store(true, Ordering::Relaxed);
    let mut responses = Vec::new();
    for task in tasks {
        responses.extend(task.await.expect("a load task panicked"));
    }

    let (version_b, reference_b) = reference_responses(&stack).await;
    assert_eq!(version_b, published_b.model_version, "the reference of the second version names another version");
    assert_ne!(version_a, version_b, "both publishes produced the same version");
    for route in 0..ROUTES.len() {
        // Equal content would hide a response that mixes the two versions.
        assert_ne!(
            content(&reference_a[route]),
            content(&reference_b[route]),
            "{}: both versions return the same content",
            ROUTES[route].1
        );
    }

    // Bodies are compared whole, because no field varies between requests. No
    // response carries a request id or the current time, and the times in
    // preferences (`last_at`, `last_activity`) are stored purchase times. No
    // events are posted, so the live activity of user 17850 stays empty.
    let mut last_version: HashMap<(usize, usize), &str> = HashMap::new();
    for response in &responses {
        let path = ROUTES[response.route].1;
        let case = format!("round {round}, task {}, {path}", response.task);
        if response.status != 200 {
            outcome.errors.push(format!("{case}: status {}: {}", response.status, response.body));
            continue;
        }

        let version = response.body["model_version"].as_str().unwrap_or_default();
        let (reference, other) = if version == version_a {
            (&reference_a[response.route], &reference_b[response.route])
        } else if version == version_b {
            (&reference_b[response.route], &reference_a[response.route])
        } else {
            outcome.mixed.push(format!("{case}: unknown model_version {version:?}: {}", response.body));
            continue;
        };
        if response.body != *reference {
            let origin =
                if content(&response.body) == content(other) { "the other version's content" } else { "content of neither version" };
            outcome.mixed.push(format!("{case}: labelled {version} with {origin}: {} (reference {reference})", response.body));
            continue;
        }

        // A task sends its requests one after another, and the active version
        // only moves forward, so a route of one task never returns to the first version.
        let previous = last_version.insert((response.task, response.route), version);
        if version == version_a {
            outcome.from_a += 1;
            if previous == Some(version_b.as_str()) {
                outcome.back_to_a.push(case);
            }
        } else {
            outcome.from_b += 1;
        }
    }
    for ((task, route), version) in &last_version {
        if *version != version_b {
            outcome.stale_at_end.push(format!("round {round}, task {task}, {}", ROUTES[*route].1));
        }
    }
    outcome.responses = responses.len();
    outcome
}

#[tokio::test(flavor = "multi_thread")]
async fn switch_under_load_never_mixes() {
    let (first, options) = train_synthetic();
    let rows = changed_interactions();
    let second = train(&rows, &clean_report(rows.len()), &options, &mut Quiet).expect("training on the changed shop");

    // Each round has one switch. A response mixes versions only when its reads
    // straddle the switch, a window of a few milliseconds, so several rounds
    // make a mixing bug far more likely to show.
    let mut outcomes = Vec::new();
    for round in 0..ROUNDS {
        outcomes.push(switch_under_load(round, &first, &second, &options).await);
    }

    let sum = |count: fn(&Outcome) -> usize| outcomes.iter().map(count).sum::<usize>();
    let longest_publish = outcomes.iter().map(|outcome| outcome.publish_time).max().unwrap_or_default();
    let errors: Vec<&String> = outcomes.iter().flat_map(|outcome| &outcome.errors).collect();
    let mixed: Vec<&String> = outcomes.iter().flat_map(|outcome| &outcome.mixed).collect();
    let back_to_a: Vec<&String> = outcomes.iter().flat_map(|outcome| &outcome.back_to_a).collect();
    let stale_at_end: Vec<&String> = outcomes.iter().flat_map(|outcome| &outcome.stale_at_end).collect();
    println!(
        "version switch: {} answers during publish of v2 ({} from v1, {} from v2), {} mixed, {} errors; {ROUNDS} rounds of {TASKS} tasks, {} answers while a publish ran (at most {:.2} s)",
        thousands(sum(|outcome| outcome.responses)),
        thousands(sum(|outcome| outcome.from_a)),
        thousands(sum(|outcome| outcome.from_b)),
        mixed.len(),
        errors.len(),
        thousands(sum(|outcome| outcome.responses_during_publish)),
        longest_publish.as_secs_f64(),
    );

    assert!(errors.is_empty(), "{} responses were not 200, the first: {}", errors.len(), errors[0]);
    assert!(mixed.is_empty(), "{} responses differ from the reference of their version, the first: {}", mixed.len(), mixed[0]);
    assert!(
        back_to_a.is_empty(),
        "{} responses came from the first version after one from the second, the first: {}",
        back_to_a.len(),
        back_to_a[0]
    );
    assert!(
        stale_at_end.is_empty(),
        "{} task routes still served the first version at the end, the first: {}",
        stale_at_end.len(),
        stale_at_end[0]
    );
    for (round, outcome) in outcomes.iter().enumerate() {
        assert!(outcome.from_a > 0, "round {round}: no response came from the first version during the load");
        assert!(outcome.from_b > 0, "round {round}: no response came from the second version during the load");
    }
}

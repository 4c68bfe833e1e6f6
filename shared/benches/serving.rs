//! Criterion benchmarks of the serving hot paths on the Online Retail data:
//! candidate generation, feature building, ONNX scoring, serialisation of the
//! response, the whole `serve()` call and the embedding fold-in. After them it
//! times single `serve()` calls and prints their p50, p99 and max.
//!
//! `SHOPREC_DATA` names the data file and `ORT_DYLIB_PATH` the ONNX Runtime
//! library (`source scripts/env.sh`). The setup trains once with
//! `shoprec::train::train` and builds the model data and the ONNX ranker in
//! memory, as `publish` and the inference function's model load do, without S3.
//!
//! Run: `bash scripts/bench-serving.sh [DATA]`, or
//! `SHOPREC_DATA=online_retail.csv.gz cargo bench -p shoprec --bench serving`.

use std::cmp::Ordering;
use std::hint::black_box;
use std::path::PathBuf;
use std::process::exit;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shoprec::handlers::RecommendationsResponse;
use shoprec::http::{DEFAULT_LIMIT, MAX_LIMIT};
use shoprec::ingest::read_interactions;
use shoprec::live_profile::LiveProfile;
use shoprec::model::ModelData;
use shoprec::preferences::{user_history, EventType, StoredEvent, TrainedProfile};
use shoprec::ranker::Ranker;
use shoprec::recommend::{build_features, generate_candidates, serve, CandidateLimits, Scorer, UserHistory, FEATURE_COUNT};
use shoprec::train::onnx::{contract, export_mlp};
use shoprec::train::{train, SilentProgress, TrainOptions};

/// Candidate counts of the ONNX scoring benchmarks, at most [`WIDE_CANDIDATES`].
const SCORED_ROWS: [usize; 2] = [100, WIDE_CANDIDATES];

/// Candidates of the widest ONNX scoring and `serve()` cases. The default
/// limits give at most 400 (200 neighbours, 100 near the user vector, 50 near
/// the latest items and 50 popular).
const WIDE_CANDIDATES: usize = 1_000;

/// Events of the visitor: real item ids of the Online Retail catalogue, at the
/// end of the data's time range (2011-12-09).
const VISITOR_EVENTS: [(EventType, &str); 4] =
    [(EventType::View, "85123A"), (EventType::View, "22423"), (EventType::View, "85099B"), (EventType::AddToCart, "22423")];

/// Model, ranker and users that every benchmark reads.
struct Fixture {
    data: ModelData,
    ranker: Ranker,
    model_version: String,
    known_user_id: String,
    known_user: UserHistory,
    /// Every trained user's history with the limits that give it [`WIDE_CANDIDATES`] candidates.
    all_users: Vec<(UserHistory, CandidateLimits)>,
    /// Limits that give the known user [`WIDE_CANDIDATES`] candidates.
    wide_limits: CandidateLimits,
    visitor: UserHistory,
}

/// Prints the message and exits with status 2, so a missing setting reads as
/// one message instead of a panic.
fn fail(message: &str) -> ! {
    eprintln!("serving bench: {message}");
    exit(2);
}

fn data_path() -> PathBuf {
    match std::env::var_os("SHOPREC_DATA").filter(|path| !path.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => fail(
            "SHOPREC_DATA is not set: set it to the path of the Online Retail CSV (plain or gzip), \
             for example `SHOPREC_DATA=path/to/online_retail.csv.gz cargo bench -p shoprec --bench serving`, \
             or run `bash scripts/bench-serving.sh path/to/online_retail.csv.gz`",
        ),
    }
}

/// Returns the trained profile with the most distinct purchased items, ties by user id.
fn longest_profile(profiles: &[TrainedProfile]) -> &TrainedProfile {
    profiles
        .iter()
        .max_by(|a, b| a.purchases.len().cmp(&b.purchases.len()).then_with(|| b.user_id.cmp(&a.user_id)))
        .unwrap_or_else(|| fail("training produced no user profile"))
}

/// Builds the history of a visitor without purchases from [`VISITOR_EVENTS`].
fn visitor_history(data: &ModelData) -> UserHistory {
    let user_id = "bench-visitor";
    let mut live = LiveProfile::new(user_id);
    for (index, (event_type, item_id)) in VISITOR_EVENTS.into_iter().enumerate() {
        if data.item(item_id).is_none() {
            fail(&format!(
                "item {item_id} of the visitor's events was not found in the trained catalogue: set SHOPREC_DATA to the Online Retail data"
            ));
        }
        let timestamp = 1_323_432_000 + 60 * index as i64;
        live.apply(&StoredEvent {
            user_id: user_id.to_string(),
            event_id: format!("event-{index}"),
            event_type,
            item_id: item_id.to_string(),
            quantity: 1,
            timestamp,
            received_at: timestamp,
        });
    }
    user_history(None, &live)
}

/// Returns limits under which the history gets exactly `target` candidates:
/// more neighbours, popular items and items near the latest ones than the
/// defaults allow, and as many items near the user vector as fill the rest.
fn limits_for(data: &ModelData, history: &UserHistory, target: usize) -> CandidateLimits {
    exact_limits(data, history, target)
        .unwrap_or_else(|| fail(&format!("found no candidate limits that give the known user exactly {target} candidates")))
}

/// Returns limits under which the history gets exactly `target` candidates, if any do.
fn exact_limits(data: &ModelData, history: &UserHistory, target: usize) -> Option<CandidateLimits> {
    let mut limits = CandidateLimits { neighbours: 700, embedding: 0, similar_to_recent: 100, popular: 100 };
    // Items near the user vector can push popular ones out, so the count is
    // checked again after each step.
    for _ in 0..10 {
        let count = generate_candidates(data, history, limits).len();
        match count.cmp(&target) {
            Ordering::Equal => return Some(limits),
            Ordering::Less => limits.embedding += target - count,
            Ordering::Greater if limits.embedding >= count - target => limits.embedding -= count - target,
            Ordering::Greater => break,
        }
    }
    None
}

fn fixture() -> Fixture {
    let path = data_path();
    let started = Instant::now();
    let (interactions, cleaning) =
        read_interactions(&path).unwrap_or_else(|error| fail(&format!("reading {} failed: {error}", path.display())));
    let trained = train(&interactions, &cleaning, &TrainOptions::default(), &mut SilentProgress)
        .unwrap_or_else(|error| fail(&format!("training on {} failed: {error}", path.display())));
    let data = trained.model_data().unwrap_or_else(|error| fail(&format!("building the model data failed: {error}")));

    let model_version = "bench".to_string();
    let onnx = export_mlp(&trained.ranker, &model_version).unwrap_or_else(|error| fail(&format!("exporting the ranker failed: {error}")));
    let ranker = Ranker::load(&onnx, &contract(trained.ranker_report.clone()))
        .unwrap_or_else(|error| fail(&format!("loading the ONNX ranker failed: {error}. `source scripts/env.sh` sets ORT_DYLIB_PATH")));

    let profile = longest_profile(&trained.profiles);
    let known_user = user_history(Some(profile), &LiveProfile::new(&profile.user_id));
    let visitor = visitor_history(&data);
    let wide_limits = limits_for(&data, &known_user, WIDE_CANDIDATES);
    let all_users: Vec<(UserHistory, CandidateLimits)> = trained
        .profiles
        .iter()
        .filter_map(|profile| {
            let history = user_history(Some(profile), &LiveProfile::new(&profile.user_id));
            let limits = exact_limits(&data, &history, WIDE_CANDIDATES)?;
            Some((history, limits))
        })
        .collect();
    eprintln!(
        "serving bench: read {} rows and trained in {:.1} s; {} catalogue items; known user {} with {} items; visitor with {} items",
        cleaning.rows_read,
        started.elapsed().as_secs_f64(),
        data.catalogue().len(),
        profile.user_id,
        known_user.size(),
        visitor.size(),
    );
    eprintln!("serving bench: the known user gets {WIDE_CANDIDATES} candidates under {wide_limits:?}");
    eprintln!(
        "serving bench: {} of {} trained users can get exactly {WIDE_CANDIDATES} candidates",
        all_users.len(),
        trained.profiles.len()
    );
    Fixture { data, ranker, model_version, known_user_id: profile.user_id.clone(), known_user, all_users, wide_limits, visitor }
}

fn bench_candidates(c: &mut Criterion, fixture: &Fixture) {
    let mut group = c.benchmark_group("candidates");
    for (name, history) in [("known_user", &fixture.known_user), ("visitor", &fixture.visitor)] {
        let count = generate_candidates(&fixture.data, history, CandidateLimits::default()).len();
        eprintln!("serving bench: {name} has {count} candidates under the default limits");
        group.bench_function(name, |b| b.iter(|| generate_candidates(&fixture.data, black_box(history), CandidateLimits::default())));
    }
    group.finish();
}

fn bench_features(c: &mut Criterion, fixture: &Fixture) {
    let mut group = c.benchmark_group("features");
    for (name, history) in [("known_user", &fixture.known_user), ("visitor", &fixture.visitor)] {
        let candidates = generate_candidates(&fixture.data, history, CandidateLimits::default());
        group.throughput(Throughput::Elements(candidates.len() as u64));
        group.bench_function(name, |b| b.iter(|| build_features(&fixture.data, black_box(history), black_box(&candidates))));
    }
    group.finish();
}

fn bench_onnx(c: &mut Criterion, fixture: &Fixture) {
    // Real feature rows of the known user's candidates, so the inputs have the
    // value ranges the ranker receives in serving.
    let candidates = generate_candidates(&fixture.data, &fixture.known_user, fixture.wide_limits);
    let features = build_features(&fixture.data, &fixture.known_user, &candidates);

    let mut group = c.benchmark_group("onnx_score");
    for rows in SCORED_ROWS {
        let rows_features = &features[..rows * FEATURE_COUNT];
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_with_input(BenchmarkId::from_parameter(rows), &rows, |b, &rows| {
            b.iter(|| fixture.ranker.score(black_box(rows_features), rows).expect("ONNX scoring"))
        });
    }
    group.finish();
}

fn bench_serialise(c: &mut Criterion, fixture: &Fixture) {
    let mut group = c.benchmark_group("serialise_response");
    for limit in [DEFAULT_LIMIT, MAX_LIMIT] {
        let served = serve(&fixture.data, &fixture.known_user, &fixture.ranker, CandidateLimits::default(), limit).expect("serve");
        let response = RecommendationsResponse {
            user_id: fixture.known_user_id.clone(),
            model_version: fixture.model_version.clone(),
            known_user: true,
            fallback: served.fallback,
            recommendations: served.recommendations,
        };
        let bytes = serde_json::to_string(&response).expect("response serialises").len();
        eprintln!("serving bench: the response with {limit} recommendations has {bytes} bytes of JSON");
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_with_input(BenchmarkId::new("recommendations", limit), &response, |b, response| {
            b.iter(|| serde_json::to_string(black_box(response)).expect("response serialises"))
        });
    }
    group.finish();
}

fn bench_serve(c: &mut Criterion, fixture: &Fixture) {
    let mut group = c.benchmark_group("serve");
    let cases = [
        ("known_user", &fixture.known_user, CandidateLimits::default()),
        ("visitor", &fixture.visitor, CandidateLimits::default()),
        ("known_user_1000_candidates", &fixture.known_user, fixture.wide_limits),
    ];
    for (name, history, limits) in cases {
        let served = serve(&fixture.data, history, &fixture.ranker, limits, DEFAULT_LIMIT).expect("serve");
        if served.fallback.is_some() {
            fail(&format!("serve fell back to popular items for {name}, so this case would not measure ranking"));
        }
        group.bench_function(name, |b| {
            b.iter(|| serve(&fixture.data, black_box(history), &fixture.ranker, limits, DEFAULT_LIMIT).expect("serve"))
        });
    }
    group.finish();
}

fn bench_fold_in(c: &mut Criterion, fixture: &Fixture) {
    let embeddings = fixture.data.embeddings().unwrap_or_else(|| fail("the trained model has no embeddings"));
    let mut group = c.benchmark_group("fold_in");
    for (name, history) in [("known_user", &fixture.known_user), ("visitor", &fixture.visitor)] {
        if embeddings.fold_in(history).is_none() {
            fail(&format!("fold-in found no embedded item in the history of {name}"));
        }
        group.bench_function(name, |b| b.iter(|| embeddings.fold_in(black_box(history))));
    }
    group.finish();
}

/// Calls of each `serve()` case timed one by one for the percentiles.
const TIMED_CALLS: usize = 1_000;

/// Rounds over every trained user in the percentiles across users.
const USER_ROUNDS: usize = 3;

/// Prints p50, p99 and max of durations.
fn print_percentiles(case: &str, calls: &str, mut times: Vec<Duration>) {
    times.sort_unstable();
    let percentile = |fraction: f64| times[((times.len() - 1) as f64 * fraction).round() as usize];
    eprintln!(
        "serving bench: serve/{case} over {calls}: p50 {:?}, p99 {:?}, max {:?}",
        percentile(0.5),
        percentile(0.99),
        times[times.len() - 1],
    );
}

/// Times single `serve()` calls and prints p50, p99 and max per case. Criterion
/// reports the mean and median of samples that each average many calls, so it
/// does not show the slowest calls.
fn print_serve_percentiles(fixture: &Fixture) {
    let cases = [
        ("known_user", &fixture.known_user, CandidateLimits::default()),
        ("visitor", &fixture.visitor, CandidateLimits::default()),
        ("known_user_1000_candidates", &fixture.known_user, fixture.wide_limits),
    ];
    for (name, history, limits) in cases {
        let times: Vec<Duration> = (0..TIMED_CALLS)
            .map(|_| {
                let started = Instant::now();
                black_box(serve(&fixture.data, black_box(history), &fixture.ranker, limits, DEFAULT_LIMIT).expect("serve"));
                started.elapsed()
            })
            .collect();
        print_percentiles(name, &format!("{TIMED_CALLS} single calls"), times);
    }

    // Requests come from many users, most with far shorter histories than the
    // known user's, so the p99 of a request mix is over users.
    let mut times = Vec::with_capacity(USER_ROUNDS * fixture.all_users.len());
    for _ in 0..USER_ROUNDS {
        for (history, limits) in &fixture.all_users {
            let started = Instant::now();
            black_box(serve(&fixture.data, black_box(history), &fixture.ranker, *limits, DEFAULT_LIMIT).expect("serve"));
            times.push(started.elapsed());
        }
    }
    let calls = format!("{} calls, {USER_ROUNDS} rounds over every trained user", times.len());
    print_percentiles("all_users_1000_candidates", &calls, times);
}

fn serving(c: &mut Criterion) {
    let fixture = fixture();
    bench_candidates(c, &fixture);
    bench_features(c, &fixture);
    bench_onnx(c, &fixture);
    bench_serialise(c, &fixture);
    bench_serve(c, &fixture);
    bench_fold_in(c, &fixture);
    print_serve_percentiles(&fixture);
}

// Short warm-up and measurement keep the whole run, with the training in the
// setup, to a few minutes on two cores. Command-line options such as
// `--measurement-time` override these.
criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = serving
}
criterion_main!(benches);

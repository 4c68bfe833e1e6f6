//! The whole path on the real Online Retail data, run when `SHOPREC_DATA` names
//! the file: cleaning, training, publishing to the local stack and serving, and
//! the offline evaluation on the time split.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use rustc_hash::{FxHashMap, FxHashSet};
use serde_json::Value;
use shoprec::handlers::{handle, Function};
use shoprec::ingest::read_interactions;
use shoprec::live_profile::LiveProfile;
use shoprec::preferences::user_history;
use shoprec::publish::publish;
use shoprec::train::evaluate::{run_evaluation, EvaluationOptions};
use shoprec::train::split::SplitKind;
use shoprec::train::{train, TrainOptions};

use common::{get_request as get, local_stack, Quiet};

const WHITE_HEART: &str = "85123A";

fn data_path() -> Option<PathBuf> {
    match std::env::var_os("SHOPREC_DATA") {
        Some(path) => Some(PathBuf::from(path)),
        None => {
            eprintln!("SHOPREC_DATA is not set: skipping the real-data test");
            None
        }
    }
}

fn body(response: &lambda_http::Response<lambda_http::Body>) -> Value {
    match response.body() {
        lambda_http::Body::Text(text) => serde_json::from_str(text).unwrap(),
        other => panic!("expected text, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn real_data_end_to_end() {
    let Some(path) = data_path() else { return };
    let (interactions, cleaning) = read_interactions(&path).unwrap();
    assert_eq!(cleaning.rows_read, 541_909);
    assert!(cleaning.rows_kept > 380_000);

    // The item bought by the most customers who also bought the white heart holder.
    let mut items_by_user: FxHashMap<&str, FxHashSet<&str>> = FxHashMap::default();
    for row in &interactions {
        items_by_user.entry(row.user_id.as_str()).or_default().insert(row.item_id.as_str());
    }
    let mut co_buyers: FxHashMap<&str, u32> = FxHashMap::default();
    for items in items_by_user.values().filter(|items| items.contains(WHITE_HEART)) {
        for item in items.iter().filter(|item| **item != WHITE_HEART) {
            *co_buyers.entry(item).or_default() += 1;
        }
    }
    let (most_co_bought, _) = co_buyers.iter().max_by_key(|(item, count)| (**count, std::cmp::Reverse(**item))).unwrap();

    let options = TrainOptions::default();
    let trained = train(&interactions, &cleaning, &options, &mut Quiet).unwrap();
    let neighbours = &trained.items.neighbours[WHITE_HEART];
    assert!(
        neighbours.iter().any(|neighbour| neighbour.item_id == *most_co_bought),
        "{most_co_bought}, bought with {WHITE_HEART} by the most customers, is not among its neighbours"
    );

    // The request-time fold-in stops after a few conjugate gradient steps; its
    // scores must match a long solve for users of every history length.
    let data = trained.model_data().unwrap();
    let embeddings = data.embeddings().unwrap();
    let mut checked = 0;
    for profile in trained.profiles.iter().step_by(7) {
        let history = user_history(Some(profile), &LiveProfile::new(&profile.user_id));
        let Some(user) = embeddings.fold_in(&history) else { continue };
        let exact = embeddings.fold_in_with_steps(&history, 200).unwrap();
        let worst = embeddings.scores(&user).iter().zip(embeddings.scores(&exact)).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(worst < 1e-3, "user {}: fold-in scores differ from a 200-step solve by {worst}", profile.user_id);
        checked += 1;
    }
    assert!(checked > 500, "only {checked} users were checked");

    let validation = &trained.ranker_report["validation_at_10"];
    let ranker = validation["ranker"]["ndcg"].as_f64().unwrap();
    let popularity = validation["popularity"]["ndcg"].as_f64().unwrap();
    assert!(ranker > popularity, "ranker NDCG@10 {ranker} does not beat popularity {popularity}");

    let stack = local_stack("realdata").await;
    let report = publish(&trained, &options, &stack.store, &stack.artifacts, &mut Quiet).await.unwrap();
    assert_eq!(report.items_written, trained.items.catalogue.len());

    let similarity = stack.app(Function::Similarity, Duration::from_secs(60));
    let response = handle(&similarity, get(&format!("/items/{WHITE_HEART}/similar"), "limit=10")).await;
    assert_eq!(response.status(), 200);
    let similar = body(&response);
    assert_eq!(similar["title"], "WHITE HANGING HEART T-LIGHT HOLDER");
    let titles: Vec<&str> = similar["neighbours"].as_array().unwrap().iter().map(|n| n["title"].as_str().unwrap()).collect();
    assert_eq!(titles.len(), 10);
    assert!(titles.iter().any(|title| title.contains("HEART")), "{titles:?}");

    let inference = stack.app(Function::Inference, Duration::from_secs(60));
    let response = handle(&inference, get("/users/17850/recommendations", "limit=10")).await;
    assert_eq!(response.status(), 200);
    let recommendations = body(&response);
    assert_eq!(recommendations["known_user"], true);
    let bought = &items_by_user["17850"];
    let recommended = recommendations["recommendations"].as_array().unwrap();
    assert_eq!(recommended.len(), 10);
    for recommendation in recommended {
        let item_id = recommendation["item_id"].as_str().unwrap();
        assert!(!bought.contains(item_id), "17850 already bought the recommended {item_id}");
        assert!(!recommendation["title"].as_str().unwrap().is_empty());
    }

    // A visitor who only viewed the white heart holder gets its neighbours first.
    let visitor = "visitor-viewed-85123A";
    let view = shoprec::preferences::StoredEvent {
        user_id: visitor.into(),
        event_id: "view-1".into(),
        event_type: shoprec::preferences::EventType::View,
        item_id: WHITE_HEART.into(),
        quantity: 1,
        timestamp: 1_323_432_000,
        received_at: 1_323_432_000,
    };
    assert!(stack.store.put_event(&view).await.unwrap());
    let response = handle(&inference, get(&format!("/users/{visitor}/recommendations"), "limit=3")).await;
    assert_eq!(response.status(), 200);
    let visitor_recommendations = body(&response);
    let top_neighbours: Vec<&str> = neighbours.iter().take(10).map(|n| n.item_id.as_str()).collect();
    let top_three: Vec<&str> =
        visitor_recommendations["recommendations"].as_array().unwrap().iter().map(|r| r["item_id"].as_str().unwrap()).collect();
    assert!(
        top_three.iter().any(|item| top_neighbours.contains(item)),
        "none of {top_three:?} is among the ten nearest neighbours {top_neighbours:?}"
    );

    // An item that only guest checkouts bought has neighbours by title, and a
    // visitor who views it gets candidates from them.
    let new_item =
        trained.items.catalogue.iter().find(|item| item.buyers == 0 && trained.items.neighbours.contains_key(&item.item_id)).unwrap();
    let response = handle(&similarity, get(&format!("/items/{}/similar", new_item.item_id), "limit=5")).await;
    assert_eq!(response.status(), 200);
    let similar = body(&response);
    let kinds: Vec<&str> = similar["neighbours"].as_array().unwrap().iter().map(|n| n["kind"].as_str().unwrap()).collect();
    assert!(!kinds.is_empty(), "{} has no neighbours", new_item.item_id);
    assert!(kinds.iter().all(|kind| *kind == "title"), "{kinds:?}");

    let new_item_visitor = "visitor-viewed-new-item";
    let view = shoprec::preferences::StoredEvent { user_id: new_item_visitor.into(), item_id: new_item.item_id.clone(), ..view };
    assert!(stack.store.put_event(&view).await.unwrap());
    let response = handle(&inference, get(&format!("/users/{new_item_visitor}/recommendations"), "limit=10")).await;
    assert_eq!(response.status(), 200);
    let sources: Vec<String> =
        body(&response)["recommendations"].as_array().unwrap().iter().map(|r| r["source"].as_str().unwrap().to_string()).collect();
    assert!(sources.iter().any(|source| source == "title_neighbours"), "{sources:?}");

    let preferences = stack.app(Function::Preferences, Duration::from_secs(60));
    let response = handle(&preferences, get("/users/17850/preferences", "")).await;
    assert_eq!(response.status(), 200);
    let profile = body(&response);
    let favourites: Vec<&str> = profile["favourite_items"].as_array().unwrap().iter().map(|f| f["item_id"].as_str().unwrap()).collect();
    assert!(favourites.contains(&WHITE_HEART), "{favourites:?}");
    assert!(!profile["themes"].as_array().unwrap().is_empty());
}

#[test]
fn real_data_evaluation_beats_baselines() {
    let Some(path) = data_path() else { return };
    let (interactions, cleaning) = read_interactions(&path).unwrap();
    let options = EvaluationOptions {
        split: SplitKind::Time { test_days: 28 },
        cutoffs: vec![10, 20],
        k_max: 20,
        train: TrainOptions::default(),
        peers: Vec::new(),
    };
    let report = run_evaluation(&interactions, &cleaning, &options, &mut Quiet).unwrap();
    assert!(report.test_users > 1_000, "{} test users", report.test_users);

    let ndcg = |method: &str| report.metrics(method, 10).unwrap_or_else(|| panic!("{method} is missing")).ndcg;
    let pipeline = ndcg("ranked pipeline");
    assert!(pipeline > ndcg("popularity"), "pipeline NDCG@10 {pipeline} does not beat popularity {}", ndcg("popularity"));
    assert!(pipeline > ndcg("item neighbours"), "pipeline NDCG@10 {pipeline} does not beat neighbours {}", ndcg("item neighbours"));
    assert!(pipeline > ndcg("embeddings (ALS)"), "pipeline NDCG@10 {pipeline} does not beat ALS {}", ndcg("embeddings (ALS)"));

    let pipeline_metrics = report.metrics("ranked pipeline", 10).unwrap();
    assert_eq!(pipeline_metrics.fallback_share, 0.0, "every test user has a history to rank from");
    assert!(pipeline_metrics.coverage > 0.05, "coverage {}", pipeline_metrics.coverage);
    for method in &report.methods {
        assert_eq!(method.ndcg_at.len(), 20, "{}", method.name);
    }
}

//! Training: catalogue, popularity, neighbours, user profiles and the ranker,
//! computed from cleaned interactions.

pub mod neighbours;
pub mod onnx;
pub mod ranker;

use std::time::{Duration, Instant};

use rustc_hash::{FxHashMap, FxHashSet};
use serde_json::json;

use crate::error::{Error, Result};
use crate::ingest::{CleaningReport, Interaction};
use crate::model::{CatalogueItem, DataSummary, ModelData, Neighbour, Popularity};
use crate::preferences::{PurchaseSummary, TrainedProfile};
use crate::recommend::{CandidateLimits, UserHistory};
use neighbours::{compute_neighbours, NeighbourOptions};
use ranker::{evaluate, fit_logistic, log_loss, training_rows, FitOptions, LogisticModel, NeighbourScorer, PopularityScorer, SplitUser};

const SECONDS_PER_DAY: i64 = 86_400;

/// Settings of a training run.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub neighbours: NeighbourOptions,
    /// Length of the window, ending at the last interaction, that counts as recent.
    pub recent_days: u32,
    /// Length of the test window at the end of the data that the ranker learns to predict.
    pub holdout_days: u32,
    /// Length of the popular lists.
    pub popular_len: usize,
    pub candidate_limits: CandidateLimits,
    pub fit: FitOptions,
    /// Every n-th user of the time split is held out to evaluate the ranker.
    pub validation_every: usize,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            neighbours: NeighbourOptions::default(),
            recent_days: 30,
            holdout_days: 28,
            popular_len: 200,
            candidate_limits: CandidateLimits::default(),
            fit: FitOptions::default(),
            validation_every: 5,
        }
    }
}

/// Receives progress of the training steps.
pub trait Progress {
    /// Reports that a step started.
    fn started(&mut self, step: &str);
    /// Reports that a step ended after `elapsed`, with a one-line summary.
    fn finished(&mut self, step: &str, elapsed: Duration, summary: &str);
}

/// Item-level part of a model: catalogue, popularity and neighbours.
#[derive(Debug, Clone)]
pub struct ItemModel {
    pub catalogue: Vec<CatalogueItem>,
    pub popularity: Popularity,
    pub neighbours: FxHashMap<String, Vec<Neighbour>>,
}

impl ItemModel {
    /// Builds the lookup tables that serving and evaluation read.
    pub fn to_model_data(&self) -> ModelData {
        ModelData::new(self.catalogue.clone(), self.popularity.clone(), self.neighbours.clone())
    }
}

/// Everything a training run produces.
#[derive(Debug, Clone)]
pub struct TrainedModel {
    pub items: ItemModel,
    pub profiles: Vec<TrainedProfile>,
    pub ranker: LogisticModel,
    /// Training settings and held-out scores of the ranker, for the manifest.
    pub ranker_report: serde_json::Value,
    pub data: DataSummary,
    pub step_times: Vec<(String, Duration)>,
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Computes catalogue, popularity and neighbours from interactions.
pub fn fit_item_model(interactions: &[&Interaction], options: &TrainOptions) -> ItemModel {
    let mut item_index: FxHashMap<&str, u32> = FxHashMap::default();
    let mut item_ids: Vec<&str> = Vec::new();
    let mut user_index: FxHashMap<&str, u32> = FxHashMap::default();
    let mut user_items: Vec<Vec<u32>> = Vec::new();
    let mut titles: Vec<FxHashMap<&str, u32>> = Vec::new();
    let mut prices: Vec<Vec<f64>> = Vec::new();

    let last = interactions.iter().map(|row| row.timestamp).max().unwrap_or(0);
    let recent_start = last - i64::from(options.recent_days) * SECONDS_PER_DAY;
    let mut recent_pairs: FxHashSet<(u32, u32)> = FxHashSet::default();

    for row in interactions {
        let item = *item_index.entry(row.item_id.as_str()).or_insert_with(|| {
            item_ids.push(row.item_id.as_str());
            titles.push(FxHashMap::default());
            prices.push(Vec::new());
            (item_ids.len() - 1) as u32
        });
        let user = *user_index.entry(row.user_id.as_str()).or_insert_with(|| {
            user_items.push(Vec::new());
            (user_items.len() - 1) as u32
        });
        user_items[user as usize].push(item);
        if let Some(title) = row.title.as_deref().filter(|title| !title.is_empty()) {
            *titles[item as usize].entry(title).or_default() += 1;
        }
        if let Some(price) = row.unit_price {
            prices[item as usize].push(price);
        }
        if row.timestamp > recent_start {
            recent_pairs.insert((item, user));
        }
    }
    for items in &mut user_items {
        items.sort_unstable();
        items.dedup();
    }

    let mut buyers = vec![0u32; item_ids.len()];
    for items in &user_items {
        for &item in items {
            buyers[item as usize] += 1;
        }
    }
    let mut recent_buyers = vec![0u32; item_ids.len()];
    for (item, _) in &recent_pairs {
        recent_buyers[*item as usize] += 1;
    }

    let catalogue: Vec<CatalogueItem> = item_ids
        .iter()
        .enumerate()
        .map(|(item, item_id)| {
            let title = titles[item]
                .iter()
                .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
                .map_or_else(|| item_id.to_string(), |(title, _)| title.to_string());
            CatalogueItem {
                item_id: item_id.to_string(),
                title,
                price: median(&mut prices[item]),
                buyers: buyers[item],
                recent_buyers: recent_buyers[item],
            }
        })
        .collect();

    let ranked = |count: &[u32]| -> Vec<String> {
        let mut order: Vec<usize> = (0..item_ids.len()).filter(|&item| count[item] > 0).collect();
        order.sort_by(|&a, &b| count[b].cmp(&count[a]).then_with(|| item_ids[a].cmp(item_ids[b])));
        order.truncate(options.popular_len);
        order.into_iter().map(|item| item_ids[item].to_string()).collect()
    };
    let popularity = Popularity { recent_days: options.recent_days, all_time: ranked(&buyers), recent: ranked(&recent_buyers) };

    let indexed = compute_neighbours(&user_items, item_ids.len(), options.neighbours);
    let neighbours = indexed
        .into_iter()
        .enumerate()
        .filter(|(_, list)| !list.is_empty())
        .map(|(item, list)| {
            let list = list
                .into_iter()
                .map(|neighbour| Neighbour {
                    item_id: item_ids[neighbour.item as usize].to_string(),
                    score: neighbour.score,
                    support: neighbour.support,
                })
                .collect();
            (item_ids[item].to_string(), list)
        })
        .collect();

    ItemModel { catalogue, popularity, neighbours }
}

/// Identifies an order: the basket id, or the time stamp where the data has no baskets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum OrderKey<'a> {
    Basket(&'a str),
    Time(i64),
}

/// Builds the purchase profile of every user.
pub fn build_profiles(interactions: &[Interaction]) -> Vec<TrainedProfile> {
    struct Accumulator<'a> {
        purchases: FxHashMap<&'a str, (f64, FxHashSet<OrderKey<'a>>, i64)>,
        orders: FxHashMap<OrderKey<'a>, i64>,
        first_at: i64,
        last_at: i64,
    }

    let mut users: FxHashMap<&str, Accumulator> = FxHashMap::default();
    for row in interactions {
        let user = users.entry(row.user_id.as_str()).or_insert_with(|| Accumulator {
            purchases: FxHashMap::default(),
            orders: FxHashMap::default(),
            first_at: row.timestamp,
            last_at: row.timestamp,
        });
        // Data without baskets counts each distinct time stamp as one order.
        let order_key = match row.basket_id.as_deref() {
            Some(basket) => OrderKey::Basket(basket),
            None => OrderKey::Time(row.timestamp),
        };
        let purchase = user.purchases.entry(row.item_id.as_str()).or_insert((0.0, FxHashSet::default(), row.timestamp));
        purchase.0 += row.quantity;
        purchase.1.insert(order_key);
        purchase.2 = purchase.2.max(row.timestamp);
        let order = user.orders.entry(order_key).or_insert(row.timestamp);
        *order = (*order).min(row.timestamp);
        user.first_at = user.first_at.min(row.timestamp);
        user.last_at = user.last_at.max(row.timestamp);
    }

    let mut profiles: Vec<TrainedProfile> = users
        .into_iter()
        .map(|(user_id, user)| {
            let mut purchases: Vec<PurchaseSummary> = user
                .purchases
                .into_iter()
                .map(|(item_id, (quantity, orders, last_at))| PurchaseSummary {
                    item_id: item_id.to_string(),
                    quantity,
                    orders: orders.len() as u32,
                    last_at,
                })
                .collect();
            purchases.sort_by(|a, b| b.orders.cmp(&a.orders).then_with(|| a.item_id.cmp(&b.item_id)));
            let mut order_times: Vec<i64> = user.orders.into_values().collect();
            order_times.sort_unstable();
            order_times.dedup();
            TrainedProfile { user_id: user_id.to_string(), purchases, order_times, first_at: user.first_at, last_at: user.last_at }
        })
        .collect();
    profiles.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    profiles
}

/// Splits users at `cut`: history before it, new purchases in `[cut, end)`.
/// Only users with both are returned.
pub fn time_split(interactions: &[Interaction], cut: i64, end: i64) -> Vec<SplitUser> {
    let mut users: FxHashMap<&str, SplitUser> = FxHashMap::default();
    for row in interactions.iter().filter(|row| row.timestamp < cut) {
        let user = users.entry(row.user_id.as_str()).or_insert_with(|| SplitUser {
            user_id: row.user_id.clone(),
            history: UserHistory::default(),
            future: FxHashSet::default(),
        });
        *user.history.purchased.entry(row.item_id.clone()).or_default() += row.quantity;
    }
    for row in interactions.iter().filter(|row| row.timestamp >= cut && row.timestamp < end) {
        if let Some(user) = users.get_mut(row.user_id.as_str()) {
            if !user.history.purchased.contains_key(&row.item_id) {
                user.future.insert(row.item_id.clone());
            }
        }
    }
    let mut split: Vec<SplitUser> = users.into_values().filter(|user| !user.future.is_empty()).collect();
    split.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    split
}

fn timed<T>(
    progress: &mut dyn Progress,
    times: &mut Vec<(String, Duration)>,
    step: &str,
    run: impl FnOnce() -> Result<(T, String)>,
) -> Result<T> {
    progress.started(step);
    let start = Instant::now();
    let (value, summary) = run()?;
    let elapsed = start.elapsed();
    progress.finished(step, elapsed, &summary);
    times.push((step.to_string(), elapsed));
    Ok(value)
}

/// Trains every part of a model version from cleaned interactions.
pub fn train(
    interactions: &[Interaction],
    cleaning: &CleaningReport,
    options: &TrainOptions,
    progress: &mut dyn Progress,
) -> Result<TrainedModel> {
    if interactions.is_empty() {
        return Err(Error::Training("no interactions left after cleaning: check the input file".into()));
    }
    let mut times = Vec::new();
    let first = interactions.iter().map(|row| row.timestamp).min().unwrap_or(0);
    let last = interactions.iter().map(|row| row.timestamp).max().unwrap_or(0);

    let items = timed(progress, &mut times, "items and neighbours", || {
        let all: Vec<&Interaction> = interactions.iter().collect();
        let items = fit_item_model(&all, options);
        let pairs: usize = items.neighbours.values().map(Vec::len).sum();
        let summary = format!("{} items, {} with neighbours, {pairs} neighbour pairs", items.catalogue.len(), items.neighbours.len());
        Ok((items, summary))
    })?;

    let profiles = timed(progress, &mut times, "user profiles", || {
        let profiles = build_profiles(interactions);
        let summary = format!("{} users", profiles.len());
        Ok((profiles, summary))
    })?;

    let (ranker, ranker_report) = timed(progress, &mut times, "ranker", || train_ranker(interactions, last, options))?;

    let data = DataSummary {
        rows_read: cleaning.rows_read,
        rows_kept: cleaning.rows_kept,
        interactions: interactions.len() as u64,
        users: profiles.len() as u64,
        items: items.catalogue.len() as u64,
        first_interaction: first,
        last_interaction: last,
    };
    Ok(TrainedModel { items, profiles, ranker, ranker_report, data, step_times: times })
}

/// Fits the ranker on the time split and evaluates it, the neighbours alone and
/// popularity alone on held-out users.
fn train_ranker(interactions: &[Interaction], last: i64, options: &TrainOptions) -> Result<((LogisticModel, serde_json::Value), String)> {
    let cut = last - i64::from(options.holdout_days) * SECONDS_PER_DAY;
    let before_cut: Vec<&Interaction> = interactions.iter().filter(|row| row.timestamp < cut).collect();
    if before_cut.is_empty() {
        return Err(Error::Training(format!(
            "the data spans less than the {}-day test window of the ranker: provide a longer history",
            options.holdout_days
        )));
    }
    let data = fit_item_model(&before_cut, options).to_model_data();
    let users = time_split(interactions, cut, last + 1);
    let every = options.validation_every.max(2);
    let mut validation = Vec::new();
    let mut training = Vec::new();
    for (index, user) in users.into_iter().enumerate() {
        if index % every == 0 {
            validation.push(user);
        } else {
            training.push(user);
        }
    }

    let (features, labels) = training_rows(&data, &training, options.candidate_limits);
    let positives = labels.iter().filter(|&&label| label > 0.5).count();
    if positives == 0 {
        return Err(Error::Training("no user bought a candidate item in the test window: the ranker has nothing to learn from".into()));
    }
    let model = fit_logistic(&features, &labels, options.fit);

    let k = 10;
    let learned = evaluate(&data, &validation, &model, options.candidate_limits, k)?;
    let neighbours_only = evaluate(&data, &validation, &NeighbourScorer, options.candidate_limits, k)?;
    let popularity_only = evaluate(&data, &validation, &PopularityScorer, options.candidate_limits, k)?;

    let report = json!({
        "kind": "logistic_regression",
        "split": {
            "cut": cut,
            "holdout_days": options.holdout_days,
            "training_users": training.len(),
            "validation_users": validation.len(),
            "training_rows": labels.len(),
            "positive_rows": positives,
        },
        "training_log_loss": log_loss(&model, &features, &labels),
        "validation_at_10": {
            "ranker": learned,
            "neighbours": neighbours_only,
            "popularity": popularity_only,
        },
    });
    let summary = format!(
        "{} rows from {} users; NDCG@10 on {} held-out users: ranker {:.4}, neighbours {:.4}, popularity {:.4}",
        labels.len(),
        training.len(),
        validation.len(),
        learned.ndcg,
        neighbours_only.ndcg,
        popularity_only.ndcg
    );
    Ok(((model, report), summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(user: &str, item: &str, day: i64, basket: &str) -> Interaction {
        Interaction {
            user_id: user.into(),
            item_id: item.into(),
            timestamp: day * SECONDS_PER_DAY,
            quantity: 1.0,
            unit_price: Some(2.0),
            title: Some(format!("TITLE {item}")),
            basket_id: Some(basket.into()),
        }
    }

    #[test]
    fn item_model_counts_buyers_and_recent() {
        let rows = [row("u1", "A", 0, "b1"), row("u1", "A", 1, "b2"), row("u2", "A", 100, "b3"), row("u2", "B", 100, "b3")];
        let refs: Vec<&Interaction> = rows.iter().collect();
        let model = fit_item_model(&refs, &TrainOptions::default());
        let a = model.catalogue.iter().find(|item| item.item_id == "A").unwrap();
        assert_eq!(a.buyers, 2);
        assert_eq!(a.recent_buyers, 1);
        assert_eq!(model.popularity.all_time[0], "A");
    }

    #[test]
    fn profiles_count_orders_per_item() {
        let rows = vec![row("u1", "A", 0, "b1"), row("u1", "B", 0, "b1"), row("u1", "A", 3, "b2")];
        let profiles = build_profiles(&rows);
        assert_eq!(profiles.len(), 1);
        assert_eq!(profiles[0].order_times, vec![0, 3 * SECONDS_PER_DAY]);
        assert_eq!(profiles[0].purchases[0].item_id, "A");
        assert_eq!(profiles[0].purchases[0].orders, 2);
    }

    #[test]
    fn time_split_never_leaks_future_into_history() {
        let rows = vec![row("u1", "A", 0, "b1"), row("u1", "B", 10, "b2"), row("u1", "A", 11, "b3"), row("u2", "C", 12, "b4")];
        let split = time_split(&rows, 5 * SECONDS_PER_DAY, 20 * SECONDS_PER_DAY);
        assert_eq!(split.len(), 1);
        assert_eq!(split[0].user_id, "u1");
        assert!(split[0].history.purchased.contains_key("A"));
        assert!(!split[0].history.purchased.contains_key("B"));
        assert!(split[0].future.contains("B"));
        assert!(!split[0].future.contains("A"));
    }
}

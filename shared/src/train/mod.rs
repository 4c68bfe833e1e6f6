//! Training: catalogue, popularity, neighbours, embeddings, user profiles and
//! the ranker, computed from cleaned interactions.

pub mod als;
pub mod evaluate;
pub mod neighbours;
pub mod onnx;
pub mod ranker;
pub mod split;
pub mod titles;

use std::time::{Duration, Instant};

use rustc_hash::{FxHashMap, FxHashSet};
use serde_json::json;

use crate::embeddings::ItemEmbeddings;
use crate::error::{Error, Result};
use crate::ingest::{CleaningReport, Interaction, ItemListing};
use crate::model::{CatalogueItem, DataSummary, ModelData, Neighbour, NeighbourKind, Popularity};
use crate::preferences::{PurchaseSummary, TrainedProfile};
use crate::recommend::{CandidateLimits, UserHistory};
use als::{fit_als, AlsOptions, UserItems};
use evaluate::{evaluate_lists, EmbeddingRecommender, NeighbourRecommender, PopularityRecommender, Recommender, ScorerRecommender};
use neighbours::{compute_neighbours, NeighbourOptions};
use ranker::{fit_mlp, log_loss, training_rows, FitOptions, MlpModel};
use split::{split, user_histories, SplitKind, SplitUser};

const SECONDS_PER_DAY: i64 = 86_400;

/// Settings of a training run.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub neighbours: NeighbourOptions,
    /// Title neighbours kept per item that has no co-purchase neighbours.
    pub title_neighbours: usize,
    /// Length of the window, ending at the last interaction, that counts as recent.
    pub recent_days: u32,
    /// Split that keeps the ranker's labels out of the models it ranks with.
    pub ranker_split: SplitKind,
    /// Length of the popular lists.
    pub popular_len: usize,
    pub candidate_limits: CandidateLimits,
    pub als: AlsOptions,
    pub fit: FitOptions,
    /// Every n-th user of the ranker's split is held out to validate the ranker.
    pub validation_every: usize,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            neighbours: NeighbourOptions::default(),
            title_neighbours: 20,
            recent_days: 30,
            ranker_split: SplitKind::Time { test_days: 28 },
            popular_len: 200,
            candidate_limits: CandidateLimits::default(),
            als: AlsOptions::default(),
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

/// Progress that goes nowhere, for tests and nested runs.
pub struct SilentProgress;

impl Progress for SilentProgress {
    fn started(&mut self, _step: &str) {}
    fn finished(&mut self, _step: &str, _elapsed: Duration, _summary: &str) {}
}

/// Item-level part of a model: catalogue, popularity and neighbours.
#[derive(Debug, Clone)]
pub struct ItemModel {
    pub catalogue: Vec<CatalogueItem>,
    pub popularity: Popularity,
    pub neighbours: FxHashMap<String, Vec<Neighbour>>,
}

/// User and item vectors of the factorisation, items in catalogue order.
#[derive(Debug, Clone)]
pub struct TrainedEmbeddings {
    pub options: AlsOptions,
    pub item_ids: Vec<String>,
    /// Row-major `[item_ids.len(), factors]`.
    pub items: Vec<f32>,
    /// Ascending.
    pub user_ids: Vec<String>,
    /// Row-major `[user_ids.len(), factors]`.
    pub users: Vec<f32>,
}

impl TrainedEmbeddings {
    /// Builds the serving form of the item vectors.
    pub fn item_embeddings(&self) -> Result<ItemEmbeddings> {
        ItemEmbeddings::new(self.item_ids.clone(), self.items.clone(), self.options.settings)
    }
}

/// Builds the lookup tables that serving and evaluation read.
pub fn model_data(items: &ItemModel, embeddings: &TrainedEmbeddings) -> Result<ModelData> {
    let data = ModelData::new(items.catalogue.clone(), items.popularity.clone(), items.neighbours.clone());
    Ok(data.with_embeddings(embeddings.item_embeddings()?))
}

/// Everything a training run produces.
#[derive(Debug, Clone)]
pub struct TrainedModel {
    pub items: ItemModel,
    pub embeddings: TrainedEmbeddings,
    pub profiles: Vec<TrainedProfile>,
    pub ranker: MlpModel,
    /// Training settings and held-out scores of the ranker, for the manifest.
    pub ranker_report: serde_json::Value,
    pub data: DataSummary,
    pub step_times: Vec<(String, Duration)>,
}

impl TrainedModel {
    /// Builds the lookup tables that serving and evaluation read.
    pub fn model_data(&self) -> Result<ModelData> {
        model_data(&self.items, &self.embeddings)
    }
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Computes catalogue, popularity and neighbours from interactions. Listed items
/// that no interaction mentions join the catalogue without buyers, and every
/// item without co-purchase neighbours gets neighbours by title.
pub fn fit_item_model(interactions: &[&Interaction], listings: &[ItemListing], options: &TrainOptions) -> ItemModel {
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
    let mut catalogue = catalogue;
    let bought: FxHashSet<&str> = item_ids.iter().copied().collect();
    catalogue.extend(listings.iter().filter(|listing| !bought.contains(listing.item_id.as_str())).map(|listing| CatalogueItem {
        item_id: listing.item_id.clone(),
        title: listing.title.clone(),
        price: listing.price,
        buyers: 0,
        recent_buyers: 0,
    }));

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
                    kind: NeighbourKind::CoPurchase,
                })
                .collect();
            (item_ids[item].to_string(), list)
        })
        .collect::<FxHashMap<String, Vec<Neighbour>>>();

    let mut neighbours = neighbours;
    let without_neighbours: Vec<&str> =
        catalogue.iter().map(|item| item.item_id.as_str()).filter(|item_id| !neighbours.contains_key(*item_id)).collect();
    neighbours.extend(titles::title_neighbours(&catalogue, &without_neighbours, options.title_neighbours));

    ItemModel { catalogue, popularity, neighbours }
}

/// Factorises the users' histories; item rows follow the catalogue order, so an
/// item without interactions gets a zero vector.
pub fn fit_embeddings(histories: &FxHashMap<String, UserHistory>, catalogue: &[CatalogueItem], options: &AlsOptions) -> TrainedEmbeddings {
    let item_ids: Vec<String> = catalogue.iter().map(|item| item.item_id.clone()).collect();
    let item_index: FxHashMap<&str, u32> = item_ids.iter().enumerate().map(|(row, item_id)| (item_id.as_str(), row as u32)).collect();
    let mut user_ids: Vec<String> = histories.keys().cloned().collect();
    user_ids.sort_unstable();

    let user_items: UserItems = user_ids
        .iter()
        .map(|user_id| {
            let history = &histories[user_id];
            let mut row: Vec<(u32, f32)> = history
                .purchased
                .iter()
                .chain(&history.interest)
                .filter_map(|(item_id, &strength)| item_index.get(item_id.as_str()).map(|&item| (item, strength)))
                .collect();
            row.sort_unstable_by_key(|&(item, _)| item);
            row
        })
        .collect();
    let factorisation = fit_als(&user_items, item_ids.len(), options);
    TrainedEmbeddings { options: *options, item_ids, items: factorisation.items, user_ids, users: factorisation.users }
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
    let listings = &cleaning.guest_listings;

    let items = timed(progress, &mut times, "items and neighbours", || {
        let all: Vec<&Interaction> = interactions.iter().collect();
        let items = fit_item_model(&all, listings, options);
        let pairs: usize = items.neighbours.values().map(Vec::len).sum();
        let by_title = items.neighbours.values().filter(|list| list.first().is_some_and(|n| n.kind == NeighbourKind::Title)).count();
        let summary = format!(
            "{} items, {} with neighbours ({by_title} by title), {pairs} neighbour pairs",
            items.catalogue.len(),
            items.neighbours.len()
        );
        Ok((items, summary))
    })?;

    let embeddings = timed(progress, &mut times, "embeddings", || {
        let embeddings = fit_embeddings(&user_histories(interactions.iter()), &items.catalogue, &options.als);
        let settings = embeddings.options.settings;
        let summary = format!(
            "{} users x {} items, {} factors, {} iterations",
            embeddings.user_ids.len(),
            embeddings.item_ids.len(),
            settings.factors,
            embeddings.options.iterations
        );
        Ok((embeddings, summary))
    })?;

    let profiles = timed(progress, &mut times, "user profiles", || {
        let profiles = build_profiles(interactions);
        let summary = format!("{} users", profiles.len());
        Ok((profiles, summary))
    })?;

    let (ranker, ranker_report) = timed(progress, &mut times, "ranker", || train_ranker(interactions, listings, options))?;

    let data = DataSummary {
        rows_read: cleaning.rows_read,
        rows_kept: cleaning.rows_kept,
        interactions: interactions.len() as u64,
        users: profiles.len() as u64,
        items: items.catalogue.len() as u64,
        first_interaction: first,
        last_interaction: last,
    };
    Ok(TrainedModel { items, embeddings, profiles, ranker, ranker_report, data, step_times: times })
}

/// Fits the ranker on a split of the interactions: the models it ranks with see
/// only the training part, and the labels come from the test part. Every n-th
/// user of the split validates the ranker against the single-signal baselines.
fn train_ranker(
    interactions: &[Interaction],
    listings: &[ItemListing],
    options: &TrainOptions,
) -> Result<((MlpModel, serde_json::Value), String)> {
    let split = split(interactions, options.ranker_split);
    if split.train.is_empty() || split.users.is_empty() {
        return Err(Error::Training(format!(
            "the ranker's split ({}) left no training data or no user to learn from: provide a longer history",
            split.description
        )));
    }
    let train_rows: Vec<&Interaction> = split.train.iter().collect();
    let items = fit_item_model(&train_rows, listings, options);
    let embeddings = fit_embeddings(&user_histories(split.train.iter()), &items.catalogue, &options.als);
    let data = model_data(&items, &embeddings)?;

    let every = options.validation_every.max(2);
    let mut validation: Vec<SplitUser> = Vec::new();
    let mut training: Vec<SplitUser> = Vec::new();
    for (index, user) in split.users.into_iter().enumerate() {
        if index % every == 0 {
            validation.push(user);
        } else {
            training.push(user);
        }
    }

    let (features, labels) = training_rows(&data, &training, options.candidate_limits);
    let positives = labels.iter().filter(|&&label| label > 0.5).count();
    if positives == 0 {
        return Err(Error::Training(
            "no user bought a candidate item in the ranker's test part: the ranker has nothing to learn from".into(),
        ));
    }
    let model = fit_mlp(&features, &labels, options.fit);

    let k = 10;
    let limits = options.candidate_limits;
    let recommenders: [(&str, &dyn Recommender); 4] = [
        ("ranker", &ScorerRecommender { data: &data, scorer: &model, limits }),
        ("neighbours", &NeighbourRecommender { data: &data, limits }),
        ("embeddings", &EmbeddingRecommender { data: &data }),
        ("popularity", &PopularityRecommender { data: &data }),
    ];
    let mut validation_report = serde_json::Map::new();
    let mut ndcg = Vec::new();
    for (name, recommender) in recommenders {
        let lists = evaluate_lists(recommender, &validation, k)?;
        let metrics = evaluate::metrics_at(&lists, &validation, k, data.catalogue().len());
        ndcg.push(format!("{name} {:.4}", metrics.ndcg));
        validation_report.insert(name.to_string(), serde_json::to_value(metrics).expect("metrics serialise"));
    }

    let report = json!({
        "kind": "mlp",
        "hidden_units": model.hidden,
        "fit": options.fit,
        "split": {
            "description": split.description,
            "training_users": training.len(),
            "validation_users": validation.len(),
            "training_rows": labels.len(),
            "positive_rows": positives,
        },
        "training_log_loss": log_loss(&model, &features, &labels),
        "validation_at_10": validation_report,
    });
    let summary =
        format!("{} rows from {} users; NDCG@10 on {} held-out users: {}", labels.len(), training.len(), validation.len(), ndcg.join(", "));
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
        let model = fit_item_model(&refs, &[], &TrainOptions::default());
        let a = model.catalogue.iter().find(|item| item.item_id == "A").unwrap();
        assert_eq!(a.buyers, 2);
        assert_eq!(a.recent_buyers, 1);
        assert_eq!(model.popularity.all_time[0], "A");
    }

    #[test]
    fn guest_items_join_catalogue_with_title_neighbours() {
        let mut rows = [row("u1", "A", 0, "b1"), row("u1", "B", 0, "b1"), row("u2", "A", 1, "b2"), row("u2", "B", 1, "b2")];
        rows[0].title = Some("RED HEART TIN".into());
        rows[2].title = Some("RED HEART TIN".into());
        let refs: Vec<&Interaction> = rows.iter().collect();
        let listings = [
            ItemListing { item_id: "NEW".into(), title: "BLUE HEART TIN".into(), price: 2.5 },
            ItemListing { item_id: "A".into(), title: "RED HEART TIN".into(), price: 9.0 },
        ];
        let mut options = TrainOptions::default();
        options.neighbours.min_support = 1;
        let model = fit_item_model(&refs, &listings, &options);

        let new_item = model.catalogue.iter().find(|item| item.item_id == "NEW").expect("guest item is in the catalogue");
        assert_eq!(new_item.buyers, 0);
        assert_eq!(model.catalogue.iter().filter(|item| item.item_id == "A").count(), 1, "a bought item is listed once");
        let neighbours = &model.neighbours["NEW"];
        assert_eq!(neighbours[0].item_id, "A");
        assert_eq!(neighbours[0].kind, NeighbourKind::Title);
        assert_eq!(model.neighbours["A"][0].kind, NeighbourKind::CoPurchase);
    }

    #[test]
    fn embeddings_follow_catalogue_order() {
        let rows = [row("u1", "A", 0, "b1"), row("u1", "B", 0, "b1"), row("u2", "B", 1, "b2")];
        let refs: Vec<&Interaction> = rows.iter().collect();
        let listings = [ItemListing { item_id: "NEW".into(), title: "NEW".into(), price: 1.0 }];
        let items = fit_item_model(&refs, &listings, &TrainOptions::default());
        let options = AlsOptions { iterations: 2, ..AlsOptions::default() };
        let embeddings = fit_embeddings(&user_histories(rows.iter()), &items.catalogue, &options);
        let ids: Vec<&str> = items.catalogue.iter().map(|item| item.item_id.as_str()).collect();
        assert_eq!(embeddings.item_ids, ids);
        assert_eq!(embeddings.user_ids, vec!["u1", "u2"]);
        let factors = options.settings.factors;
        let new_row = ids.iter().position(|id| *id == "NEW").unwrap();
        assert!(embeddings.items[new_row * factors..(new_row + 1) * factors].iter().all(|&value| value == 0.0));
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
}

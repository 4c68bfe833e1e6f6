//! Candidate generation, feature building and ranking: the one path that serves
//! recommendations and that the trainer uses to learn and evaluate the ranker.

use std::cmp::Ordering;

use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;

use crate::error::Result;
use crate::model::ModelData;

/// Feature names in the order the ranker reads them.
pub const FEATURE_NAMES: [&str; 7] = [
    "neighbour_score_sum",
    "neighbour_score_max",
    "neighbour_hits_log",
    "popularity_log",
    "recent_popularity_log",
    "price_log_ratio",
    "history_size_log",
];

/// Number of features per candidate.
pub const FEATURE_COUNT: usize = FEATURE_NAMES.len();

/// Weight of a viewed item, relative to a purchase, when it seeds neighbours.
pub const VIEW_WEIGHT: f32 = 0.3;

/// Weight of an item added to the cart, relative to a purchase, when it seeds neighbours.
pub const ADD_TO_CART_WEIGHT: f32 = 0.6;

/// A user's purchases and interests at request time.
#[derive(Debug, Clone, Default)]
pub struct UserHistory {
    /// Items the user bought, with the quantity bought.
    pub purchased: FxHashMap<String, f64>,
    /// Items the user showed interest in without buying, with a weight in 0..1.
    pub interest: FxHashMap<String, f32>,
}

impl UserHistory {
    /// Returns true when the history contains no item at all.
    pub fn is_empty(&self) -> bool {
        self.purchased.is_empty() && self.interest.is_empty()
    }

    /// Returns true when the user bought the item or showed interest in it.
    pub fn contains(&self, item_id: &str) -> bool {
        self.purchased.contains_key(item_id) || self.interest.contains_key(item_id)
    }

    /// Returns the number of distinct items the user bought or showed interest in.
    pub fn size(&self) -> usize {
        self.purchased.len() + self.interest.len()
    }

    /// Returns the median catalogue price of the purchased items, or of the items
    /// of interest for a user who bought nothing yet, if any price is known.
    pub fn median_price(&self, data: &ModelData) -> Option<f64> {
        let items: Vec<&String> = if self.purchased.is_empty() { self.interest.keys().collect() } else { self.purchased.keys().collect() };
        let mut prices: Vec<f64> = items.into_iter().filter_map(|item_id| data.catalogue.get(item_id).map(|item| item.price)).collect();
        if prices.is_empty() {
            return None;
        }
        prices.sort_by(f64::total_cmp);
        Some(prices[prices.len() / 2])
    }
}

/// Source of a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CandidateSource {
    /// A neighbour of an item in the user's history.
    Neighbours,
    /// A popular item.
    Popular,
}

/// One item considered for a user, with the signals gathered for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub item_id: String,
    pub source: CandidateSource,
    pub neighbour_score_sum: f32,
    pub neighbour_score_max: f32,
    pub neighbour_hits: u32,
}

/// How many candidates each source contributes.
#[derive(Debug, Clone, Copy)]
pub struct CandidateLimits {
    pub neighbours: usize,
    pub popular: usize,
}

impl Default for CandidateLimits {
    fn default() -> Self {
        CandidateLimits { neighbours: 200, popular: 50 }
    }
}

/// Collects candidates for a user: neighbours of the history items, then popular
/// items, never an item the user already bought, viewed or carted.
pub fn generate_candidates(data: &ModelData, history: &UserHistory, limits: CandidateLimits) -> Vec<Candidate> {
    let mut scored: FxHashMap<&str, Candidate> = FxHashMap::default();
    // Views and carts weigh less than purchases beside them. A visitor who bought
    // nothing yet has only them, and the ranker learned its weights from buyers,
    // so for that visitor they count as much as purchases do.
    let interest_floor = if history.purchased.is_empty() { 1.0 } else { 0.0 };
    let seeds = history
        .purchased
        .keys()
        .map(|item_id| (item_id, 1.0_f32))
        .chain(history.interest.iter().map(|(item_id, weight)| (item_id, weight.max(interest_floor))));

    for (seed, weight) in seeds {
        let Some(neighbours) = data.neighbours.get(seed) else { continue };
        for neighbour in neighbours {
            if history.contains(&neighbour.item_id) {
                continue;
            }
            let candidate = scored.entry(neighbour.item_id.as_str()).or_insert_with(|| Candidate {
                item_id: neighbour.item_id.clone(),
                source: CandidateSource::Neighbours,
                neighbour_score_sum: 0.0,
                neighbour_score_max: 0.0,
                neighbour_hits: 0,
            });
            let score = weight * neighbour.score;
            candidate.neighbour_score_sum += score;
            candidate.neighbour_score_max = candidate.neighbour_score_max.max(score);
            candidate.neighbour_hits += 1;
        }
    }

    let mut candidates: Vec<Candidate> = scored.into_values().collect();
    candidates.sort_by(|a, b| b.neighbour_score_sum.total_cmp(&a.neighbour_score_sum).then_with(|| a.item_id.cmp(&b.item_id)));
    candidates.truncate(limits.neighbours);

    let from_neighbours: FxHashSet<&str> = candidates.iter().map(|candidate| candidate.item_id.as_str()).collect();
    let popular: Vec<Candidate> = unseen_popular(data, history)
        .filter(|item_id| !from_neighbours.contains(item_id.as_str()))
        .take(limits.popular)
        .map(|item_id| Candidate {
            item_id: item_id.clone(),
            source: CandidateSource::Popular,
            neighbour_score_sum: 0.0,
            neighbour_score_max: 0.0,
            neighbour_hits: 0,
        })
        .collect();
    candidates.extend(popular);
    candidates
}

/// Builds the feature row of one candidate, in [`FEATURE_NAMES`] order.
pub fn candidate_features(data: &ModelData, history_size: usize, median_price: Option<f64>, candidate: &Candidate) -> [f32; FEATURE_COUNT] {
    let item = data.catalogue.get(&candidate.item_id);
    let buyers = item.map_or(0, |item| item.buyers);
    let recent_buyers = item.map_or(0, |item| item.recent_buyers);
    let price_log_ratio = match (item, median_price) {
        (Some(item), Some(median)) if item.price > 0.0 && median > 0.0 => (item.price / median).ln() as f32,
        _ => 0.0,
    };
    [
        candidate.neighbour_score_sum,
        candidate.neighbour_score_max,
        (candidate.neighbour_hits as f32).ln_1p(),
        (buyers as f32).ln_1p(),
        (recent_buyers as f32).ln_1p(),
        price_log_ratio,
        (history_size as f32).ln_1p(),
    ]
}

/// Builds the row-major feature matrix `[candidates.len(), FEATURE_COUNT]`.
pub fn build_features(data: &ModelData, history: &UserHistory, candidates: &[Candidate]) -> Vec<f32> {
    let median_price = history.median_price(data);
    let history_size = history.size();
    let mut matrix = Vec::with_capacity(candidates.len() * FEATURE_COUNT);
    for candidate in candidates {
        matrix.extend_from_slice(&candidate_features(data, history_size, median_price, candidate));
    }
    matrix
}

/// Anything that scores a feature matrix: the ONNX ranker when serving, the
/// trainer's own model while it learns.
pub trait Scorer {
    /// Returns one score per row of the row-major `[rows, FEATURE_COUNT]` matrix.
    fn score(&self, features: &[f32], rows: usize) -> Result<Vec<f32>>;
}

/// One ranked recommendation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recommendation {
    pub item_id: String,
    pub title: String,
    pub score: f32,
    pub source: CandidateSource,
}

/// Generates candidates, scores them and returns the best `limit`, best first.
pub fn recommend(
    data: &ModelData,
    history: &UserHistory,
    scorer: &dyn Scorer,
    limits: CandidateLimits,
    limit: usize,
) -> Result<Vec<Recommendation>> {
    let candidates = generate_candidates(data, history, limits);
    if candidates.is_empty() {
        return Ok(Vec::new());
    }

    let features = build_features(data, history, &candidates);
    let scores = scorer.score(&features, candidates.len())?;

    let mut ranked: Vec<(Candidate, f32)> = candidates.into_iter().zip(scores).collect();
    ranked.sort_by(|(a, a_score), (b, b_score)| {
        b_score.partial_cmp(a_score).unwrap_or(Ordering::Equal).then_with(|| a.item_id.cmp(&b.item_id))
    });
    ranked.truncate(limit);

    Ok(ranked
        .into_iter()
        .map(|(candidate, score)| Recommendation {
            title: data.title(&candidate.item_id).to_string(),
            item_id: candidate.item_id,
            score,
            source: candidate.source,
        })
        .collect())
}

/// Returns popular item ids, recent first and then all-time, each once, without
/// the items the user bought, viewed or carted.
fn unseen_popular<'a>(data: &'a ModelData, history: &'a UserHistory) -> impl Iterator<Item = &'a String> + 'a {
    let mut seen = FxHashSet::default();
    data.popularity
        .recent
        .iter()
        .chain(&data.popularity.all_time)
        .filter(move |item_id| !history.contains(item_id) && seen.insert(item_id.as_str()))
}

/// Returns the most popular items the user has not bought, viewed or carted, for
/// users without history to rank from.
pub fn popular_fallback(data: &ModelData, history: &UserHistory, limit: usize) -> Vec<Recommendation> {
    let count = data.popularity.recent.len().max(1) as f32;
    unseen_popular(data, history)
        .take(limit)
        .enumerate()
        .map(|(rank, item_id)| Recommendation {
            item_id: item_id.clone(),
            title: data.title(item_id).to_string(),
            score: 1.0 - rank as f32 / count,
            source: CandidateSource::Popular,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CatalogueItem, Neighbour, Popularity};

    fn item(item_id: &str, price: f64, buyers: u32) -> CatalogueItem {
        CatalogueItem { item_id: item_id.into(), title: format!("TITLE {item_id}"), price, buyers, recent_buyers: buyers / 2 }
    }

    fn neighbour(item_id: &str, score: f32) -> Neighbour {
        Neighbour { item_id: item_id.into(), score, support: 3 }
    }

    fn sample_data() -> ModelData {
        let mut neighbours = FxHashMap::default();
        neighbours.insert("A".to_string(), vec![neighbour("B", 0.8), neighbour("C", 0.4)]);
        neighbours.insert("D".to_string(), vec![neighbour("C", 0.5), neighbour("A", 0.9)]);
        let popularity =
            Popularity { recent_days: 30, all_time: vec!["E".into(), "A".into(), "B".into()], recent: vec!["B".into(), "E".into()] };
        let catalogue = ["A", "B", "C", "D", "E"].iter().map(|id| item(id, 2.0, 10)).collect();
        ModelData::new(catalogue, popularity, neighbours)
    }

    fn history(purchased: &[&str]) -> UserHistory {
        UserHistory { purchased: purchased.iter().map(|id| (id.to_string(), 1.0)).collect(), interest: FxHashMap::default() }
    }

    #[test]
    fn candidates_sum_neighbour_scores() {
        let candidates = generate_candidates(&sample_data(), &history(&["A", "D"]), CandidateLimits::default());
        let c = candidates.iter().find(|c| c.item_id == "C").unwrap();
        assert!((c.neighbour_score_sum - 0.9).abs() < 1e-6);
        assert!((c.neighbour_score_max - 0.5).abs() < 1e-6);
        assert_eq!(c.neighbour_hits, 2);
        assert_eq!(c.source, CandidateSource::Neighbours);
    }

    #[test]
    fn candidates_exclude_purchased_items() {
        let candidates = generate_candidates(&sample_data(), &history(&["A", "D"]), CandidateLimits::default());
        assert!(candidates.iter().all(|c| c.item_id != "A" && c.item_id != "D"));
    }

    #[test]
    fn candidates_add_popular_once() {
        let candidates = generate_candidates(&sample_data(), &history(&["A"]), CandidateLimits::default());
        let ids: Vec<&str> = candidates.iter().map(|c| c.item_id.as_str()).collect();
        assert_eq!(ids, vec!["B", "C", "E"]);
        assert_eq!(candidates[2].source, CandidateSource::Popular);
    }

    #[test]
    fn interest_weights_neighbour_scores() {
        let mut user = history(&["E"]);
        user.interest.insert("A".into(), VIEW_WEIGHT);
        let candidates = generate_candidates(&sample_data(), &user, CandidateLimits::default());
        let b = candidates.iter().find(|c| c.item_id == "B").unwrap();
        assert!((b.neighbour_score_sum - 0.8 * VIEW_WEIGHT).abs() < 1e-6);
    }

    #[test]
    fn interest_alone_counts_as_purchase() {
        let mut user = history(&[]);
        user.interest.insert("A".into(), VIEW_WEIGHT);
        let candidates = generate_candidates(&sample_data(), &user, CandidateLimits::default());
        let b = candidates.iter().find(|c| c.item_id == "B").unwrap();
        assert!((b.neighbour_score_sum - 0.8).abs() < 1e-6);
    }

    #[test]
    fn fallback_skips_viewed_items() {
        let mut user = history(&[]);
        user.interest.insert("B".into(), VIEW_WEIGHT);
        let ranked = popular_fallback(&sample_data(), &user, 10);
        let ids: Vec<&str> = ranked.iter().map(|r| r.item_id.as_str()).collect();
        assert_eq!(ids, vec!["E", "A"]);
    }

    #[test]
    fn features_follow_contract_order() {
        let data = sample_data();
        let candidate = Candidate {
            item_id: "B".into(),
            source: CandidateSource::Neighbours,
            neighbour_score_sum: 1.5,
            neighbour_score_max: 0.8,
            neighbour_hits: 3,
        };
        let row = candidate_features(&data, 4, Some(1.0), &candidate);
        assert_eq!(row[0], 1.5);
        assert_eq!(row[1], 0.8);
        assert!((row[2] - 4f32.ln()).abs() < 1e-6);
        assert!((row[3] - 11f32.ln()).abs() < 1e-6);
        assert!((row[4] - 6f32.ln()).abs() < 1e-6);
        assert!((row[5] - 2f32.ln()).abs() < 1e-6);
        assert!((row[6] - 5f32.ln()).abs() < 1e-6);
    }

    struct SumScorer;

    impl Scorer for SumScorer {
        fn score(&self, features: &[f32], rows: usize) -> Result<Vec<f32>> {
            Ok(features.chunks(FEATURE_COUNT).take(rows).map(|row| row[0]).collect())
        }
    }

    #[test]
    fn recommend_orders_by_score() {
        let ranked = recommend(&sample_data(), &history(&["A", "D"]), &SumScorer, CandidateLimits::default(), 2).unwrap();
        let ids: Vec<&str> = ranked.iter().map(|r| r.item_id.as_str()).collect();
        assert_eq!(ids, vec!["C", "B"]);
        assert_eq!(ranked[0].title, "TITLE C");
    }

    #[test]
    fn fallback_skips_purchased_and_duplicates() {
        let ranked = popular_fallback(&sample_data(), &history(&["E"]), 10);
        let ids: Vec<&str> = ranked.iter().map(|r| r.item_id.as_str()).collect();
        assert_eq!(ids, vec!["B", "A"]);
    }
}

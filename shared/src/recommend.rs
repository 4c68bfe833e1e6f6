//! Candidate generation, feature building and ranking: the one path that serves
//! recommendations and that the trainer uses to learn and evaluate the ranker.

use std::cmp::Ordering;

use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;

use crate::error::Result;
use crate::model::{ModelData, NeighbourKind};

/// Feature names in the order the ranker reads them, with what each one measures.
pub const FEATURES: [(&str, &str); 11] = [
    ("neighbour_score_sum", "sum over the history items of their neighbour score for the candidate, weighted by interest"),
    ("neighbour_score_max", "largest of those weighted neighbour scores"),
    ("neighbour_hits_log", "ln(1 + number of history items that list the candidate as a neighbour)"),
    ("related_recency_days_log", "ln(1 + days from the latest such history item to the user's latest interaction); ln(366) when none"),
    ("embedding_score", "dot product of the folded-in user vector and the candidate's item vector"),
    ("recent_similarity", "largest cosine similarity of the candidate's item vector to the user's three latest items"),
    ("popularity_log", "ln(1 + distinct buyers of the candidate)"),
    ("recent_popularity_log", "ln(1 + distinct buyers in the recent window)"),
    ("popularity_trend", "ln((1 + recent buyers) / (1 + buyers)): near 0 for items that sell now, negative for fading ones"),
    ("price_log_ratio", "ln(candidate price / median price of the user's items); 0 when unknown"),
    ("history_size_log", "ln(1 + distinct items in the user's history)"),
];

/// Feature names in the order the ranker reads them.
pub const FEATURE_NAMES: [&str; FEATURE_COUNT] = {
    let mut names = [""; FEATURES.len()];
    let mut index = 0;
    while index < FEATURES.len() {
        names[index] = FEATURES[index].0;
        index += 1;
    }
    names
};

/// Number of features per candidate.
pub const FEATURE_COUNT: usize = FEATURES.len();

/// Weight of a viewed item, relative to one order, when it seeds neighbours and the user vector.
pub const VIEW_WEIGHT: f32 = 0.3;

/// Weight of an item added to the cart, relative to one order, when it seeds neighbours and the user vector.
pub const ADD_TO_CART_WEIGHT: f32 = 0.6;

/// Latest history items whose embedding neighbours become candidates.
const RECENT_SEEDS: usize = 3;

/// Days used for `related_recency_days_log` when no history item led to the candidate.
const UNRELATED_DAYS: f32 = 365.0;

const SECONDS_PER_DAY: f32 = 86_400.0;

/// A user's purchases and interests at request time.
#[derive(Debug, Clone, Default)]
pub struct UserHistory {
    /// Items the user bought, with the number of orders that contained them.
    pub purchased: FxHashMap<String, f32>,
    /// Items the user showed interest in without buying, with a weight in 0..1.
    pub interest: FxHashMap<String, f32>,
    /// Unix seconds of the user's latest interaction with each item.
    pub last_at: FxHashMap<String, i64>,
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

    /// Records an interaction time with an item, keeping the latest.
    pub fn touch(&mut self, item_id: &str, at: i64) {
        match self.last_at.get_mut(item_id) {
            Some(last) => *last = (*last).max(at),
            None => {
                self.last_at.insert(item_id.to_string(), at);
            }
        }
    }

    /// Returns the time of the user's latest interaction.
    pub fn latest_at(&self) -> Option<i64> {
        self.last_at.values().copied().max()
    }

    /// Returns up to `count` history items, latest first, ties by item id.
    pub fn recent_items(&self, count: usize) -> Vec<&str> {
        let mut items: Vec<(&str, i64)> = self
            .purchased
            .keys()
            .chain(self.interest.keys())
            .map(|item_id| (item_id.as_str(), self.last_at.get(item_id).copied().unwrap_or(i64::MIN)))
            .collect();
        let latest_first = |a: &(&str, i64), b: &(&str, i64)| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0));
        if items.len() > count {
            items.select_nth_unstable_by(count, latest_first);
            items.truncate(count);
        }
        items.sort_by(latest_first);
        items.into_iter().map(|(item_id, _)| item_id).collect()
    }

    /// Returns the median catalogue price of the purchased items, or of the items
    /// of interest for a user who bought nothing yet, if any price is known.
    pub fn median_price(&self, data: &ModelData) -> Option<f64> {
        let items = if self.purchased.is_empty() { &self.interest } else { &self.purchased };
        let mut prices: Vec<f64> = items.keys().filter_map(|item_id| data.item(item_id).map(|item| item.price)).collect();
        if prices.is_empty() {
            return None;
        }
        let middle = prices.len() / 2;
        let (_, median, _) = prices.select_nth_unstable_by(middle, f64::total_cmp);
        Some(*median)
    }
}

/// Source of a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CandidateSource {
    /// A co-purchase neighbour of an item in the user's history.
    Neighbours,
    /// A neighbour by title of a history item without any purchase.
    TitleNeighbours,
    /// An item close to the user's vector or to a latest history item in embedding space.
    Embedding,
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
    /// Latest interaction time with a history item that lists this candidate as a neighbour.
    pub related_last_at: Option<i64>,
    pub embedding_score: f32,
    pub recent_similarity: f32,
    /// Row of the item in the model data.
    row: usize,
}

impl Candidate {
    fn new(data: &ModelData, row: usize, source: CandidateSource) -> Self {
        Candidate {
            item_id: data.item_id(row).to_string(),
            row,
            source,
            neighbour_score_sum: 0.0,
            neighbour_score_max: 0.0,
            neighbour_hits: 0,
            related_last_at: None,
            embedding_score: 0.0,
            recent_similarity: 0.0,
        }
    }
}

/// How many candidates each source contributes.
#[derive(Debug, Clone, Copy)]
pub struct CandidateLimits {
    pub neighbours: usize,
    /// Items nearest to the user's vector.
    pub embedding: usize,
    /// Items nearest to the latest history items.
    pub similar_to_recent: usize,
    pub popular: usize,
}

impl Default for CandidateLimits {
    fn default() -> Self {
        CandidateLimits { neighbours: 200, embedding: 100, similar_to_recent: 50, popular: 50 }
    }
}

/// One history item that has a row in the model data.
struct Seed {
    row: usize,
    /// Weight of the item's neighbours: 1 for a purchase, the interest weight otherwise.
    weight: f32,
    /// Strength of the interaction for fold-in: orders for a purchase, the interest weight otherwise.
    strength: f32,
    last_at: Option<i64>,
}

/// The user's history by item row, built once per request so that the steps
/// after it read arrays instead of hashing item ids.
struct HistoryRows {
    seeds: Vec<Seed>,
    /// True for every row the user bought, viewed or carted.
    in_history: Vec<bool>,
}

impl HistoryRows {
    fn new(data: &ModelData, history: &UserHistory) -> Self {
        // Views and carts weigh less than purchases beside them. A visitor who bought
        // nothing yet has only them, and the ranker learned its weights from buyers,
        // so for that visitor they count as much as purchases do.
        let interest_floor = if history.purchased.is_empty() { 1.0 } else { 0.0 };
        let mut in_history = vec![false; data.rows()];
        let seeds = history
            .purchased
            .iter()
            .map(|(item_id, &orders)| (item_id, 1.0_f32, orders))
            .chain(history.interest.iter().map(|(item_id, &weight)| (item_id, weight.max(interest_floor), weight)))
            .filter_map(|(item_id, weight, strength)| {
                let row = data.row(item_id)?;
                in_history[row] = true;
                Some(Seed { row, weight, strength, last_at: history.last_at.get(item_id).copied() })
            })
            .collect();
        HistoryRows { seeds, in_history }
    }
}

/// Neighbour signals gathered for one item row.
#[derive(Clone, Copy)]
struct NeighbourSignal {
    sum: f32,
    max: f32,
    hits: u32,
    related_last_at: Option<i64>,
    co_purchase: bool,
}

const NO_SIGNAL: NeighbourSignal = NeighbourSignal { sum: 0.0, max: 0.0, hits: 0, related_last_at: None, co_purchase: false };

/// Returns the rows of the `count` highest values, best first, among rows that `keep` accepts.
fn top_rows(values: &[f32], count: usize, keep: impl Fn(usize) -> bool) -> Vec<usize> {
    let mut rows: Vec<usize> = (0..values.len()).filter(|&row| keep(row)).collect();
    let by_value = |a: &usize, b: &usize| values[*b].total_cmp(&values[*a]).then_with(|| a.cmp(b));
    if rows.len() > count {
        rows.select_nth_unstable_by(count, by_value);
        rows.truncate(count);
    }
    rows.sort_by(by_value);
    rows
}

/// Collects candidates for a user: neighbours of the history items, items near
/// the user's vector and near the latest history items, then popular items,
/// never an item the user already bought, viewed or carted.
pub fn generate_candidates(data: &ModelData, history: &UserHistory, limits: CandidateLimits) -> Vec<Candidate> {
    let rows = HistoryRows::new(data, history);
    let mut excluded = rows.in_history.clone();
    let mut candidates = neighbour_candidates(data, &rows, limits.neighbours);
    for candidate in &candidates {
        excluded[candidate.row] = true;
    }

    let signals = data.embeddings().and_then(|embeddings| {
        let strengths = rows.seeds.iter().filter_map(|seed| Some((data.embedding_row(seed.row)?, seed.strength)));
        let user = embeddings.fold_in_rows(strengths)?;
        let recent: Vec<usize> = history.recent_items(RECENT_SEEDS).into_iter().filter_map(|item_id| embeddings.row(item_id)).collect();
        Some((embeddings.scores(&user), embeddings.max_similarity(&recent)))
    });
    if let Some((user_scores, recent_similarity)) = &signals {
        let fresh = |embedding_row: usize| !excluded[data.item_row_of_embedding(embedding_row)];
        let mut chosen = top_rows(user_scores, limits.embedding, fresh);
        let near_recent = top_rows(recent_similarity, limits.similar_to_recent + chosen.len(), fresh);
        let from_user: FxHashSet<usize> = chosen.iter().copied().collect();
        chosen.extend(near_recent.into_iter().filter(|row| !from_user.contains(row)).take(limits.similar_to_recent));
        for embedding_row in chosen {
            let row = data.item_row_of_embedding(embedding_row);
            excluded[row] = true;
            candidates.push(Candidate::new(data, row, CandidateSource::Embedding));
        }
    }

    for &row in data.popular_rows().iter().filter(|&&row| !excluded[row as usize]).take(limits.popular) {
        candidates.push(Candidate::new(data, row as usize, CandidateSource::Popular));
    }

    if let Some((user_scores, recent_similarity)) = &signals {
        for candidate in &mut candidates {
            if let Some(embedding_row) = data.embedding_row(candidate.row) {
                candidate.embedding_score = user_scores[embedding_row];
                candidate.recent_similarity = recent_similarity[embedding_row];
            }
        }
    }
    candidates
}

/// Collects the neighbours of the history items, best summed score first.
fn neighbour_candidates(data: &ModelData, rows: &HistoryRows, limit: usize) -> Vec<Candidate> {
    let mut signals = vec![NO_SIGNAL; data.rows()];
    let mut touched: Vec<usize> = Vec::new();
    for seed in &rows.seeds {
        for neighbour in data.neighbours_at(seed.row) {
            let row = neighbour.row as usize;
            if rows.in_history[row] {
                continue;
            }
            let signal = &mut signals[row];
            if signal.hits == 0 {
                touched.push(row);
            }
            let score = seed.weight * neighbour.score;
            signal.sum += score;
            signal.max = signal.max.max(score);
            signal.hits += 1;
            signal.related_last_at = signal.related_last_at.max(seed.last_at);
            signal.co_purchase |= neighbour.kind == NeighbourKind::CoPurchase;
        }
    }

    let by_sum = |a: &usize, b: &usize| signals[*b].sum.total_cmp(&signals[*a].sum).then_with(|| data.item_id(*a).cmp(data.item_id(*b)));
    if touched.len() > limit {
        touched.select_nth_unstable_by(limit, by_sum);
        touched.truncate(limit);
    }
    touched.sort_by(by_sum);
    touched
        .into_iter()
        .map(|row| {
            let signal = signals[row];
            let source = if signal.co_purchase { CandidateSource::Neighbours } else { CandidateSource::TitleNeighbours };
            let mut candidate = Candidate::new(data, row, source);
            candidate.neighbour_score_sum = signal.sum;
            candidate.neighbour_score_max = signal.max;
            candidate.neighbour_hits = signal.hits;
            candidate.related_last_at = signal.related_last_at;
            candidate
        })
        .collect()
}

/// Facts about the user that every candidate's features share.
#[derive(Debug, Clone, Copy)]
pub struct UserContext {
    pub history_size: usize,
    pub median_price: Option<f64>,
    pub latest_at: Option<i64>,
}

impl UserContext {
    /// Computes the shared facts from the history.
    pub fn new(data: &ModelData, history: &UserHistory) -> Self {
        UserContext { history_size: history.size(), median_price: history.median_price(data), latest_at: history.latest_at() }
    }
}

/// Builds the feature row of one candidate, in [`FEATURE_NAMES`] order.
pub fn candidate_features(data: &ModelData, user: &UserContext, candidate: &Candidate) -> [f32; FEATURE_COUNT] {
    let logs = data.item_logs(candidate.row);
    let price_log_ratio = match (logs.price, user.median_price) {
        (Some(price), Some(median)) if median > 0.0 => (price - median.ln()) as f32,
        _ => 0.0,
    };
    let related_days = match (candidate.related_last_at, user.latest_at) {
        (Some(related), Some(latest)) => ((latest - related).max(0) as f32 / SECONDS_PER_DAY).min(UNRELATED_DAYS),
        _ => UNRELATED_DAYS,
    };
    [
        candidate.neighbour_score_sum,
        candidate.neighbour_score_max,
        (candidate.neighbour_hits as f32).ln_1p(),
        related_days.ln_1p(),
        candidate.embedding_score,
        candidate.recent_similarity,
        logs.buyers,
        logs.recent_buyers,
        logs.recent_buyers - logs.buyers,
        price_log_ratio,
        (user.history_size as f32).ln_1p(),
    ]
}

/// Builds the row-major feature matrix `[candidates.len(), FEATURE_COUNT]`.
pub fn build_features(data: &ModelData, history: &UserHistory, candidates: &[Candidate]) -> Vec<f32> {
    let user = UserContext::new(data, history);
    let mut matrix = Vec::with_capacity(candidates.len() * FEATURE_COUNT);
    for candidate in candidates {
        matrix.extend_from_slice(&candidate_features(data, &user, candidate));
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
    let best_first = |(a, a_score): &(Candidate, f32), (b, b_score): &(Candidate, f32)| {
        b_score.partial_cmp(a_score).unwrap_or(Ordering::Equal).then_with(|| a.item_id.cmp(&b.item_id))
    };
    if ranked.len() > limit {
        ranked.select_nth_unstable_by(limit, best_first);
        ranked.truncate(limit);
    }
    ranked.sort_by(best_first);

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

/// Recommendations for one request, with the fallback used when there was nothing to rank.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Served {
    /// "popular" when the user has no history to rank from or no candidate came up.
    pub fallback: Option<&'static str>,
    pub recommendations: Vec<Recommendation>,
}

/// Ranks the user's candidates, or falls back to popular items; the path that
/// the inference function, the batch job and the evaluation share.
pub fn serve(data: &ModelData, history: &UserHistory, scorer: &dyn Scorer, limits: CandidateLimits, limit: usize) -> Result<Served> {
    let ranked = if history.is_empty() { Vec::new() } else { recommend(data, history, scorer, limits, limit)? };
    if ranked.is_empty() {
        return Ok(Served { fallback: Some("popular"), recommendations: popular_fallback(data, history, limit) });
    }
    Ok(Served { fallback: None, recommendations: ranked })
}

/// Returns the unseen items with the highest embedding score for the user, or an
/// empty list when the model has no embeddings or the history has no known item.
pub fn recommend_by_embedding(data: &ModelData, history: &UserHistory, limit: usize) -> Vec<Recommendation> {
    let Some(embeddings) = data.embeddings() else { return Vec::new() };
    let Some(user) = embeddings.fold_in(history) else { return Vec::new() };
    let scores = embeddings.scores(&user);
    top_rows(&scores, limit, |row| !history.contains(embeddings.item_id(row)))
        .into_iter()
        .map(|row| {
            let item_id = embeddings.item_id(row);
            Recommendation {
                item_id: item_id.to_string(),
                title: data.title(item_id).to_string(),
                score: scores[row],
                source: CandidateSource::Embedding,
            }
        })
        .collect()
}

/// Returns popular item ids, recent first and then all-time, each once, without
/// the items the user bought, viewed or carted.
fn unseen_popular<'a>(data: &'a ModelData, history: &'a UserHistory) -> impl Iterator<Item = &'a str> + 'a {
    data.popular_rows().iter().map(|&row| data.item_id(row as usize)).filter(move |item_id| !history.contains(item_id))
}

/// Returns the most popular items the user has not bought, viewed or carted, for
/// users without history to rank from.
pub fn popular_fallback(data: &ModelData, history: &UserHistory, limit: usize) -> Vec<Recommendation> {
    let count = data.popularity().recent.len().max(1) as f32;
    unseen_popular(data, history)
        .take(limit)
        .enumerate()
        .map(|(rank, item_id)| Recommendation {
            item_id: item_id.to_string(),
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
        Neighbour { item_id: item_id.into(), score, support: 3, kind: NeighbourKind::CoPurchase }
    }

    fn sample_neighbours() -> FxHashMap<String, Vec<Neighbour>> {
        let mut neighbours = FxHashMap::default();
        neighbours.insert("A".to_string(), vec![neighbour("B", 0.8), neighbour("C", 0.4)]);
        neighbours.insert("D".to_string(), vec![neighbour("C", 0.5), neighbour("A", 0.9)]);
        neighbours
    }

    fn sample_data() -> ModelData {
        let neighbours = sample_neighbours();
        let popularity =
            Popularity { recent_days: 30, all_time: vec!["E".into(), "A".into(), "B".into()], recent: vec!["B".into(), "E".into()] };
        let catalogue = ["A", "B", "C", "D", "E"].iter().map(|id| item(id, 2.0, 10)).collect();
        ModelData::new(catalogue, popularity, neighbours)
    }

    fn history(purchased: &[&str]) -> UserHistory {
        let mut history = UserHistory::default();
        for (day, item_id) in purchased.iter().enumerate() {
            history.purchased.insert(item_id.to_string(), 1.0);
            history.touch(item_id, day as i64 * 86_400);
        }
        history
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
            related_last_at: Some(0),
            embedding_score: 0.25,
            recent_similarity: 0.5,
            row: data.row("B").unwrap(),
        };
        let user = UserContext { history_size: 4, median_price: Some(1.0), latest_at: Some(9 * 86_400) };
        let row = candidate_features(&data, &user, &candidate);
        let expected = [1.5, 0.8, 4f32.ln(), 10f32.ln(), 0.25, 0.5, 11f32.ln(), 6f32.ln(), 6f32.ln() - 11f32.ln(), 2f32.ln(), 5f32.ln()];
        for (index, (actual, expected)) in row.iter().zip(expected).enumerate() {
            assert!((actual - expected).abs() < 1e-6, "{}: {actual} != {expected}", FEATURE_NAMES[index]);
        }
    }

    #[test]
    fn feature_names_follow_features() {
        assert_eq!(FEATURE_NAMES.len(), FEATURES.len());
        assert_eq!(FEATURE_NAMES[3], "related_recency_days_log");
    }

    #[test]
    fn unrelated_candidate_gets_default_recency() {
        let data = sample_data();
        let candidate = Candidate::new(&data, data.row("E").unwrap(), CandidateSource::Popular);
        let user = UserContext { history_size: 1, median_price: None, latest_at: Some(0) };
        let row = candidate_features(&data, &user, &candidate);
        assert!((row[3] - UNRELATED_DAYS.ln_1p()).abs() < 1e-6);
    }

    #[test]
    fn candidates_keep_latest_related_time() {
        let candidates = generate_candidates(&sample_data(), &history(&["A", "D"]), CandidateLimits::default());
        let c = candidates.iter().find(|c| c.item_id == "C").unwrap();
        assert_eq!(c.related_last_at, Some(86_400), "D was bought on day 1, A on day 0");
    }

    fn data_with_embeddings() -> ModelData {
        // F is close to A in embedding space and has no co-purchase link.
        let ids: Vec<String> = ["A", "B", "C", "D", "E", "F"].iter().map(|id| id.to_string()).collect();
        let vectors = vec![1.0, 0.0, 0.0, 1.0, 0.1, 0.9, 0.0, 1.0, 0.2, 0.2, 0.9, 0.1];
        let settings = crate::embeddings::FactorSettings { factors: 2, regularization: 0.1, alpha: 1.0 };
        let embeddings = crate::embeddings::ItemEmbeddings::new(ids, vectors, settings).unwrap();
        let data = sample_data();
        let mut catalogue = data.catalogue().to_vec();
        catalogue.push(item("F", 2.0, 4));
        ModelData::new(catalogue, data.popularity().clone(), sample_neighbours()).with_embeddings(embeddings)
    }

    #[test]
    fn embedding_candidates_add_unlinked_items() {
        let candidates = generate_candidates(&data_with_embeddings(), &history(&["A"]), CandidateLimits::default());
        let f = candidates.iter().find(|c| c.item_id == "F").expect("F is near A in embedding space");
        assert_eq!(f.source, CandidateSource::Embedding);
        assert!(f.embedding_score > 0.0);
        assert!(f.recent_similarity > 0.9);
        let b = candidates.iter().find(|c| c.item_id == "B").unwrap();
        assert_eq!(b.source, CandidateSource::Neighbours, "a neighbour keeps its source");
    }

    #[test]
    fn embedding_recommendations_skip_history() {
        let ranked = recommend_by_embedding(&data_with_embeddings(), &history(&["A"]), 3);
        assert_eq!(ranked[0].item_id, "F");
        assert!(ranked.iter().all(|r| r.item_id != "A"));
    }

    #[test]
    fn title_neighbours_mark_candidates() {
        let sample = sample_data();
        let mut neighbours = sample_neighbours();
        neighbours.insert("NEW".into(), vec![Neighbour { item_id: "C".into(), score: 0.7, support: 0, kind: NeighbourKind::Title }]);
        let data = ModelData::new(sample.catalogue().to_vec(), sample.popularity().clone(), neighbours);
        let mut user = UserHistory::default();
        user.interest.insert("NEW".into(), VIEW_WEIGHT);
        let candidates = generate_candidates(&data, &user, CandidateLimits::default());
        assert_eq!(candidates[0].item_id, "C");
        assert_eq!(candidates[0].source, CandidateSource::TitleNeighbours);
    }

    #[test]
    fn recent_items_latest_first() {
        let user = history(&["A", "D", "E"]);
        assert_eq!(user.recent_items(2), vec!["E", "D"]);
    }

    #[test]
    fn serve_falls_back_without_history() {
        let served = serve(&sample_data(), &UserHistory::default(), &SumScorer, CandidateLimits::default(), 2).unwrap();
        assert_eq!(served.fallback, Some("popular"));
        assert_eq!(served.recommendations.len(), 2);
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

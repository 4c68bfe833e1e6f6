//! Offline evaluation: top-k metrics of recommendation lists against the items
//! that test users went on to buy, for the served pipeline, its single-signal
//! baselines and lists produced by other libraries.

use std::fmt::Write as _;
use std::io::BufRead;
use std::path::Path;
use std::time::Instant;

use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};

use super::split::{split, user_histories, Split, SplitKind, SplitUser};
use super::{train, Progress, TrainOptions};
use crate::error::{Error, Result};
use crate::ingest::{CleaningReport, Interaction};
use crate::model::ModelData;
use crate::recommend::{popular_fallback, recommend_by_embedding, serve, CandidateLimits, Scorer, FEATURE_COUNT, FEATURE_NAMES};

/// A ranked list for one test user.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserList {
    pub item_ids: Vec<String>,
    /// True when the list came from the popular fallback.
    pub fallback: bool,
}

/// Anything that ranks items for a test user.
pub trait Recommender: Sync {
    /// Returns up to `limit` items for the user, best first.
    fn recommend(&self, user: &SplitUser, limit: usize) -> Result<UserList>;
}

/// The served path: candidates, features and a scorer, with the popular fallback.
pub struct ScorerRecommender<'a> {
    pub data: &'a ModelData,
    pub scorer: &'a (dyn Scorer + Sync),
    pub limits: CandidateLimits,
}

impl Recommender for ScorerRecommender<'_> {
    fn recommend(&self, user: &SplitUser, limit: usize) -> Result<UserList> {
        let served = serve(self.data, &user.history, self.scorer, self.limits, limit)?;
        Ok(UserList {
            item_ids: served.recommendations.into_iter().map(|recommendation| recommendation.item_id).collect(),
            fallback: served.fallback.is_some(),
        })
    }
}

/// Scores candidates by the summed neighbour scores alone, popularity breaking ties.
pub struct NeighbourScorer;

/// Position of `name` in [`FEATURE_NAMES`].
fn feature_index(name: &str) -> usize {
    FEATURE_NAMES.iter().position(|feature| *feature == name).expect("feature name is in the contract")
}

impl Scorer for NeighbourScorer {
    fn score(&self, features: &[f32], rows: usize) -> Result<Vec<f32>> {
        let sum = feature_index("neighbour_score_sum");
        let popularity = feature_index("popularity_log");
        Ok(features.chunks_exact(FEATURE_COUNT).take(rows).map(|row| row[sum] + row[popularity] * 1e-3).collect())
    }
}

/// Item-to-item neighbours alone, through the served candidate path.
pub struct NeighbourRecommender<'a> {
    pub data: &'a ModelData,
    pub limits: CandidateLimits,
}

impl Recommender for NeighbourRecommender<'_> {
    fn recommend(&self, user: &SplitUser, limit: usize) -> Result<UserList> {
        ScorerRecommender { data: self.data, scorer: &NeighbourScorer, limits: self.limits }.recommend(user, limit)
    }
}

/// Embedding scores alone: the unseen items nearest to the folded-in user vector.
pub struct EmbeddingRecommender<'a> {
    pub data: &'a ModelData,
}

impl Recommender for EmbeddingRecommender<'_> {
    fn recommend(&self, user: &SplitUser, limit: usize) -> Result<UserList> {
        let ranked = recommend_by_embedding(self.data, &user.history, limit);
        if ranked.is_empty() {
            let popular = popular_fallback(self.data, &user.history, limit);
            return Ok(UserList { item_ids: popular.into_iter().map(|r| r.item_id).collect(), fallback: true });
        }
        Ok(UserList { item_ids: ranked.into_iter().map(|r| r.item_id).collect(), fallback: false })
    }
}

/// The popular items the user has not bought, the served fallback.
pub struct PopularityRecommender<'a> {
    pub data: &'a ModelData,
}

impl Recommender for PopularityRecommender<'_> {
    fn recommend(&self, user: &SplitUser, limit: usize) -> Result<UserList> {
        let popular = popular_fallback(self.data, &user.history, limit);
        Ok(UserList { item_ids: popular.into_iter().map(|r| r.item_id).collect(), fallback: true })
    }
}

/// Lists produced elsewhere, read from JSON Lines, by user id.
pub struct ExternalLists {
    pub lists: FxHashMap<String, Vec<String>>,
}

impl Recommender for ExternalLists {
    fn recommend(&self, user: &SplitUser, limit: usize) -> Result<UserList> {
        let items = self.lists.get(&user.user_id).map(|items| items.iter().take(limit).cloned().collect()).unwrap_or_default();
        Ok(UserList { item_ids: items, fallback: false })
    }
}

/// One line of an external list file.
#[derive(Debug, Deserialize)]
struct ExternalLine {
    user_id: String,
    item_ids: Vec<String>,
}

impl ExternalLists {
    /// Reads `{"user_id": "...", "item_ids": ["...", ...]}` lines.
    pub fn read(path: &Path) -> Result<Self> {
        let invalid = |reason: String| Error::Evaluation(format!("{}: {reason}", path.display()));
        let file = std::fs::File::open(path).map_err(|error| invalid(format!("cannot open: {error}")))?;
        let mut lists = FxHashMap::default();
        for (number, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|error| invalid(format!("cannot read line {}: {error}", number + 1)))?;
            if line.trim().is_empty() {
                continue;
            }
            let parsed: ExternalLine =
                serde_json::from_str(&line).map_err(|error| invalid(format!("line {} is not a list line: {error}", number + 1)))?;
            let mut seen = FxHashSet::default();
            if let Some(repeated) = parsed.item_ids.iter().find(|item_id| !seen.insert(item_id.as_str())) {
                return Err(invalid(format!("line {}: user {} lists item {repeated} twice", number + 1, parsed.user_id)));
            }
            if lists.contains_key(&parsed.user_id) {
                return Err(invalid(format!("line {}: user {} has a list already", number + 1, parsed.user_id)));
            }
            lists.insert(parsed.user_id, parsed.item_ids);
        }
        Ok(ExternalLists { lists })
    }
}

/// Ranks `limit` items for every user, in parallel.
pub fn evaluate_lists(recommender: &dyn Recommender, users: &[SplitUser], limit: usize) -> Result<Vec<UserList>> {
    users.par_iter().map(|user| recommender.recommend(user, limit)).collect()
}

/// Top-k metrics averaged over test users, with binary relevance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub k: usize,
    pub users: usize,
    /// Share of users with at least one relevant item in the top k.
    pub hit_rate: f64,
    pub precision: f64,
    pub recall: f64,
    pub ndcg: f64,
    /// Mean average precision, each user's sum normalised by `min(relevant, k)`.
    pub map: f64,
    /// Distinct items recommended to anyone, as a share of the catalogue.
    pub coverage: f64,
    /// Share of users served by the popular fallback.
    pub fallback_share: f64,
}

/// Computes the metrics of the lists at cut-off `k`; `lists[i]` belongs to `users[i]`.
pub fn metrics_at(lists: &[UserList], users: &[SplitUser], k: usize, catalogue_size: usize) -> Metrics {
    let mut sums = Metrics { k, users: users.len(), ..Metrics::default() };
    let mut recommended: FxHashSet<&str> = FxHashSet::default();
    for (list, user) in lists.iter().zip(users) {
        let relevant = user.future.len();
        if relevant == 0 {
            continue;
        }
        let mut hits = 0usize;
        let mut dcg = 0.0;
        let mut precision_sum = 0.0;
        for (rank, item_id) in list.item_ids.iter().take(k).enumerate() {
            recommended.insert(item_id.as_str());
            if user.future.contains(item_id) {
                hits += 1;
                dcg += 1.0 / (rank as f64 + 2.0).log2();
                precision_sum += hits as f64 / (rank as f64 + 1.0);
            }
        }
        let ideal: f64 = (0..relevant.min(k)).map(|rank| 1.0 / (rank as f64 + 2.0).log2()).sum();
        sums.hit_rate += if hits > 0 { 1.0 } else { 0.0 };
        sums.precision += hits as f64 / k as f64;
        sums.recall += hits as f64 / relevant as f64;
        sums.ndcg += dcg / ideal;
        sums.map += precision_sum / relevant.min(k) as f64;
        sums.fallback_share += if list.fallback { 1.0 } else { 0.0 };
    }
    let count = users.len().max(1) as f64;
    Metrics {
        hit_rate: sums.hit_rate / count,
        precision: sums.precision / count,
        recall: sums.recall / count,
        ndcg: sums.ndcg / count,
        map: sums.map / count,
        coverage: recommended.len() as f64 / catalogue_size.max(1) as f64,
        fallback_share: sums.fallback_share / count,
        ..sums
    }
}

/// Settings of an evaluation run.
#[derive(Debug, Clone)]
pub struct EvaluationOptions {
    pub split: SplitKind,
    /// Cut-offs of the metrics table.
    pub cutoffs: Vec<usize>,
    /// NDCG is reported for every k from 1 to this.
    pub k_max: usize,
    pub train: TrainOptions,
    /// Lists from other libraries: name, JSON Lines file and, if present, its timing file.
    pub peers: Vec<(String, std::path::PathBuf)>,
}

/// Metrics of one method.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MethodReport {
    pub name: String,
    pub metrics: Vec<Metrics>,
    /// NDCG at k = 1..=k_max.
    pub ndcg_at: Vec<f64>,
    /// Seconds the method needed to train, where known.
    pub training_seconds: Option<f64>,
    pub note: String,
}

/// Everything an evaluation run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvaluationReport {
    pub split: String,
    pub description: String,
    pub train_interactions: usize,
    pub test_users: usize,
    pub catalogue_items: usize,
    pub k_max: usize,
    pub factors: usize,
    pub methods: Vec<MethodReport>,
    /// Seconds per training step of the full pipeline.
    pub training_steps: Vec<(String, f64)>,
}

/// One method under evaluation.
struct Method<'a> {
    name: String,
    recommender: Box<dyn Recommender + 'a>,
    training_seconds: Option<f64>,
    note: String,
}

impl<'a> Method<'a> {
    fn new(name: &str, recommender: Box<dyn Recommender + 'a>, training_seconds: Option<f64>, note: &str) -> Self {
        Method { name: name.to_string(), recommender, training_seconds, note: note.to_string() }
    }
}

/// Names of the methods that every evaluation measures.
const BUILT_IN_METHODS: [&str; 4] = ["popularity", "item neighbours", "embeddings (ALS)", "ranked pipeline"];

/// Makes the split and rejects one that leaves nothing to test, saying why.
pub fn checked_split(interactions: &[Interaction], kind: SplitKind) -> Result<Split> {
    if interactions.is_empty() {
        return Err(Error::Evaluation("no interactions left after cleaning: check the input file".into()));
    }
    if let SplitKind::Time { test_days } = kind {
        let first = interactions.iter().map(|row| row.timestamp).min().unwrap_or(0);
        let last = interactions.iter().map(|row| row.timestamp).max().unwrap_or(0);
        let span_days = (last - first) / 86_400;
        if i64::from(test_days) >= span_days {
            return Err(Error::Evaluation(format!(
                "--test-days {test_days} is not shorter than the data's span of {span_days} days: choose fewer test days"
            )));
        }
    }
    let split = split(interactions, kind);
    if split.users.is_empty() {
        let reason = match kind {
            SplitKind::Time { .. } => "no user who bought before the cut bought a new item after it",
            SplitKind::Random { .. } => "no user has two or more distinct items",
        };
        return Err(Error::Evaluation(format!("{} left no test user: {reason}", split.description)));
    }
    Ok(split)
}

/// Reads the peers' lists and checks that they name other methods and cover the test users.
fn read_peers(peers: &[(String, std::path::PathBuf)], users: &[SplitUser]) -> Result<Vec<(String, std::path::PathBuf, ExternalLists)>> {
    let mut read = Vec::new();
    for (name, path) in peers {
        if BUILT_IN_METHODS.contains(&name.as_str()) || read.iter().any(|(other, _, _): &(String, _, _)| other == name) {
            return Err(Error::Evaluation(format!("peer name {name:?} is taken: give each peer its own name")));
        }
        let lists = ExternalLists::read(path)?;
        let covered = users.iter().filter(|user| lists.lists.contains_key(&user.user_id)).count();
        if covered == 0 {
            let example = users.first().map_or("", |user| user.user_id.as_str());
            return Err(Error::Evaluation(format!(
                "{} has no list for any of the {} test users: check that its user ids match the data's, such as {example}",
                path.display(),
                users.len()
            )));
        }
        if covered < users.len() {
            tracing::warn!(peer = %name, covered, test_users = users.len(), "the peer has no list for some test users, who count as misses");
        }
        read.push((name.clone(), path.clone(), lists));
    }
    Ok(read)
}

/// Reads the `fit_seconds` of a peer's timing file beside its list file, if any.
fn peer_training_seconds(lists: &Path) -> Option<f64> {
    let timing = lists.with_extension("json");
    let text = std::fs::read_to_string(timing).ok()?;
    serde_json::from_str::<serde_json::Value>(&text).ok()?["fit_seconds"].as_f64()
}

/// Trains the whole pipeline on the training part of the split and measures every
/// method on the test users. The ranked pipeline runs the exported ONNX ranker
/// through ONNX Runtime, as the inference function does.
pub fn run_evaluation(
    interactions: &[Interaction],
    cleaning: &CleaningReport,
    options: &EvaluationOptions,
    progress: &mut dyn Progress,
) -> Result<EvaluationReport> {
    let split = checked_split(interactions, options.split)?;
    let peers = read_peers(&options.peers, &split.users)?;
    let started = Instant::now();
    let trained = train(&split.train, cleaning, &options.train, progress)?;
    let pipeline_seconds = started.elapsed().as_secs_f64();
    let embedding_seconds = trained.step_times.iter().find(|(step, _)| step == "embeddings").map(|(_, time)| time.as_secs_f64());
    let data = trained.model_data()?;

    let onnx = super::onnx::export_mlp(&trained.ranker, "evaluation")?;
    let ranker = crate::ranker::Ranker::load(&onnx, &super::onnx::contract(serde_json::Value::Null))?;

    let limits = options.train.candidate_limits;
    let k_max = options.k_max.max(options.cutoffs.iter().copied().max().unwrap_or(1));
    let mut methods = vec![
        Method::new("popularity", Box::new(PopularityRecommender { data: &data }), None, "recent best sellers the user has not bought"),
        Method::new("item neighbours", Box::new(NeighbourRecommender { data: &data, limits }), None, "summed co-purchase neighbour scores"),
        Method::new(
            "embeddings (ALS)",
            Box::new(EmbeddingRecommender { data: &data }),
            embedding_seconds,
            "this project's ALS, folded-in user vector",
        ),
        Method::new(
            "ranked pipeline",
            Box::new(ScorerRecommender { data: &data, scorer: &ranker, limits }),
            Some(pipeline_seconds),
            "served path: all candidates, ONNX ranker in ONNX Runtime",
        ),
    ];
    for (name, path, lists) in peers {
        let note = format!("lists read from {}", path.display());
        methods.push(Method::new(&name, Box::new(lists), peer_training_seconds(&path), &note));
    }

    let mut reports = Vec::new();
    for Method { name, recommender, training_seconds, note } in methods {
        progress.started(&name);
        let step_started = Instant::now();
        let lists = evaluate_lists(recommender.as_ref(), &split.users, k_max)?;
        let metrics: Vec<Metrics> = options.cutoffs.iter().map(|&k| metrics_at(&lists, &split.users, k, data.catalogue().len())).collect();
        let ndcg_at: Vec<f64> = (1..=k_max).map(|k| metrics_at(&lists, &split.users, k, data.catalogue().len()).ndcg).collect();
        let summary = metrics.iter().map(|m| format!("NDCG@{} {:.4}", m.k, m.ndcg)).collect::<Vec<_>>().join(", ");
        progress.finished(&name, step_started.elapsed(), &summary);
        reports.push(MethodReport { name, metrics, ndcg_at, training_seconds, note });
    }

    Ok(EvaluationReport {
        split: match options.split {
            SplitKind::Time { .. } => "time".into(),
            SplitKind::Random { .. } => "random".into(),
        },
        description: split.description.clone(),
        train_interactions: split.train.len(),
        test_users: split.users.len(),
        catalogue_items: data.catalogue().len(),
        k_max,
        factors: options.train.als.settings.factors,
        methods: reports,
        training_steps: trained.step_times.iter().map(|(step, time)| (step.clone(), time.as_secs_f64())).collect(),
    })
}

impl EvaluationReport {
    /// Returns the metrics of a method at cut-off `k`.
    pub fn metrics(&self, method: &str, k: usize) -> Option<&Metrics> {
        self.methods.iter().find(|report| report.name == method)?.metrics.iter().find(|metrics| metrics.k == k)
    }

    /// Renders one Markdown table per cut-off.
    pub fn to_markdown(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "{}; {} training interactions, {} test users, {} catalogue items, {} factors.\n",
            self.description, self.train_interactions, self.test_users, self.catalogue_items, self.factors
        );
        let cutoffs: Vec<usize> = self.methods.first().map(|method| method.metrics.iter().map(|m| m.k).collect()).unwrap_or_default();
        for k in cutoffs {
            let _ = writeln!(text, "| method (k = {k}) | HR | precision | recall | NDCG | MAP | coverage | fallback | training s |");
            let _ = writeln!(text, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
            for method in &self.methods {
                let Some(m) = method.metrics.iter().find(|m| m.k == k) else { continue };
                let seconds = method.training_seconds.map_or_else(|| "-".to_string(), |seconds| format!("{seconds:.1}"));
                let _ = writeln!(
                    text,
                    "| {} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {:.3} | {:.3} | {seconds} |",
                    method.name, m.hit_rate, m.precision, m.recall, m.ndcg, m.map, m.coverage, m.fallback_share
                );
            }
            text.push('\n');
        }
        text
    }
}

/// Settings written beside an exported split, for a peer library to train with.
#[derive(Debug, Clone, Serialize)]
struct PeerParams {
    factors: usize,
    regularization: f32,
    alpha: f32,
    iterations: usize,
    seed: u64,
    top_n: usize,
}

/// Writes the training part and the test users of a split as CSV, with the
/// factorisation settings, so another library trains on exactly the same data:
/// `train.csv` (`user_id,item_id,value`, value = orders), `test_users.csv` and `params.json`.
pub fn export_split(
    interactions: &[Interaction],
    kind: SplitKind,
    options: &TrainOptions,
    top_n: usize,
    directory: &Path,
) -> Result<Split> {
    let split = checked_split(interactions, kind)?;
    let write_error =
        |file: &str, error: &dyn std::fmt::Display| Error::Evaluation(format!("cannot write {}: {error}", directory.join(file).display()));
    std::fs::create_dir_all(directory).map_err(|error| write_error("", &error))?;

    let histories = user_histories(split.train.iter());
    let mut user_ids: Vec<&String> = histories.keys().collect();
    user_ids.sort_unstable();
    let mut train_csv = csv::Writer::from_path(directory.join("train.csv")).map_err(|error| write_error("train.csv", &error))?;
    let mut write_train = || -> csv::Result<()> {
        train_csv.write_record(["user_id", "item_id", "value"])?;
        for user_id in &user_ids {
            let mut items: Vec<(&String, &f32)> = histories[*user_id].purchased.iter().collect();
            items.sort_unstable_by(|a, b| a.0.cmp(b.0));
            for (item_id, orders) in items {
                train_csv.write_record([user_id.as_str(), item_id.as_str(), &orders.to_string()])?;
            }
        }
        train_csv.flush()?;
        Ok(())
    };
    write_train().map_err(|error| write_error("train.csv", &error))?;

    let mut test_csv = csv::Writer::from_path(directory.join("test_users.csv")).map_err(|error| write_error("test_users.csv", &error))?;
    let mut write_test = || -> csv::Result<()> {
        test_csv.write_record(["user_id"])?;
        for user in &split.users {
            test_csv.write_record([user.user_id.as_str()])?;
        }
        test_csv.flush()?;
        Ok(())
    };
    write_test().map_err(|error| write_error("test_users.csv", &error))?;

    let als = options.als;
    let params = PeerParams {
        factors: als.settings.factors,
        regularization: als.settings.regularization,
        alpha: als.settings.alpha,
        iterations: als.iterations,
        seed: als.seed,
        top_n,
    };
    let params = serde_json::to_vec_pretty(&params).expect("params serialise");
    std::fs::write(directory.join("params.json"), params).map_err(|error| write_error("params.json", &error))?;
    Ok(split)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(future: &[&str]) -> SplitUser {
        SplitUser { user_id: "u".into(), history: Default::default(), future: future.iter().map(|item| item.to_string()).collect() }
    }

    fn list(items: &[&str]) -> UserList {
        UserList { item_ids: items.iter().map(|item| item.to_string()).collect(), fallback: false }
    }

    #[test]
    fn metrics_match_hand_computed_case() {
        // Relevant B and D; the list hits at ranks 2 and 4.
        let users = [user(&["B", "D"])];
        let lists = [list(&["A", "B", "C", "D"])];
        let m = metrics_at(&lists, &users, 4, 10);
        let dcg = 1.0 / 3f64.log2() + 1.0 / 5f64.log2();
        let ideal = 1.0 + 1.0 / 3f64.log2();
        assert_eq!(m.hit_rate, 1.0);
        assert!((m.precision - 0.5).abs() < 1e-12);
        assert!((m.recall - 1.0).abs() < 1e-12);
        assert!((m.ndcg - dcg / ideal).abs() < 1e-12);
        assert!((m.map - (0.5 + 0.5) / 2.0).abs() < 1e-12);
        assert!((m.coverage - 0.4).abs() < 1e-12);
    }

    #[test]
    fn metrics_cut_at_k() {
        let users = [user(&["D"])];
        let lists = [list(&["A", "B", "C", "D"])];
        let m = metrics_at(&lists, &users, 3, 10);
        assert_eq!(m.hit_rate, 0.0);
        assert_eq!(m.ndcg, 0.0);
        assert_eq!(m.map, 0.0);
        assert!((m.coverage - 0.3).abs() < 1e-12);
    }

    #[test]
    fn metrics_average_over_users() {
        let users = [user(&["A"]), user(&["Z"])];
        let lists = [list(&["A"]), UserList { item_ids: vec!["B".into()], fallback: true }];
        let m = metrics_at(&lists, &users, 1, 4);
        assert_eq!(m.users, 2);
        assert!((m.hit_rate - 0.5).abs() < 1e-12);
        assert!((m.ndcg - 0.5).abs() < 1e-12);
        assert!((m.fallback_share - 0.5).abs() < 1e-12);
        assert!((m.coverage - 0.5).abs() < 1e-12);
    }

    #[test]
    fn map_normalises_by_relevant_within_k() {
        // Three relevant items, k = 2, hit at rank 1 only: AP = 1 / min(3, 2).
        let users = [user(&["A", "X", "Y"])];
        let lists = [list(&["A", "B"])];
        let m = metrics_at(&lists, &users, 2, 10);
        assert!((m.map - 0.5).abs() < 1e-12);
        assert!((m.recall - 1.0 / 3.0).abs() < 1e-12);
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let directory = std::env::temp_dir().join(format!("shoprec-evaluate-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&directory);
        std::fs::create_dir_all(&directory).unwrap();
        directory
    }

    fn interaction(user: &str, item: &str, day: i64) -> Interaction {
        Interaction {
            user_id: user.into(),
            item_id: item.into(),
            timestamp: day * 86_400,
            quantity: 1.0,
            unit_price: None,
            title: None,
            basket_id: None,
        }
    }

    #[test]
    fn external_lists_reject_repeated_item() {
        let path = temp_dir("repeated").join("peer.jsonl");
        std::fs::write(&path, "{\"user_id\": \"u1\", \"item_ids\": [\"A\", \"B\", \"A\"]}\n").unwrap();
        let error = ExternalLists::read(&path).err().unwrap().to_string();
        assert!(error.contains("line 1"), "{error}");
        assert!(error.contains("item A twice"), "{error}");
    }

    #[test]
    fn external_lists_reject_second_list_for_user() {
        let path = temp_dir("second").join("peer.jsonl");
        std::fs::write(&path, "{\"user_id\": \"u1\", \"item_ids\": [\"A\"]}\n{\"user_id\": \"u1\", \"item_ids\": [\"B\"]}\n").unwrap();
        let error = ExternalLists::read(&path).err().unwrap().to_string();
        assert!(error.contains("line 2"), "{error}");
    }

    #[test]
    fn peer_without_matching_users_is_rejected() {
        let path = temp_dir("unmatched").join("peer.jsonl");
        std::fs::write(&path, "{\"user_id\": \"17850.0\", \"item_ids\": [\"A\"]}\n").unwrap();
        let users = [SplitUser { user_id: "17850".into(), ..user(&["A"]) }];
        let error = read_peers(&[("peer".into(), path)], &users).err().unwrap().to_string();
        assert!(error.contains("17850"), "{error}");
    }

    #[test]
    fn peer_with_built_in_name_is_rejected() {
        let path = temp_dir("name").join("peer.jsonl");
        std::fs::write(&path, "").unwrap();
        let error = read_peers(&[("popularity".into(), path)], &[]).err().unwrap().to_string();
        assert!(error.contains("taken"), "{error}");
    }

    #[test]
    fn time_split_longer_than_data_is_rejected() {
        let rows = [interaction("u1", "A", 0), interaction("u1", "B", 10)];
        let error = checked_split(&rows, SplitKind::Time { test_days: 28 }).err().unwrap().to_string();
        assert!(error.contains("--test-days 28"), "{error}");
        assert!(error.contains("10 days"), "{error}");
    }

    #[test]
    fn empty_data_is_rejected() {
        let error = checked_split(&[], SplitKind::Random { test_share: 0.2, seed: 1 }).err().unwrap().to_string();
        assert!(error.contains("no interactions"), "{error}");
    }

    #[test]
    fn exported_csv_quotes_ids() {
        let directory = temp_dir("quotes");
        let rows = [
            interaction("u,1", "I7,big \"mug\"", 0),
            interaction("u,1", "B", 1),
            interaction("u,1", "C", 2),
            interaction("u2", "B", 1),
            interaction("u2", "C", 3),
        ];
        export_split(&rows, SplitKind::Random { test_share: 0.5, seed: 3 }, &TrainOptions::default(), 5, &directory).unwrap();
        let mut reader = csv::Reader::from_path(directory.join("train.csv")).unwrap();
        let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert!(records.iter().all(|record| record.len() == 3));
        assert!(records.iter().any(|record| &record[0] == "u,1"), "{records:?}");
    }
}

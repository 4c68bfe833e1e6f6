//! The learned ranker: a logistic regression over the candidate features,
//! trained on a time-ordered split so that it never learns from interactions after the cut, and its
//! evaluation on held-out users.

use rayon::prelude::*;
use rustc_hash::FxHashSet;
use serde::Serialize;

use crate::error::Result;
use crate::model::ModelData;
use crate::recommend::{build_features, generate_candidates, recommend, CandidateLimits, Scorer, UserHistory, FEATURE_COUNT};

/// Logistic regression on standardised features.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogisticModel {
    pub mean: [f32; FEATURE_COUNT],
    pub scale: [f32; FEATURE_COUNT],
    pub weights: [f32; FEATURE_COUNT],
    pub bias: f32,
}

impl LogisticModel {
    fn logit(&self, row: &[f32]) -> f32 {
        let mut logit = self.bias;
        for (feature, value) in row.iter().enumerate().take(FEATURE_COUNT) {
            logit += (value - self.mean[feature]) / self.scale[feature] * self.weights[feature];
        }
        logit
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl Scorer for LogisticModel {
    fn score(&self, features: &[f32], rows: usize) -> Result<Vec<f32>> {
        Ok(features.chunks_exact(FEATURE_COUNT).take(rows).map(|row| sigmoid(self.logit(row))).collect())
    }
}

/// Settings of the gradient descent.
#[derive(Debug, Clone, Copy)]
pub struct FitOptions {
    pub iterations: usize,
    pub learning_rate: f64,
    /// L2 penalty on the weights, not the bias.
    pub l2: f64,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions { iterations: 300, learning_rate: 1.0, l2: 1e-4 }
    }
}

/// Fits a logistic regression by full-batch gradient descent on the mean log loss.
///
/// `features` is row-major `[labels.len(), FEATURE_COUNT]`; labels are 0 or 1.
/// Features are standardised first, so one learning rate suits all of them.
pub fn fit_logistic(features: &[f32], labels: &[f32], options: FitOptions) -> LogisticModel {
    let rows = labels.len();
    let mut mean = [0f64; FEATURE_COUNT];
    let mut square = [0f64; FEATURE_COUNT];
    for row in features.chunks_exact(FEATURE_COUNT) {
        for feature in 0..FEATURE_COUNT {
            mean[feature] += f64::from(row[feature]);
            square[feature] += f64::from(row[feature]).powi(2);
        }
    }
    let mut model = LogisticModel { mean: [0.0; FEATURE_COUNT], scale: [1.0; FEATURE_COUNT], weights: [0.0; FEATURE_COUNT], bias: 0.0 };
    if rows == 0 {
        return model;
    }
    for feature in 0..FEATURE_COUNT {
        let average = mean[feature] / rows as f64;
        let variance = (square[feature] / rows as f64 - average * average).max(0.0);
        model.mean[feature] = average as f32;
        // A constant feature keeps scale 1 so it adds nothing instead of dividing by zero.
        model.scale[feature] = if variance > 1e-12 { variance.sqrt() as f32 } else { 1.0 };
    }

    let mut weights = [0f64; FEATURE_COUNT];
    // Starting from the log-odds of the label share saves the iterations that would learn it.
    let positive_share = (labels.iter().map(|&label| f64::from(label)).sum::<f64>() / rows as f64).clamp(1e-6, 1.0 - 1e-6);
    let mut bias = (positive_share / (1.0 - positive_share)).ln();

    for _ in 0..options.iterations {
        model.weights = weights.map(|weight| weight as f32);
        model.bias = bias as f32;
        let (gradient, bias_gradient) = features
            .par_chunks_exact(FEATURE_COUNT)
            .zip(labels.par_iter())
            .fold(
                || ([0f64; FEATURE_COUNT], 0f64),
                |(mut gradient, mut bias_gradient), (row, &label)| {
                    let error = f64::from(sigmoid(model.logit(row)) - label);
                    for feature in 0..FEATURE_COUNT {
                        let standardised = (row[feature] - model.mean[feature]) / model.scale[feature];
                        gradient[feature] += error * f64::from(standardised);
                    }
                    bias_gradient += error;
                    (gradient, bias_gradient)
                },
            )
            .reduce(
                || ([0f64; FEATURE_COUNT], 0f64),
                |(mut a, a_bias), (b, b_bias)| {
                    for feature in 0..FEATURE_COUNT {
                        a[feature] += b[feature];
                    }
                    (a, a_bias + b_bias)
                },
            );
        for feature in 0..FEATURE_COUNT {
            let step = gradient[feature] / rows as f64 + options.l2 * weights[feature];
            weights[feature] -= options.learning_rate * step;
        }
        bias -= options.learning_rate * bias_gradient / rows as f64;
    }
    model.weights = weights.map(|weight| weight as f32);
    model.bias = bias as f32;
    model
}

/// Returns the mean log loss of the model on the rows.
pub fn log_loss(model: &LogisticModel, features: &[f32], labels: &[f32]) -> f64 {
    let total: f64 = features
        .chunks_exact(FEATURE_COUNT)
        .zip(labels)
        .map(|(row, &label)| {
            let p = f64::from(sigmoid(model.logit(row))).clamp(1e-7, 1.0 - 1e-7);
            -(f64::from(label) * p.ln() + (1.0 - f64::from(label)) * (1.0 - p).ln())
        })
        .sum();
    total / labels.len().max(1) as f64
}

/// A user of the time split: history before the cut, new purchases after it.
#[derive(Debug, Clone)]
pub struct SplitUser {
    pub user_id: String,
    pub history: UserHistory,
    /// Items bought in the test window that were not in the history.
    pub future: FxHashSet<String>,
}

/// Builds the training rows: features of every candidate of every user, labelled 1
/// when the user bought the candidate in the test window.
pub fn training_rows(data: &ModelData, users: &[SplitUser], limits: CandidateLimits) -> (Vec<f32>, Vec<f32>) {
    let per_user: Vec<(Vec<f32>, Vec<f32>)> = users
        .par_iter()
        .map(|user| {
            let candidates = generate_candidates(data, &user.history, limits);
            let labels = candidates.iter().map(|candidate| if user.future.contains(&candidate.item_id) { 1.0 } else { 0.0 }).collect();
            (build_features(data, &user.history, &candidates), labels)
        })
        .collect();
    let mut features = Vec::new();
    let mut labels = Vec::new();
    for (user_features, user_labels) in per_user {
        features.extend(user_features);
        labels.extend(user_labels);
    }
    (features, labels)
}

/// Hit rate and NDCG of one ranker at a cut-off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct RankingMetrics {
    pub users: usize,
    pub hit_rate: f64,
    pub ndcg: f64,
}

/// Scores candidates by the sum of neighbour similarities alone.
pub struct NeighbourScorer;

impl Scorer for NeighbourScorer {
    fn score(&self, features: &[f32], rows: usize) -> Result<Vec<f32>> {
        Ok(features.chunks_exact(FEATURE_COUNT).take(rows).map(|row| row[0] + row[3] * 1e-3).collect())
    }
}

/// Scores candidates by all-time popularity alone.
pub struct PopularityScorer;

impl Scorer for PopularityScorer {
    fn score(&self, features: &[f32], rows: usize) -> Result<Vec<f32>> {
        Ok(features.chunks_exact(FEATURE_COUNT).take(rows).map(|row| row[3]).collect())
    }
}

/// Evaluates a scorer through [`recommend`], the serving path, with binary relevance.
pub fn evaluate(
    data: &ModelData,
    users: &[SplitUser],
    scorer: &(dyn Scorer + Sync),
    limits: CandidateLimits,
    k: usize,
) -> Result<RankingMetrics> {
    let per_user: Vec<(f64, f64)> = users
        .par_iter()
        .map(|user| {
            let ranked = recommend(data, &user.history, scorer, limits, k)?;
            let mut dcg = 0.0;
            for (rank, recommendation) in ranked.iter().enumerate() {
                if user.future.contains(&recommendation.item_id) {
                    dcg += 1.0 / (rank as f64 + 2.0).log2();
                }
            }
            let ideal: f64 = (0..user.future.len().min(k)).map(|rank| 1.0 / (rank as f64 + 2.0).log2()).sum();
            let hit = if dcg > 0.0 { 1.0 } else { 0.0 };
            Ok((hit, if ideal > 0.0 { dcg / ideal } else { 0.0 }))
        })
        .collect::<Result<_>>()?;
    let count = per_user.len().max(1) as f64;
    Ok(RankingMetrics {
        users: per_user.len(),
        hit_rate: per_user.iter().map(|(hit, _)| hit).sum::<f64>() / count,
        ndcg: per_user.iter().map(|(_, ndcg)| ndcg).sum::<f64>() / count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_separates_by_informative_feature() {
        let mut features = Vec::new();
        let mut labels = Vec::new();
        for i in 0..400 {
            let label = (i % 2) as f32;
            let mut row = [0f32; FEATURE_COUNT];
            row[0] = label * 2.0 + (i % 7) as f32 * 0.1;
            row[3] = (i % 5) as f32;
            features.extend_from_slice(&row);
            labels.push(label);
        }
        let model = fit_logistic(&features, &labels, FitOptions::default());
        assert!(model.weights[0] > 1.0);
        assert!(model.weights[3].abs() < 0.5);
        assert!(log_loss(&model, &features, &labels) < 0.1);
    }

    #[test]
    fn fit_loss_decreases_with_iterations() {
        let mut features = Vec::new();
        let mut labels = Vec::new();
        for i in 0..200 {
            let mut row = [0f32; FEATURE_COUNT];
            row[1] = (i % 10) as f32;
            features.extend_from_slice(&row);
            labels.push(if i % 10 > 6 { 1.0 } else { 0.0 });
        }
        let short = fit_logistic(&features, &labels, FitOptions { iterations: 5, ..FitOptions::default() });
        let long = fit_logistic(&features, &labels, FitOptions::default());
        assert!(log_loss(&long, &features, &labels) < log_loss(&short, &features, &labels));
    }

    #[test]
    fn constant_feature_keeps_unit_scale() {
        let features = vec![1.0f32; FEATURE_COUNT * 4];
        let labels = vec![0.0, 1.0, 0.0, 1.0];
        let model = fit_logistic(&features, &labels, FitOptions::default());
        assert_eq!(model.scale, [1.0; FEATURE_COUNT]);
        assert!(model.weights.iter().all(|weight| weight.is_finite()));
    }
}

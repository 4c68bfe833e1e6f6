//! The learned ranker: a small neural network over the candidate features,
//! trained on a split that keeps the labels out of the model it ranks with, and
//! its evaluation on held-out users.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rayon::prelude::*;
use serde::Serialize;

use super::split::SplitUser;
use crate::error::Result;
use crate::model::ModelData;
use crate::recommend::{build_features, generate_candidates, CandidateLimits, Scorer, FEATURE_COUNT};

/// A network with one hidden layer of rectified linear units over standardised
/// features and a sigmoid output:
/// `sigmoid(relu(((x - mean) / scale) · W1 + b1) · w2 + b2)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MlpModel {
    pub mean: [f32; FEATURE_COUNT],
    pub scale: [f32; FEATURE_COUNT],
    pub hidden: usize,
    /// Row-major `[FEATURE_COUNT, hidden]`.
    pub w1: Vec<f32>,
    pub b1: Vec<f32>,
    /// `[hidden]`.
    pub w2: Vec<f32>,
    pub b2: f32,
}

impl MlpModel {
    /// Returns the standardised row and the hidden activations of one row.
    fn forward(&self, row: &[f32], input: &mut [f32; FEATURE_COUNT], hidden: &mut [f32]) -> f32 {
        for feature in 0..FEATURE_COUNT {
            input[feature] = (row[feature] - self.mean[feature]) / self.scale[feature];
        }
        hidden.copy_from_slice(&self.b1);
        for (feature, &value) in input.iter().enumerate() {
            let weights = &self.w1[feature * self.hidden..(feature + 1) * self.hidden];
            for (cell, weight) in hidden.iter_mut().zip(weights) {
                *cell += value * weight;
            }
        }
        let mut logit = self.b2;
        for (cell, weight) in hidden.iter_mut().zip(&self.w2) {
            *cell = cell.max(0.0);
            logit += *cell * weight;
        }
        logit
    }

    fn logit(&self, row: &[f32]) -> f32 {
        let mut input = [0f32; FEATURE_COUNT];
        let mut hidden = vec![0f32; self.hidden];
        self.forward(row, &mut input, &mut hidden)
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl Scorer for MlpModel {
    fn score(&self, features: &[f32], rows: usize) -> Result<Vec<f32>> {
        Ok(features.chunks_exact(FEATURE_COUNT).take(rows).map(|row| sigmoid(self.logit(row))).collect())
    }
}

/// Settings of the network and its training.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct FitOptions {
    pub hidden: usize,
    pub epochs: usize,
    pub batch_size: usize,
    /// Adam step size.
    pub learning_rate: f32,
    /// L2 penalty on the weights, not the biases.
    pub l2: f32,
    /// Share of the negative rows kept; every positive row is kept. Dropping
    /// negatives at random shifts the output bias but not the ranking.
    pub negative_share: f64,
    pub seed: u64,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions { hidden: 32, epochs: 12, batch_size: 256, learning_rate: 0.003, l2: 1e-5, negative_share: 0.3, seed: 42 }
    }
}

/// Adam moment estimates of one parameter vector.
struct Adam {
    first: Vec<f32>,
    second: Vec<f32>,
}

impl Adam {
    fn new(len: usize) -> Self {
        Adam { first: vec![0.0; len], second: vec![0.0; len] }
    }

    fn step(&mut self, parameters: &mut [f32], gradient: &[f32], learning_rate: f32, step: i32) {
        const BETA1: f32 = 0.9;
        const BETA2: f32 = 0.999;
        let first_correction = 1.0 - BETA1.powi(step);
        let second_correction = 1.0 - BETA2.powi(step);
        for i in 0..parameters.len() {
            self.first[i] = BETA1 * self.first[i] + (1.0 - BETA1) * gradient[i];
            self.second[i] = BETA2 * self.second[i] + (1.0 - BETA2) * gradient[i] * gradient[i];
            let first = self.first[i] / first_correction;
            let second = self.second[i] / second_correction;
            parameters[i] -= learning_rate * first / (second.sqrt() + 1e-8);
        }
    }
}

/// Computes the mean and standard deviation of every feature; a constant feature keeps scale 1.
fn standardisation(features: &[f32]) -> ([f32; FEATURE_COUNT], [f32; FEATURE_COUNT]) {
    let rows = (features.len() / FEATURE_COUNT).max(1) as f64;
    let mut sum = [0f64; FEATURE_COUNT];
    let mut square = [0f64; FEATURE_COUNT];
    for row in features.chunks_exact(FEATURE_COUNT) {
        for feature in 0..FEATURE_COUNT {
            sum[feature] += f64::from(row[feature]);
            square[feature] += f64::from(row[feature]).powi(2);
        }
    }
    let mut mean = [0f32; FEATURE_COUNT];
    let mut scale = [1f32; FEATURE_COUNT];
    for feature in 0..FEATURE_COUNT {
        let average = sum[feature] / rows;
        let variance = (square[feature] / rows - average * average).max(0.0);
        mean[feature] = average as f32;
        scale[feature] = if variance > 1e-12 { variance.sqrt() as f32 } else { 1.0 };
    }
    (mean, scale)
}

/// Fits the network by mini-batch Adam on the mean log loss.
///
/// `features` is row-major `[labels.len(), FEATURE_COUNT]`; labels are 0 or 1.
pub fn fit_mlp(features: &[f32], labels: &[f32], options: FitOptions) -> MlpModel {
    let hidden = options.hidden.max(1);
    let mut rng = StdRng::seed_from_u64(options.seed);
    let (mean, scale) = standardisation(features);

    // He initialisation suits rectified units.
    let spread = (6.0 / FEATURE_COUNT as f32).sqrt();
    let w1 = (0..FEATURE_COUNT * hidden).map(|_| (rng.random::<f32>() * 2.0 - 1.0) * spread).collect();
    let output_spread = (6.0 / hidden as f32).sqrt() * 0.1;
    let w2 = (0..hidden).map(|_| (rng.random::<f32>() * 2.0 - 1.0) * output_spread).collect();
    let mut model = MlpModel { mean, scale, hidden, w1, b1: vec![0.0; hidden], w2, b2: 0.0 };

    let mut rows: Vec<usize> = (0..labels.len()).filter(|&row| labels[row] > 0.5 || rng.random::<f64>() < options.negative_share).collect();
    if rows.is_empty() {
        return model;
    }
    let positive_share = rows.iter().filter(|&&row| labels[row] > 0.5).count() as f32 / rows.len() as f32;
    let positive_share = positive_share.clamp(1e-4, 1.0 - 1e-4);
    // Starting from the log-odds of the label share saves the steps that would learn it.
    model.b2 = (positive_share / (1.0 - positive_share)).ln();

    let mut adam = [Adam::new(model.w1.len()), Adam::new(hidden), Adam::new(hidden), Adam::new(1)];
    let mut gradients = [vec![0f32; model.w1.len()], vec![0f32; hidden], vec![0f32; hidden], vec![0f32; 1]];
    let mut input = [0f32; FEATURE_COUNT];
    let mut activations = vec![0f32; hidden];
    let mut step = 0;
    for _ in 0..options.epochs {
        rows.shuffle(&mut rng);
        for batch in rows.chunks(options.batch_size.max(1)) {
            gradients.iter_mut().for_each(|gradient| gradient.fill(0.0));
            for &row in batch {
                let values = &features[row * FEATURE_COUNT..(row + 1) * FEATURE_COUNT];
                let logit = model.forward(values, &mut input, &mut activations);
                let error = (sigmoid(logit) - labels[row]) / batch.len() as f32;
                gradients[3][0] += error;
                for unit in 0..hidden {
                    gradients[2][unit] += error * activations[unit];
                    if activations[unit] > 0.0 {
                        let back = error * model.w2[unit];
                        gradients[1][unit] += back;
                        for (feature, &value) in input.iter().enumerate() {
                            gradients[0][feature * hidden + unit] += back * value;
                        }
                    }
                }
            }
            for (gradient, weight) in gradients[0].iter_mut().zip(&model.w1) {
                *gradient += options.l2 * weight;
            }
            for (gradient, weight) in gradients[2].iter_mut().zip(&model.w2) {
                *gradient += options.l2 * weight;
            }
            step += 1;
            adam[0].step(&mut model.w1, &gradients[0], options.learning_rate, step);
            adam[1].step(&mut model.b1, &gradients[1], options.learning_rate, step);
            adam[2].step(&mut model.w2, &gradients[2], options.learning_rate, step);
            let mut b2 = [model.b2];
            adam[3].step(&mut b2, &gradients[3], options.learning_rate, step);
            model.b2 = b2[0];
        }
    }
    model
}

/// Returns the mean log loss of any scorer on the rows.
pub fn log_loss(scorer: &dyn Scorer, features: &[f32], labels: &[f32]) -> f64 {
    let Ok(scores) = scorer.score(features, labels.len()) else { return f64::NAN };
    let total: f64 = scores
        .iter()
        .zip(labels)
        .map(|(&score, &label)| {
            let p = f64::from(score).clamp(1e-7, 1.0 - 1e-7);
            -(f64::from(label) * p.ln() + (1.0 - f64::from(label)) * (1.0 - p).ln())
        })
        .sum();
    total / labels.len().max(1) as f64
}

/// Builds the training rows: features of every candidate of every user, labelled 1
/// when the user bought the candidate in the test part.
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows whose label is 1 when features 0 and 4 are both high: an interaction
    /// that a linear model cannot express.
    fn interaction_rows(count: usize) -> (Vec<f32>, Vec<f32>) {
        let mut features = Vec::new();
        let mut labels = Vec::new();
        for i in 0..count {
            let mut row = [0f32; FEATURE_COUNT];
            row[0] = (i % 4) as f32;
            row[4] = ((i / 4) % 4) as f32;
            row[6] = (i % 5) as f32;
            features.extend_from_slice(&row);
            labels.push(if row[0] >= 2.0 && row[4] >= 2.0 { 1.0 } else { 0.0 });
        }
        (features, labels)
    }

    #[test]
    fn fit_learns_feature_interaction() {
        let (features, labels) = interaction_rows(2_000);
        let model = fit_mlp(&features, &labels, FitOptions { negative_share: 1.0, epochs: 40, ..FitOptions::default() });
        assert!(log_loss(&model, &features, &labels) < 0.1, "log loss {}", log_loss(&model, &features, &labels));
    }

    #[test]
    fn fit_loss_decreases_with_epochs() {
        let (features, labels) = interaction_rows(1_000);
        let short = fit_mlp(&features, &labels, FitOptions { negative_share: 1.0, epochs: 1, ..FitOptions::default() });
        let long = fit_mlp(&features, &labels, FitOptions { negative_share: 1.0, epochs: 20, ..FitOptions::default() });
        assert!(log_loss(&long, &features, &labels) < log_loss(&short, &features, &labels));
    }

    #[test]
    fn constant_feature_keeps_unit_scale() {
        let features = vec![1.0f32; FEATURE_COUNT * 4];
        let labels = vec![0.0, 1.0, 0.0, 1.0];
        let model = fit_mlp(&features, &labels, FitOptions::default());
        assert_eq!(model.scale, [1.0; FEATURE_COUNT]);
        assert!(model.w1.iter().chain(&model.w2).all(|weight| weight.is_finite()));
    }

    #[test]
    fn fit_is_deterministic_for_a_seed() {
        let (features, labels) = interaction_rows(500);
        let a = fit_mlp(&features, &labels, FitOptions::default());
        let b = fit_mlp(&features, &labels, FitOptions::default());
        assert_eq!(a, b);
    }
}

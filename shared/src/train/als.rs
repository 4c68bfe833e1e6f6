//! Weighted matrix factorisation of implicit feedback by alternating least
//! squares, with each least-squares step solved by a few warm-started conjugate
//! gradient iterations (Takács, Pilászy and Tikk, RecSys 2011).
//!
//! The objective is the one of [`crate::embeddings`]: the sum over all
//! user-item pairs of `c·(p - xᵀy)²` plus `regularization·(|x|² + |y|²)` for
//! every user and item vector.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rayon::prelude::*;

use crate::embeddings::{dot, gramian, solve_user, FactorSettings};

/// Settings of a factorisation run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlsOptions {
    pub settings: FactorSettings,
    /// Alternations of a user step and an item step.
    pub iterations: usize,
    /// Conjugate gradient steps per vector and step, started from the previous vector.
    pub cg_steps: usize,
    /// Seed of the random initial vectors.
    pub seed: u64,
}

impl Default for AlsOptions {
    fn default() -> Self {
        AlsOptions { settings: FactorSettings { factors: 64, regularization: 0.05, alpha: 2.0 }, iterations: 15, cg_steps: 3, seed: 42 }
    }
}

/// Learned user and item vectors, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Factorisation {
    pub factors: usize,
    /// `[users, factors]`.
    pub users: Vec<f32>,
    /// `[items, factors]`.
    pub items: Vec<f32>,
}

/// Interactions of each user as `(item, strength)` pairs, one per distinct item.
pub type UserItems = Vec<Vec<(u32, f32)>>;

/// Turns user rows into item rows of `(user, strength)` pairs.
fn transpose(user_items: &UserItems, items: usize) -> UserItems {
    let mut item_users: UserItems = vec![Vec::new(); items];
    for (user, row) in user_items.iter().enumerate() {
        for &(item, strength) in row {
            item_users[item as usize].push((user as u32, strength));
        }
    }
    item_users
}

/// Solves every row of `targets` against the fixed `others` vectors.
fn least_squares_step(targets: &mut [f32], others: &[f32], rows: &UserItems, options: &AlsOptions) {
    let factors = options.settings.factors;
    let alpha = options.settings.alpha;
    let gramian = gramian(others, factors, options.settings.regularization);
    targets.par_chunks_exact_mut(factors).zip(rows.par_iter()).for_each(|(target, row)| {
        if row.is_empty() {
            // Without observations the penalty alone drives the vector to zero.
            target.fill(0.0);
            return;
        }
        let observed: Vec<(usize, f32)> = row.iter().map(|&(other, strength)| (other as usize, 1.0 + alpha * strength)).collect();
        solve_user(&gramian, others, &observed, target, options.cg_steps);
    });
}

/// Factorises the interactions of `user_items` over `items` items.
pub fn fit_als(user_items: &UserItems, items: usize, options: &AlsOptions) -> Factorisation {
    let factors = options.settings.factors;
    let mut rng = StdRng::seed_from_u64(options.seed);
    let mut random_vectors = |rows: usize| -> Vec<f32> { (0..rows * factors).map(|_| rng.random::<f32>() * 0.01).collect() };
    let mut users = random_vectors(user_items.len());
    let mut item_vectors = random_vectors(items);
    let item_users = transpose(user_items, items);

    for _ in 0..options.iterations {
        least_squares_step(&mut users, &item_vectors, user_items, options);
        least_squares_step(&mut item_vectors, &users, &item_users, options);
    }
    Factorisation { factors, users, items: item_vectors }
}

/// Computes the full objective, unobserved pairs included, without visiting them:
/// the sum of `(xᵀy)²` over all items is `xᵀ(YᵀY)x`.
pub fn objective(user_items: &UserItems, model: &Factorisation, settings: &FactorSettings) -> f64 {
    let factors = model.factors;
    let item_gramian = gramian(&model.items, factors, 0.0);
    let mut total = 0f64;
    for (user, row) in user_items.iter().enumerate() {
        let x = &model.users[user * factors..(user + 1) * factors];
        let mut all_squares = 0f64;
        for i in 0..factors {
            all_squares += f64::from(x[i]) * f64::from(dot(&item_gramian[i * factors..(i + 1) * factors], x));
        }
        total += all_squares;
        for &(item, strength) in row {
            let y = &model.items[item as usize * factors..(item as usize + 1) * factors];
            let predicted = f64::from(dot(x, y));
            let confidence = 1.0 + f64::from(settings.alpha) * f64::from(strength);
            total += confidence * (1.0 - predicted).powi(2) - predicted.powi(2);
        }
    }
    let penalty: f64 = model.users.iter().chain(&model.items).map(|&value| f64::from(value).powi(2)).sum();
    total + f64::from(settings.regularization) * penalty
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two groups of users who each buy only their own group's items.
    fn two_communities() -> (UserItems, usize) {
        let mut user_items = Vec::new();
        for user in 0..20u32 {
            let offset = if user < 10 { 0 } else { 4 };
            let row = (0..4u32).filter(|item| (user + item) % 4 != 0).map(|item| (offset + item, 1.0)).collect();
            user_items.push(row);
        }
        (user_items, 8)
    }

    fn options(iterations: usize) -> AlsOptions {
        AlsOptions { settings: FactorSettings { factors: 4, regularization: 0.1, alpha: 5.0 }, iterations, cg_steps: 3, seed: 7 }
    }

    #[test]
    fn objective_decreases_with_iterations() {
        let (user_items, items) = two_communities();
        let mut previous = f64::MAX;
        for iterations in [1, 2, 4, 8] {
            let options = options(iterations);
            let model = fit_als(&user_items, items, &options);
            let loss = objective(&user_items, &model, &options.settings);
            assert!(loss < previous, "loss {loss} after {iterations} iterations is not below {previous}");
            previous = loss;
        }
    }

    #[test]
    fn users_score_own_community_higher() {
        let (user_items, items) = two_communities();
        // Two factors leave room for the two communities but not for each user's own pattern.
        let mut options = options(10);
        options.settings.factors = 2;
        let model = fit_als(&user_items, items, &options);
        let factors = model.factors;
        let score = |user: usize, item: usize| dot(&model.users[user * factors..][..factors], &model.items[item * factors..][..factors]);
        // User 0 never bought item 0 but its community did; item 4 belongs to the other one.
        assert!(score(0, 0) > score(0, 4) + 0.3, "own {} other {}", score(0, 0), score(0, 4));
        assert!(score(15, 5) > score(15, 1) + 0.3, "own {} other {}", score(15, 5), score(15, 1));
    }

    #[test]
    fn item_without_interactions_gets_zero_vector() {
        let user_items = vec![vec![(0, 1.0)], vec![(0, 2.0)]];
        let model = fit_als(&user_items, 2, &options(3));
        assert!(model.items[4..8].iter().all(|&value| value == 0.0));
    }

    #[test]
    fn objective_matches_brute_force() {
        let (user_items, items) = two_communities();
        let options = options(2);
        let model = fit_als(&user_items, items, &options);
        let factors = model.factors;
        let mut brute = 0f64;
        for (user, row) in user_items.iter().enumerate() {
            for item in 0..items {
                let strength = row.iter().find(|(other, _)| *other as usize == item).map(|(_, strength)| *strength);
                let predicted = f64::from(dot(&model.users[user * factors..][..factors], &model.items[item * factors..][..factors]));
                brute += match strength {
                    Some(strength) => (1.0 + 5.0 * f64::from(strength)) * (1.0 - predicted).powi(2),
                    None => predicted.powi(2),
                };
            }
        }
        brute += 0.1 * model.users.iter().chain(&model.items).map(|&value| f64::from(value).powi(2)).sum::<f64>();
        let fast = objective(&user_items, &model, &options.settings);
        assert!((fast - brute).abs() < 1e-3 * brute.abs().max(1.0), "fast {fast} brute {brute}");
    }
}

#[cfg(test)]
mod fold_in_tests {
    use super::*;
    use crate::embeddings::ItemEmbeddings;
    use crate::recommend::UserHistory;

    #[test]
    fn fold_in_matches_exact_solve() {
        // A sparse random shop: 300 users, 200 items, 64 factors as in production.
        let mut rng = StdRng::seed_from_u64(3);
        let user_items: UserItems = (0..300)
            .map(|_| {
                let mut row: Vec<(u32, f32)> =
                    (0..200u32).filter(|_| rng.random::<f32>() < 0.08).map(|item| (item, 1.0 + (item % 3) as f32)).collect();
                row.dedup_by_key(|(item, _)| *item);
                row
            })
            .collect();
        let options = AlsOptions::default();
        let model = fit_als(&user_items, 200, &options);
        let item_ids: Vec<String> = (0..200).map(|item| format!("I{item}")).collect();
        let embeddings = ItemEmbeddings::new(item_ids, model.items.clone(), options.settings).unwrap();

        let factors = options.settings.factors;
        let mut worst = 0f32;
        for row in user_items.iter().take(20) {
            let mut history = UserHistory::default();
            for &(item, strength) in row {
                history.purchased.insert(format!("I{item}"), strength);
            }
            let folded = embeddings.fold_in(&history).unwrap();
            let exact = solve_exactly(row, &model.items, factors, &options);
            let folded_scores = embeddings.scores(&folded);
            let exact_scores = embeddings.scores(&exact);
            for (a, b) in folded_scores.iter().zip(&exact_scores) {
                worst = worst.max((a - b).abs());
            }
        }
        assert!(worst < 1e-3, "fold-in scores differ from the exact solve by up to {worst}");
    }

    /// Solves the user's system with many conjugate gradient steps.
    fn solve_exactly(row: &[(u32, f32)], items: &[f32], factors: usize, options: &AlsOptions) -> Vec<f32> {
        let gramian = gramian(items, factors, options.settings.regularization);
        let observed: Vec<(usize, f32)> =
            row.iter().map(|&(item, strength)| (item as usize, 1.0 + options.settings.alpha * strength)).collect();
        let mut x = vec![0.0; factors];
        solve_user(&gramian, items, &observed, &mut x, 500);
        x
    }
}

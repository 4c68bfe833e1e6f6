//! Train/test splits of interactions: by time, for data with useful time stamps,
//! and by a random share of each user's items, for data without them.
//!
//! Both keep every test interaction out of the training part, and both test
//! only users who have a history in the training part.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;

use crate::ingest::Interaction;
use crate::recommend::UserHistory;

/// Rule that chooses the test interactions of a split.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SplitKind {
    /// Train on everything before the last `test_days` days, test on those days.
    Time { test_days: u32 },
    /// Hold out `test_share` of each user's distinct items, chosen at random with `seed`.
    Random { test_share: f64, seed: u64 },
}

/// A user of a split: the history in the training part and the new items to predict.
#[derive(Debug, Clone)]
pub struct SplitUser {
    pub user_id: String,
    pub history: UserHistory,
    /// Items in the test part that are not in the history.
    pub future: FxHashSet<String>,
}

/// Training interactions and test users.
#[derive(Debug, Clone)]
pub struct Split {
    pub train: Vec<Interaction>,
    pub users: Vec<SplitUser>,
    /// One-line description of the split, for reports.
    pub description: String,
}

const SECONDS_PER_DAY: i64 = 86_400;

/// Builds each user's purchase history: the number of distinct orders per item
/// and the latest purchase time. Rows without a basket count one order per time stamp.
pub fn user_histories<'a>(rows: impl Iterator<Item = &'a Interaction>) -> FxHashMap<String, UserHistory> {
    let mut orders: FxHashSet<(&str, &str, OrderKey)> = FxHashSet::default();
    let mut histories: FxHashMap<String, UserHistory> = FxHashMap::default();
    for row in rows {
        let order = match row.basket_id.as_deref() {
            Some(basket) => OrderKey::Basket(basket.to_string()),
            None => OrderKey::Time(row.timestamp),
        };
        let history = histories.entry(row.user_id.clone()).or_default();
        if orders.insert((row.user_id.as_str(), row.item_id.as_str(), order)) {
            *history.purchased.entry(row.item_id.clone()).or_default() += 1.0;
        }
        history.touch(&row.item_id, row.timestamp);
    }
    histories
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum OrderKey {
    Basket(String),
    Time(i64),
}

/// Splits at `last - test_days`: history before the cut, new purchases from the cut on.
pub fn time_split(interactions: &[Interaction], test_days: u32) -> Split {
    let last = interactions.iter().map(|row| row.timestamp).max().unwrap_or(0);
    let cut = last - i64::from(test_days) * SECONDS_PER_DAY;
    let train: Vec<Interaction> = interactions.iter().filter(|row| row.timestamp < cut).cloned().collect();
    let mut histories = user_histories(train.iter());

    let mut future: FxHashMap<&str, FxHashSet<String>> = FxHashMap::default();
    for row in interactions.iter().filter(|row| row.timestamp >= cut) {
        let Some(history) = histories.get(row.user_id.as_str()) else { continue };
        if !history.purchased.contains_key(&row.item_id) {
            future.entry(row.user_id.as_str()).or_default().insert(row.item_id.clone());
        }
    }
    let mut users: Vec<SplitUser> = future
        .into_iter()
        .map(|(user_id, future)| SplitUser { user_id: user_id.to_string(), history: histories.remove(user_id).unwrap_or_default(), future })
        .collect();
    users.sort_by(|a, b| a.user_id.cmp(&b.user_id));

    let cut_date =
        chrono::DateTime::from_timestamp(cut, 0).map_or_else(|| cut.to_string(), |date| date.format("%Y-%m-%d %H:%M").to_string());
    let description = format!("time split: train before {cut_date} UTC, test on the following {test_days} days");
    Split { train, users, description }
}

/// Holds out a random `test_share` of each user's distinct items, at least one and
/// never all of them, so users with one item stay in training only.
pub fn random_split(interactions: &[Interaction], test_share: f64, seed: u64) -> Split {
    let mut items_by_user: FxHashMap<&str, FxHashSet<&str>> = FxHashMap::default();
    for row in interactions {
        items_by_user.entry(row.user_id.as_str()).or_default().insert(row.item_id.as_str());
    }
    let mut user_ids: Vec<&str> = items_by_user.keys().copied().collect();
    user_ids.sort_unstable();

    let mut rng = StdRng::seed_from_u64(seed);
    let mut held_out: FxHashMap<&str, FxHashSet<&str>> = FxHashMap::default();
    for user_id in user_ids {
        let mut items: Vec<&str> = items_by_user[user_id].iter().copied().collect();
        if items.len() < 2 {
            continue;
        }
        items.sort_unstable();
        items.shuffle(&mut rng);
        let count = ((items.len() as f64 * test_share).round() as usize).clamp(1, items.len() - 1);
        held_out.insert(user_id, items[..count].iter().copied().collect());
    }

    let is_held_out = |row: &Interaction| held_out.get(row.user_id.as_str()).is_some_and(|items| items.contains(row.item_id.as_str()));
    let train: Vec<Interaction> = interactions.iter().filter(|row| !is_held_out(row)).cloned().collect();
    let mut histories = user_histories(train.iter());
    let mut users: Vec<SplitUser> = held_out
        .iter()
        .map(|(user_id, items)| SplitUser {
            user_id: user_id.to_string(),
            history: histories.remove(*user_id).unwrap_or_default(),
            future: items.iter().map(|item_id| item_id.to_string()).collect(),
        })
        .collect();
    users.sort_by(|a, b| a.user_id.cmp(&b.user_id));

    let description = format!("random split: {:.0}% of each user's items held out (seed {seed})", test_share * 100.0);
    Split { train, users, description }
}

/// Makes the split that `kind` describes.
pub fn split(interactions: &[Interaction], kind: SplitKind) -> Split {
    match kind {
        SplitKind::Time { test_days } => time_split(interactions, test_days),
        SplitKind::Random { test_share, seed } => random_split(interactions, test_share, seed),
    }
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
            title: None,
            basket_id: Some(basket.into()),
        }
    }

    fn sample() -> Vec<Interaction> {
        vec![
            row("u1", "A", 0, "b1"),
            row("u1", "B", 0, "b1"),
            row("u1", "A", 3, "b2"),
            row("u1", "C", 50, "b3"),
            row("u1", "A", 51, "b4"),
            row("u2", "D", 55, "b5"),
            row("u3", "A", 1, "b6"),
            row("u3", "B", 2, "b7"),
            row("u3", "C", 4, "b8"),
            row("u3", "D", 5, "b9"),
        ]
    }

    #[test]
    fn histories_count_orders_and_latest_time() {
        let histories = user_histories(sample().iter());
        let u1 = &histories["u1"];
        assert_eq!(u1.purchased["A"], 3.0);
        assert_eq!(u1.last_at["A"], 51 * SECONDS_PER_DAY);
    }

    #[test]
    fn time_split_never_leaks_future_into_history() {
        let rows = sample();
        let split = time_split(&rows, 10);
        let cut = 45 * SECONDS_PER_DAY;
        assert!(split.train.iter().all(|row| row.timestamp < cut));
        assert_eq!(split.users.len(), 1, "only u1 has history and new items");
        let u1 = &split.users[0];
        assert!(!u1.history.contains("C"));
        assert!(u1.future.contains("C"));
        assert!(!u1.future.contains("A"), "repeat purchases are not new items");
        assert!(u1.history.last_at.values().all(|&at| at < cut));
    }

    #[test]
    fn random_split_never_leaks_held_out_items() {
        let rows = sample();
        let split = random_split(&rows, 0.5, 7);
        for user in &split.users {
            for item_id in &user.future {
                assert!(!user.history.contains(item_id), "{} has held-out {item_id} in history", user.user_id);
                let leaked = split.train.iter().any(|row| row.user_id == user.user_id && &row.item_id == item_id);
                assert!(!leaked, "{} has held-out {item_id} in the training rows", user.user_id);
            }
            assert!(!user.history.is_empty());
        }
    }

    #[test]
    fn random_split_skips_single_item_users() {
        let split = random_split(&sample(), 0.5, 7);
        assert!(split.users.iter().all(|user| user.user_id != "u2"));
        assert!(split.train.iter().any(|row| row.user_id == "u2"));
    }

    #[test]
    fn random_split_is_deterministic_for_seed() {
        let a = random_split(&sample(), 0.5, 7);
        let b = random_split(&sample(), 0.5, 7);
        let futures = |split: &Split| split.users.iter().map(|user| (user.user_id.clone(), user.future.clone())).collect::<Vec<_>>();
        assert_eq!(futures(&a).len(), futures(&b).len());
        for ((a_user, a_future), (b_user, b_future)) in futures(&a).into_iter().zip(futures(&b)) {
            assert_eq!(a_user, b_user);
            assert_eq!(a_future, b_future);
        }
    }
}

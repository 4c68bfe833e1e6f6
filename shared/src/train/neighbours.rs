//! Item-to-item neighbours from co-occurrence in users' purchase histories.

use rayon::prelude::*;

/// Settings of the neighbour computation.
#[derive(Debug, Clone, Copy)]
pub struct NeighbourOptions {
    /// Neighbours kept per item.
    pub per_item: usize,
    /// Shrinkage λ: a pair bought together by `c` users keeps `c / (c + λ)` of its cosine.
    pub shrinkage: f32,
    /// Pairs bought together by fewer users are dropped.
    pub min_support: u32,
}

impl Default for NeighbourOptions {
    fn default() -> Self {
        NeighbourOptions { per_item: 50, shrinkage: 10.0, min_support: 2 }
    }
}

/// A neighbour by dense item index.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IndexedNeighbour {
    pub item: u32,
    pub score: f32,
    pub support: u32,
}

/// Computes the top neighbours of every item.
///
/// `user_items[u]` lists the distinct item indices user `u` bought and
/// `item_count` bounds the indices. The score of items `i` and `j` bought by
/// `n_i` and `n_j` users, `c` of whom bought both, is
/// `c / sqrt(n_i * n_j) * c / (c + shrinkage)`: cosine similarity of the buyer
/// sets, shrunk towards zero when few users support it.
pub fn compute_neighbours(user_items: &[Vec<u32>], item_count: usize, options: NeighbourOptions) -> Vec<Vec<IndexedNeighbour>> {
    let mut item_users: Vec<Vec<u32>> = vec![Vec::new(); item_count];
    for (user, items) in user_items.iter().enumerate() {
        for &item in items {
            item_users[item as usize].push(user as u32);
        }
    }

    (0..item_count)
        .into_par_iter()
        .map_init(
            || (vec![0u32; item_count], Vec::<u32>::new()),
            |(counts, touched), item| {
                for &user in &item_users[item] {
                    for &other in &user_items[user as usize] {
                        if other as usize == item {
                            continue;
                        }
                        if counts[other as usize] == 0 {
                            touched.push(other);
                        }
                        counts[other as usize] += 1;
                    }
                }

                let buyers = item_users[item].len() as f32;
                let mut neighbours: Vec<IndexedNeighbour> = touched
                    .iter()
                    .filter(|&&other| counts[other as usize] >= options.min_support)
                    .map(|&other| {
                        let support = counts[other as usize];
                        let together = support as f32;
                        let cosine = together / (buyers * item_users[other as usize].len() as f32).sqrt();
                        IndexedNeighbour { item: other, score: cosine * together / (together + options.shrinkage), support }
                    })
                    .collect();
                for &other in touched.iter() {
                    counts[other as usize] = 0;
                }
                touched.clear();

                neighbours.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.item.cmp(&b.item)));
                neighbours.truncate(options.per_item);
                neighbours
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(per_item: usize) -> NeighbourOptions {
        NeighbourOptions { per_item, shrinkage: 0.0, min_support: 1 }
    }

    #[test]
    fn cosine_of_buyer_sets() {
        // Item 0: users 0,1,2. Item 1: users 0,1. Item 2: user 2.
        let user_items = vec![vec![0, 1], vec![0, 1], vec![0, 2]];
        let neighbours = compute_neighbours(&user_items, 3, options(10));
        let of_zero = &neighbours[0];
        assert_eq!(of_zero[0].item, 1);
        assert!((of_zero[0].score - 2.0 / (3.0f32 * 2.0).sqrt()).abs() < 1e-6);
        assert_eq!(of_zero[0].support, 2);
        assert_eq!(of_zero[1].item, 2);
        assert!((of_zero[1].score - 1.0 / 3.0f32.sqrt()).abs() < 1e-6);
    }

    #[test]
    fn neighbours_are_symmetric() {
        let user_items = vec![vec![0, 1, 2], vec![1, 2], vec![0, 2]];
        let neighbours = compute_neighbours(&user_items, 3, options(10));
        let score = |a: usize, b: u32| neighbours[a].iter().find(|n| n.item == b).unwrap().score;
        assert_eq!(score(0, 2), score(2, 0));
        assert_eq!(score(1, 2), score(2, 1));
    }

    #[test]
    fn shrinkage_lowers_rare_pairs() {
        let user_items = vec![vec![0, 1], vec![0, 1], vec![0, 1], vec![2, 3]];
        let shrunk = compute_neighbours(&user_items, 4, NeighbourOptions { per_item: 10, shrinkage: 10.0, min_support: 1 });
        // Both pairs have cosine 1; the pair with three buyers keeps more of it.
        assert!(shrunk[0][0].score > shrunk[2][0].score);
        assert!((shrunk[2][0].score - 1.0 / 11.0).abs() < 1e-6);
    }

    #[test]
    fn min_support_and_top_k_apply() {
        let user_items = vec![vec![0, 1, 2, 3], vec![0, 1], vec![0, 1, 2]];
        let neighbours = compute_neighbours(&user_items, 4, NeighbourOptions { per_item: 1, shrinkage: 0.0, min_support: 2 });
        assert_eq!(neighbours[0].len(), 1);
        assert_eq!(neighbours[0][0].item, 1);
        assert!(neighbours[3].is_empty());
    }
}

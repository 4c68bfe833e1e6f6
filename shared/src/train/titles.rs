//! Neighbours by title for items that have no co-purchase neighbours, such as
//! new catalogue entries without any purchase.

use rustc_hash::FxHashMap;

use crate::model::{CatalogueItem, Neighbour, NeighbourKind};
use crate::preferences::{title_term_idf, title_terms};

/// Title neighbours with a lower TF-IDF cosine are dropped.
const MIN_TITLE_SIMILARITY: f32 = 0.2;

/// Returns, for each item in `targets`, up to `per_item` items with bought history
/// whose titles are the most similar by TF-IDF cosine.
pub fn title_neighbours(catalogue: &[CatalogueItem], targets: &[&str], per_item: usize) -> FxHashMap<String, Vec<Neighbour>> {
    let idf = title_term_idf(catalogue.iter().map(|item| item.title.as_str()));
    let vector = |title: &str| -> Vec<(String, f32)> {
        let mut weights: FxHashMap<String, f32> = FxHashMap::default();
        for term in title_terms(title) {
            *weights.entry(term).or_default() += 1.0;
        }
        let mut terms: Vec<(String, f32)> =
            weights.into_iter().map(|(term, count)| (term.clone(), count * idf.get(&term).copied().unwrap_or(0.0))).collect();
        let norm = terms.iter().map(|(_, weight)| weight * weight).sum::<f32>().sqrt();
        if norm > 0.0 {
            terms.iter_mut().for_each(|(_, weight)| *weight /= norm);
        }
        terms
    };

    // The index covers bought items only, so that title neighbours lead to items that sell.
    let mut postings: FxHashMap<String, Vec<(usize, f32)>> = FxHashMap::default();
    for (index, item) in catalogue.iter().enumerate().filter(|(_, item)| item.buyers > 0) {
        for (term, weight) in vector(&item.title) {
            postings.entry(term).or_default().push((index, weight));
        }
    }

    let by_id: FxHashMap<&str, &CatalogueItem> = catalogue.iter().map(|item| (item.item_id.as_str(), item)).collect();
    let mut neighbours = FxHashMap::default();
    for &target in targets {
        let Some(item) = by_id.get(target) else { continue };
        let mut scores: FxHashMap<usize, f32> = FxHashMap::default();
        for (term, weight) in vector(&item.title) {
            for &(other, other_weight) in postings.get(&term).map(Vec::as_slice).unwrap_or_default() {
                *scores.entry(other).or_default() += weight * other_weight;
            }
        }
        let mut ranked: Vec<(usize, f32)> =
            scores.into_iter().filter(|&(other, score)| score >= MIN_TITLE_SIMILARITY && catalogue[other].item_id != target).collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| catalogue[a.0].item_id.cmp(&catalogue[b.0].item_id)));
        ranked.truncate(per_item);
        if ranked.is_empty() {
            continue;
        }
        let list = ranked
            .into_iter()
            .map(|(other, score)| Neighbour {
                item_id: catalogue[other].item_id.clone(),
                score: score.min(1.0),
                support: 0,
                kind: NeighbourKind::Title,
            })
            .collect();
        neighbours.insert(target.to_string(), list);
    }
    neighbours
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(item_id: &str, title: &str, buyers: u32) -> CatalogueItem {
        CatalogueItem { item_id: item_id.into(), title: title.into(), price: 1.0, buyers, recent_buyers: 0 }
    }

    #[test]
    fn new_item_gets_bought_items_with_similar_titles() {
        let catalogue = vec![
            item("NEW", "RED HEART CANDLE HOLDER", 0),
            item("A", "WHITE HEART CANDLE HOLDER", 5),
            item("B", "BLUE PAPER NAPKINS", 5),
            item("C", "RED HEART CANDLE HOLDER LARGE", 0),
        ];
        let neighbours = title_neighbours(&catalogue, &["NEW"], 5);
        let list = &neighbours["NEW"];
        assert_eq!(list[0].item_id, "A");
        assert_eq!(list[0].kind, NeighbourKind::Title);
        assert!(list.iter().all(|neighbour| neighbour.item_id != "B"), "unrelated title is a neighbour");
        assert!(list.iter().all(|neighbour| neighbour.item_id != "C"), "an unbought item is a neighbour");
    }

    #[test]
    fn item_without_shared_terms_gets_none() {
        let catalogue = vec![item("NEW", "ZEBRA", 0), item("A", "WHITE HEART", 5)];
        assert!(title_neighbours(&catalogue, &["NEW"], 5).is_empty());
    }
}

//! The data of one model version: catalogue, popularity, neighbours and the manifest
//! that lists every artifact with its sha256 and size.

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::embeddings::{FactorSettings, ItemEmbeddings};

/// S3 key prefix under which each model version has its own folder.
pub const ARTIFACT_PREFIX: &str = "models";

/// File names of the artifacts inside a version folder.
pub mod files {
    /// Manifest, written last.
    pub const MANIFEST: &str = "manifest.json";
    /// Item catalogue as a JSON array of [`super::CatalogueItem`].
    pub const CATALOGUE: &str = "catalogue.json";
    /// Popular item lists as [`super::Popularity`].
    pub const POPULARITY: &str = "popularity.json";
    /// Item-to-item neighbours by catalogue row, in the binary layout of
    /// [`super::encode_neighbours`], which loads without parsing text.
    pub const NEIGHBOURS: &str = "neighbours.bin";
    /// Ranking model in ONNX format.
    pub const RANKER: &str = "ranker.onnx";
    /// Item vectors as little-endian float32, one row per catalogue entry in catalogue order.
    pub const ITEM_EMBEDDINGS: &str = "item_embeddings.f32";
    /// User vectors as little-endian float32, one row per user in the order of [`USER_IDS`].
    pub const USER_EMBEDDINGS: &str = "user_embeddings.f32";
    /// User ids of the rows of [`USER_EMBEDDINGS`], as a JSON array.
    pub const USER_IDS: &str = "user_ids.json";
}

/// Returns the S3 key of an artifact of a model version.
pub fn artifact_key(model_version: &str, file_name: &str) -> String {
    format!("{ARTIFACT_PREFIX}/{model_version}/{file_name}")
}

/// One item of the catalogue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogueItem {
    pub item_id: String,
    /// Most frequent description seen for the item, trimmed.
    pub title: String,
    /// Median unit price paid.
    pub price: f64,
    /// Distinct users who bought the item.
    pub buyers: u32,
    /// Distinct users who bought the item in the recent window.
    pub recent_buyers: u32,
}

/// Measure behind a neighbour's score.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NeighbourKind {
    /// Shrunk cosine similarity of the two items' buyer sets.
    #[default]
    CoPurchase,
    /// TF-IDF cosine similarity of the titles, for items without any purchase.
    Title,
}

/// One neighbour of an item with its similarity score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Neighbour {
    pub item_id: String,
    /// Similarity in 0..=1, of the measure that `kind` names.
    pub score: f32,
    /// Number of users who bought both items; 0 for title neighbours.
    pub support: u32,
    #[serde(default)]
    pub kind: NeighbourKind,
}

/// Item ids ordered by popularity.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Popularity {
    /// Length of the recent window in days, ending at the last interaction.
    pub recent_days: u32,
    /// Items by distinct buyers over the whole data.
    pub all_time: Vec<String>,
    /// Items by distinct buyers in the recent window.
    pub recent: Vec<String>,
}

/// One artifact file as listed in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestFile {
    pub name: String,
    pub key: String,
    pub sha256: String,
    pub size: u64,
}

/// Input contract of the ranking model.
///
/// The model takes one float32 tensor of shape `[candidates, features.len()]`,
/// with the features in this order, and returns a float32 tensor of shape
/// `[candidates, 1]` where a higher score ranks first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankerContract {
    pub file: String,
    pub input: String,
    pub output: String,
    pub features: Vec<String>,
    /// Description of each feature, in the order of `features`.
    #[serde(default)]
    pub descriptions: Vec<String>,
    pub opset: i64,
    /// Training settings and held-out scores of the model.
    pub training: serde_json::Value,
}

/// Layout and training settings of the embedding files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingContract {
    pub item_file: String,
    pub user_file: String,
    pub user_ids_file: String,
    /// Always "float32-le": little-endian float32, row-major.
    pub dtype: String,
    pub settings: FactorSettings,
    pub iterations: usize,
    pub items: usize,
    pub users: usize,
}

/// Facts about the data a model version was trained on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DataSummary {
    pub rows_read: u64,
    pub rows_kept: u64,
    pub interactions: u64,
    pub users: u64,
    pub items: u64,
    /// Unix seconds of the first and last interaction.
    pub first_interaction: i64,
    pub last_interaction: i64,
}

/// Manifest of one model version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub model_version: String,
    pub created_at: String,
    pub data: DataSummary,
    pub neighbours_per_item: usize,
    pub shrinkage: f32,
    /// Catalogue price terciles: below the first is "low", above the second "high".
    pub price_bands: [f64; 2],
    pub ranker: RankerContract,
    /// Absent in model versions trained without embeddings.
    #[serde(default)]
    pub embeddings: Option<EmbeddingContract>,
    pub files: Vec<ManifestFile>,
}

impl Manifest {
    /// Returns the listed file with this name.
    pub fn file(&self, name: &str) -> Option<&ManifestFile> {
        self.files.iter().find(|file| file.name == name)
    }
}

/// Marks "no row" in the row tables of [`ModelData`].
const NO_ROW: u32 = u32::MAX;

/// One neighbour of an item, by item row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NeighbourRow {
    pub row: u32,
    pub score: f32,
    pub kind: NeighbourKind,
}

/// Logarithms of a catalogue item's facts that the ranker's features use,
/// computed once per model version instead of once per candidate.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ItemLogs {
    /// ln(1 + distinct buyers).
    pub buyers: f32,
    /// ln(1 + distinct buyers in the recent window).
    pub recent_buyers: f32,
    /// ln(price), when the price is above zero.
    pub price: Option<f64>,
}

impl ItemLogs {
    fn new(item: &CatalogueItem) -> Self {
        ItemLogs {
            buyers: (item.buyers as f32).ln_1p(),
            recent_buyers: (item.recent_buyers as f32).ln_1p(),
            price: (item.price > 0.0).then(|| item.price.ln()),
        }
    }
}

/// Everything candidate generation, feature building and profiles read from a model version.
///
/// Every item gets a row when the data is built: first the catalogue in its
/// order, then any id that only the neighbours, the popular lists or the
/// embeddings name. The request path works on rows, so it hashes each
/// history item once and then reads plain arrays.
#[derive(Debug, Clone, Default)]
pub struct ModelData {
    /// Inverse document frequency of title terms over the catalogue.
    pub term_idf: FxHashMap<String, f32>,
    pub price_bands: [f64; 2],
    popularity: Popularity,
    /// Catalogue items; item row `r` below `catalogue.len()` is `catalogue[r]`.
    catalogue: Vec<CatalogueItem>,
    /// Feature logarithms of every catalogue row.
    item_logs: Vec<ItemLogs>,
    /// Item id of every row.
    item_ids: Vec<String>,
    rows: FxHashMap<String, u32>,
    /// Neighbours of every row, best first.
    neighbours: Vec<Vec<NeighbourRow>>,
    /// Popular rows, recent first and then all-time, each once.
    popular_rows: Vec<u32>,
    embeddings: Option<ItemEmbeddings>,
    /// Embedding row of every item row, or [`NO_ROW`].
    embedding_rows: Vec<u32>,
    /// Item row of every embedding row.
    item_rows_by_embedding: Vec<u32>,
}

impl ModelData {
    /// Builds the lookup tables from the catalogue, the popular lists and the neighbours by item id.
    pub fn new(catalogue: Vec<CatalogueItem>, popularity: Popularity, neighbours: FxHashMap<String, Vec<Neighbour>>) -> Self {
        let mut data = ModelData::with_catalogue(catalogue);
        let mut neighbour_rows: Vec<(u32, Vec<NeighbourRow>)> = Vec::with_capacity(neighbours.len());
        for (item_id, list) in &neighbours {
            let row = data.add_row(item_id);
            let list = list
                .iter()
                .map(|neighbour| NeighbourRow { row: data.add_row(&neighbour.item_id), score: neighbour.score, kind: neighbour.kind })
                .collect();
            neighbour_rows.push((row, list));
        }
        data.finish(popularity, neighbour_rows)
    }

    /// Builds the lookup tables from neighbours given by catalogue row, as
    /// [`decode_neighbours`] returns them.
    pub fn from_neighbour_rows(catalogue: Vec<CatalogueItem>, popularity: Popularity, neighbours: Vec<Vec<NeighbourRow>>) -> Self {
        let data = ModelData::with_catalogue(catalogue);
        let neighbour_rows = neighbours.into_iter().enumerate().map(|(row, list)| (row as u32, list)).collect();
        data.finish(popularity, neighbour_rows)
    }

    /// Gives every catalogue item its row, in catalogue order.
    fn with_catalogue(catalogue: Vec<CatalogueItem>) -> Self {
        let term_idf = crate::preferences::title_term_idf(catalogue.iter().map(|item| item.title.as_str()));
        let price_bands = price_terciles(catalogue.iter().map(|item| item.price));
        let mut data = ModelData { term_idf, price_bands, ..ModelData::default() };
        for item in &catalogue {
            data.add_row(&item.item_id);
        }
        data.item_logs = catalogue.iter().map(ItemLogs::new).collect();
        data.catalogue = catalogue;
        data
    }

    /// Adds the popular lists and the neighbour table.
    fn finish(mut self, popularity: Popularity, neighbour_rows: Vec<(u32, Vec<NeighbourRow>)>) -> Self {
        let popular: Vec<u32> = popularity.recent.iter().chain(&popularity.all_time).map(|item_id| self.add_row(item_id)).collect();
        let mut listed = vec![false; self.item_ids.len()];
        self.popular_rows = popular.into_iter().filter(|&row| !std::mem::replace(&mut listed[row as usize], true)).collect();
        self.popularity = popularity;

        self.neighbours = vec![Vec::new(); self.item_ids.len()];
        for (row, list) in neighbour_rows {
            self.neighbours[row as usize] = list;
        }
        self.embedding_rows = vec![NO_ROW; self.item_ids.len()];
        self
    }

    /// Returns the row of an item id, adding one when the id is new.
    fn add_row(&mut self, item_id: &str) -> u32 {
        if let Some(&row) = self.rows.get(item_id) {
            return row;
        }
        let row = self.item_ids.len() as u32;
        self.item_ids.push(item_id.to_string());
        self.rows.insert(item_id.to_string(), row);
        row
    }

    /// Adds item embeddings.
    pub fn with_embeddings(mut self, embeddings: ItemEmbeddings) -> Self {
        self.item_rows_by_embedding = (0..embeddings.len()).map(|row| self.add_row(embeddings.item_id(row))).collect();
        self.neighbours.resize(self.item_ids.len(), Vec::new());
        self.embedding_rows = vec![NO_ROW; self.item_ids.len()];
        for (embedding_row, &item_row) in self.item_rows_by_embedding.iter().enumerate() {
            self.embedding_rows[item_row as usize] = embedding_row as u32;
        }
        self.embeddings = Some(embeddings);
        self
    }

    /// Returns the catalogue items.
    pub fn catalogue(&self) -> &[CatalogueItem] {
        &self.catalogue
    }

    /// Returns the catalogue entry of an item.
    pub fn item(&self, item_id: &str) -> Option<&CatalogueItem> {
        self.row(item_id).and_then(|row| self.catalogue.get(row))
    }

    /// Returns the title of an item, or an empty string for an unknown item.
    pub fn title(&self, item_id: &str) -> &str {
        self.item(item_id).map_or("", |item| item.title.as_str())
    }

    /// Returns the popular item lists.
    pub fn popularity(&self) -> &Popularity {
        &self.popularity
    }

    /// Returns the item embeddings, if the model version has them.
    pub fn embeddings(&self) -> Option<&ItemEmbeddings> {
        self.embeddings.as_ref()
    }

    /// Returns the number of item rows.
    pub fn rows(&self) -> usize {
        self.item_ids.len()
    }

    /// Returns the row of an item id.
    pub fn row(&self, item_id: &str) -> Option<usize> {
        self.rows.get(item_id).map(|&row| row as usize)
    }

    /// Returns the item id of a row.
    pub fn item_id(&self, row: usize) -> &str {
        &self.item_ids[row]
    }

    /// Returns the catalogue entry of a row, if the row is a catalogue item.
    pub fn item_at(&self, row: usize) -> Option<&CatalogueItem> {
        self.catalogue.get(row)
    }

    /// Returns the feature logarithms of a row; zeros and no price for an id outside the catalogue.
    pub fn item_logs(&self, row: usize) -> ItemLogs {
        self.item_logs.get(row).copied().unwrap_or_default()
    }

    /// Returns the neighbours of a row, best first.
    pub fn neighbours_at(&self, row: usize) -> &[NeighbourRow] {
        &self.neighbours[row]
    }

    /// Returns the popular rows, recent first and then all-time, each once.
    pub fn popular_rows(&self) -> &[u32] {
        &self.popular_rows
    }

    /// Returns the embedding row of an item row.
    pub fn embedding_row(&self, row: usize) -> Option<usize> {
        self.embedding_rows.get(row).copied().filter(|&row| row != NO_ROW).map(|row| row as usize)
    }

    /// Returns the item row of an embedding row.
    pub fn item_row_of_embedding(&self, embedding_row: usize) -> usize {
        self.item_rows_by_embedding[embedding_row] as usize
    }
}

/// First bytes of a neighbours file.
const NEIGHBOURS_MAGIC: &[u8; 4] = b"SRNB";

/// Layout version of a neighbours file.
const NEIGHBOURS_LAYOUT: u32 = 1;

/// Bit of a stored support count that marks a title neighbour.
const TITLE_BIT: u32 = 1 << 31;

/// Encodes the neighbours by catalogue row, in little-endian words.
///
/// The file starts with the magic `SRNB`, the layout version and the item and
/// entry counts (u32 each). Then come `items + 1` entry offsets, the neighbour
/// rows (u32), the scores (f32) and the support counts (u32, with the top bit
/// set for a title neighbour). Fails when a neighbour is not a catalogue item.
pub fn encode_neighbours(catalogue: &[CatalogueItem], neighbours: &FxHashMap<String, Vec<Neighbour>>) -> Result<Vec<u8>, String> {
    let rows: FxHashMap<&str, u32> = catalogue.iter().enumerate().map(|(row, item)| (item.item_id.as_str(), row as u32)).collect();
    if let Some(item_id) = neighbours.keys().find(|item_id| !rows.contains_key(item_id.as_str())) {
        return Err(format!("item {item_id} has neighbours but is not in the catalogue"));
    }

    let mut offsets = Vec::with_capacity(catalogue.len() + 1);
    let (mut targets, mut scores, mut supports) = (Vec::new(), Vec::new(), Vec::new());
    offsets.push(0u32);
    for item in catalogue {
        for neighbour in neighbours.get(&item.item_id).into_iter().flatten() {
            let Some(&row) = rows.get(neighbour.item_id.as_str()) else {
                return Err(format!("neighbour {} of item {} is not in the catalogue", neighbour.item_id, item.item_id));
            };
            targets.push(row);
            scores.push(neighbour.score);
            let title = if neighbour.kind == NeighbourKind::Title { TITLE_BIT } else { 0 };
            supports.push(neighbour.support.min(TITLE_BIT - 1) | title);
        }
        offsets.push(targets.len() as u32);
    }

    let words = [NEIGHBOURS_LAYOUT, catalogue.len() as u32, targets.len() as u32];
    let mut bytes = Vec::with_capacity(16 + 4 * (offsets.len() + 3 * targets.len()));
    bytes.extend_from_slice(NEIGHBOURS_MAGIC);
    for word in words.iter().chain(&offsets).chain(&targets) {
        bytes.extend_from_slice(&word.to_le_bytes());
    }
    scores.iter().for_each(|score| bytes.extend_from_slice(&score.to_le_bytes()));
    supports.iter().for_each(|support| bytes.extend_from_slice(&support.to_le_bytes()));
    Ok(bytes)
}

/// Decodes a neighbours file of [`encode_neighbours`] for a catalogue of
/// `items` items, checking every count, offset and row.
pub fn decode_neighbours(bytes: &[u8], items: usize) -> Result<Vec<Vec<NeighbourRow>>, String> {
    let word = |index: usize| bytes.get(index * 4..index * 4 + 4).map(|word| u32::from_le_bytes([word[0], word[1], word[2], word[3]]));
    if bytes.get(..4) != Some(NEIGHBOURS_MAGIC.as_slice()) {
        return Err("does not start with the neighbours magic SRNB".into());
    }
    match word(1) {
        Some(NEIGHBOURS_LAYOUT) => {}
        Some(layout) => return Err(format!("layout version {layout} is not {NEIGHBOURS_LAYOUT}")),
        None => return Err("the header is cut short".into()),
    }
    let (Some(stored_items), Some(entries)) = (word(2), word(3)) else { return Err("the header is cut short".into()) };
    let (stored_items, entries) = (stored_items as usize, entries as usize);
    if stored_items != items {
        return Err(format!("lists {stored_items} items, the catalogue has {items}"));
    }
    let expected = 4 * (4 + items + 1 + 3 * entries);
    if bytes.len() != expected {
        return Err(format!("{} bytes where {items} items and {entries} entries take {expected}", bytes.len()));
    }

    let offsets_at = 4;
    let targets_at = offsets_at + items + 1;
    let scores_at = targets_at + entries;
    let supports_at = scores_at + entries;
    let mut neighbours = Vec::with_capacity(items);
    let mut start = 0usize;
    for row in 0..items {
        let end = word(offsets_at + row + 1).unwrap_or_default() as usize;
        if end < start || end > entries {
            return Err(format!("offset {end} of item row {row} is out of order or past {entries} entries"));
        }
        let mut list = Vec::with_capacity(end - start);
        for entry in start..end {
            let target = word(targets_at + entry).unwrap_or_default();
            let score = f32::from_bits(word(scores_at + entry).unwrap_or_default());
            let support = word(supports_at + entry).unwrap_or_default();
            if target as usize >= items || !score.is_finite() {
                return Err(format!("entry {entry} of item row {row} has row {target} and score {score}"));
            }
            let kind = if support & TITLE_BIT != 0 { NeighbourKind::Title } else { NeighbourKind::CoPurchase };
            list.push(NeighbourRow { row: target, score, kind });
        }
        neighbours.push(list);
        start = end;
    }
    if word(offsets_at) != Some(0) || start != entries {
        return Err(format!("offsets do not run from 0 to the {entries} entries"));
    }
    Ok(neighbours)
}

/// Returns the 1/3 and 2/3 quantiles of the prices, or zeros when there are none.
pub fn price_terciles(prices: impl Iterator<Item = f64>) -> [f64; 2] {
    let mut prices: Vec<f64> = prices.filter(|price| price.is_finite()).collect();
    if prices.is_empty() {
        return [0.0, 0.0];
    }
    prices.sort_by(f64::total_cmp);
    let at = |fraction: f64| prices[((prices.len() - 1) as f64 * fraction).round() as usize];
    [at(1.0 / 3.0), at(2.0 / 3.0)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(item_id: &str) -> CatalogueItem {
        CatalogueItem { item_id: item_id.into(), title: format!("TITLE {item_id}"), price: 1.0, buyers: 2, recent_buyers: 1 }
    }

    fn neighbour(item_id: &str, score: f32, support: u32, kind: NeighbourKind) -> Neighbour {
        Neighbour { item_id: item_id.into(), score, support, kind }
    }

    fn sample() -> (Vec<CatalogueItem>, FxHashMap<String, Vec<Neighbour>>) {
        let catalogue = vec![item("A"), item("B"), item("C")];
        let mut neighbours = FxHashMap::default();
        neighbours.insert(
            "A".to_string(),
            vec![neighbour("B", 0.5, 7, NeighbourKind::CoPurchase), neighbour("C", 0.25, 2, NeighbourKind::CoPurchase)],
        );
        neighbours.insert("C".to_string(), vec![neighbour("A", 0.75, 0, NeighbourKind::Title)]);
        (catalogue, neighbours)
    }

    #[test]
    fn neighbours_round_trip_by_row() {
        let (catalogue, neighbours) = sample();
        let bytes = encode_neighbours(&catalogue, &neighbours).unwrap();
        let rows = decode_neighbours(&bytes, catalogue.len()).unwrap();

        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[0],
            vec![
                NeighbourRow { row: 1, score: 0.5, kind: NeighbourKind::CoPurchase },
                NeighbourRow { row: 2, score: 0.25, kind: NeighbourKind::CoPurchase },
            ]
        );
        assert!(rows[1].is_empty());
        assert_eq!(rows[2], vec![NeighbourRow { row: 0, score: 0.75, kind: NeighbourKind::Title }]);
    }

    #[test]
    fn decoded_rows_serve_like_ids() {
        let (catalogue, neighbours) = sample();
        let bytes = encode_neighbours(&catalogue, &neighbours).unwrap();
        let from_rows = ModelData::from_neighbour_rows(catalogue.clone(), Popularity::default(), decode_neighbours(&bytes, 3).unwrap());
        let from_ids = ModelData::new(catalogue, Popularity::default(), neighbours);

        for item_id in ["A", "B", "C"] {
            let row = from_ids.row(item_id).unwrap();
            assert_eq!(from_rows.row(item_id), Some(row));
            assert_eq!(from_rows.neighbours_at(row), from_ids.neighbours_at(row));
        }
    }

    #[test]
    fn neighbour_outside_catalogue_is_rejected() {
        let (catalogue, mut neighbours) = sample();
        neighbours.get_mut("A").unwrap().push(neighbour("Z", 0.1, 1, NeighbourKind::CoPurchase));
        let error = encode_neighbours(&catalogue, &neighbours).unwrap_err();
        assert!(error.contains("neighbour Z of item A"), "{error}");
    }

    #[test]
    fn damaged_neighbour_files_are_rejected() {
        let (catalogue, neighbours) = sample();
        let bytes = encode_neighbours(&catalogue, &neighbours).unwrap();
        let mut bad_magic = bytes.clone();
        bad_magic[0] = b'X';
        let mut bad_row = bytes.clone();
        // The first neighbour row follows the 4 header words and the 4 offsets.
        bad_row[32..36].copy_from_slice(&9u32.to_le_bytes());
        let mut bad_offset = bytes.clone();
        bad_offset[20..24].copy_from_slice(&99u32.to_le_bytes());

        let cases: [(&str, &[u8], usize, &str); 6] = [
            ("empty", &[], 3, "magic"),
            ("bad magic", &bad_magic, 3, "magic"),
            ("cut short", &bytes[..bytes.len() - 1], 3, "bytes where"),
            ("other catalogue", &bytes, 4, "the catalogue has 4"),
            ("row past the catalogue", &bad_row, 3, "has row 9"),
            ("offset past the entries", &bad_offset, 3, "offset 99"),
        ];
        for (case, bytes, items, expected) in cases {
            let error = decode_neighbours(bytes, items).unwrap_err();
            assert!(error.contains(expected), "{case}: {error}");
        }
    }
}

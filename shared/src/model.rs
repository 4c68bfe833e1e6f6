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
    /// Item-to-item neighbours as a JSON object keyed by item id.
    pub const NEIGHBOURS: &str = "neighbours.json";
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

/// Everything candidate generation, feature building and profiles read from a model version.
#[derive(Debug, Clone, Default)]
pub struct ModelData {
    pub catalogue: FxHashMap<String, CatalogueItem>,
    pub popularity: Popularity,
    pub neighbours: FxHashMap<String, Vec<Neighbour>>,
    /// Inverse document frequency of title terms over the catalogue.
    pub term_idf: FxHashMap<String, f32>,
    pub price_bands: [f64; 2],
    pub embeddings: Option<ItemEmbeddings>,
}

impl ModelData {
    /// Builds the lookup tables from the artifact contents.
    pub fn new(catalogue: Vec<CatalogueItem>, popularity: Popularity, neighbours: FxHashMap<String, Vec<Neighbour>>) -> Self {
        let term_idf = crate::preferences::title_term_idf(catalogue.iter().map(|item| item.title.as_str()));
        let price_bands = price_terciles(catalogue.iter().map(|item| item.price));
        let catalogue = catalogue.into_iter().map(|item| (item.item_id.clone(), item)).collect();
        ModelData { catalogue, popularity, neighbours, term_idf, price_bands, embeddings: None }
    }

    /// Adds item embeddings.
    pub fn with_embeddings(mut self, embeddings: ItemEmbeddings) -> Self {
        self.embeddings = Some(embeddings);
        self
    }

    /// Returns the title of an item, or an empty string for an unknown item.
    pub fn title(&self, item_id: &str) -> &str {
        self.catalogue.get(item_id).map_or("", |item| item.title.as_str())
    }
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

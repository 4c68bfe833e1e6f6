//! Publishing a trained model version: artifacts to S3, shop data to DynamoDB,
//! then one conditional write that makes the version active.

use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use rustc_hash::FxHashMap;

use crate::artifacts::{sha256_hex, ArtifactStore};
use crate::error::{Error, Result};
use crate::model::{artifact_key, encode_neighbours, files, EmbeddingContract, Manifest};
use crate::store::{ActiveModel, DynamoStore, ItemRecord, NeighbourRecord};
use crate::train::onnx::{contract, export_mlp};
use crate::train::{Progress, TrainOptions, TrainedModel};

/// Summary of a publish.
#[derive(Debug, Clone)]
pub struct PublishReport {
    pub model_version: String,
    pub previous_version: Option<String>,
    pub manifest_key: String,
    pub items_written: usize,
    pub profiles_written: usize,
    pub step_times: Vec<(String, Duration)>,
}

/// Builds a model version id from the publish time, to the millisecond, and a
/// digest of the content, so ids sort by time and two publishes differ.
pub fn new_model_version(content_digest: &str) -> String {
    format!("{}-{}", Utc::now().format("%Y%m%dT%H%M%S%3fZ"), &content_digest[..8.min(content_digest.len())])
}

/// Value of [`EmbeddingContract::dtype`] for the files this module writes.
pub const EMBEDDING_DTYPE: &str = "float32-le";

fn to_le_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|value| value.to_le_bytes()).collect()
}

fn to_json(value: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec(value).expect("artifact types serialise to JSON")
}

/// Publishes a trained model and makes it the active version.
///
/// Nothing becomes visible to the functions before the final conditional write,
/// and that write fails with a conflict if another publish switched the active
/// version since this one started.
pub async fn publish(
    trained: &TrainedModel,
    options: &TrainOptions,
    store: &DynamoStore,
    artifacts: &ArtifactStore,
    progress: &mut dyn Progress,
) -> Result<PublishReport> {
    let mut step_times = Vec::new();
    let previous_version = store.active_model().await?.map(|active| active.model_version);

    progress.started("upload artifacts");
    let started = Instant::now();
    let catalogue = to_json(&trained.items.catalogue);
    let popularity = to_json(&trained.items.popularity);
    let neighbours = encode_neighbours(&trained.items.catalogue, &trained.items.neighbours).map_err(Error::Training)?;
    let embeddings = &trained.embeddings;
    let item_vectors = to_le_bytes(&embeddings.items);
    let user_vectors = to_le_bytes(&embeddings.users);
    let user_ids = to_json(&embeddings.user_ids);
    let content_digest = sha256_hex(&[catalogue.as_slice(), &neighbours, &item_vectors, &to_json(&trained.ranker)].concat());
    let model_version = new_model_version(&content_digest);
    let ranker = export_mlp(&trained.ranker, &model_version)?;

    let listed = artifacts
        .put_version_files(
            &model_version,
            vec![
                (files::CATALOGUE, catalogue),
                (files::POPULARITY, popularity),
                (files::NEIGHBOURS, neighbours),
                (files::RANKER, ranker),
                (files::ITEM_EMBEDDINGS, item_vectors),
                (files::USER_EMBEDDINGS, user_vectors),
                (files::USER_IDS, user_ids),
            ],
        )
        .await?;
    let manifest = Manifest {
        model_version: model_version.clone(),
        created_at: Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
        data: trained.data.clone(),
        neighbours_per_item: options.neighbours.per_item,
        shrinkage: options.neighbours.shrinkage,
        price_bands: crate::model::price_terciles(trained.items.catalogue.iter().map(|item| item.price)),
        ranker: contract(trained.ranker_report.clone()),
        embeddings: Some(EmbeddingContract {
            item_file: files::ITEM_EMBEDDINGS.to_string(),
            user_file: files::USER_EMBEDDINGS.to_string(),
            user_ids_file: files::USER_IDS.to_string(),
            dtype: EMBEDDING_DTYPE.to_string(),
            settings: embeddings.options.settings,
            iterations: embeddings.options.iterations,
            items: embeddings.item_ids.len(),
            users: embeddings.user_ids.len(),
        }),
        files: listed,
    };
    let manifest_bytes = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
    let manifest_sha256 = sha256_hex(&manifest_bytes);
    let manifest_key = artifact_key(&model_version, files::MANIFEST);
    artifacts.put(&manifest_key, manifest_bytes, "application/json").await?;
    let elapsed = started.elapsed();
    progress.finished("upload artifacts", elapsed, &format!("s3://{}/{}", artifacts.bucket(), manifest_key));
    step_times.push(("upload artifacts".to_string(), elapsed));

    progress.started("write items");
    let started = Instant::now();
    let titles: FxHashMap<&str, &str> = trained.items.catalogue.iter().map(|item| (item.item_id.as_str(), item.title.as_str())).collect();
    let items: Vec<ItemRecord> = trained
        .items
        .catalogue
        .iter()
        .map(|item| ItemRecord {
            model_version: model_version.clone(),
            item_id: item.item_id.clone(),
            title: item.title.clone(),
            price: item.price,
            buyers: item.buyers,
            recent_buyers: item.recent_buyers,
            neighbours: trained
                .items
                .neighbours
                .get(&item.item_id)
                .map(|list| {
                    list.iter()
                        .map(|neighbour| NeighbourRecord {
                            item_id: neighbour.item_id.clone(),
                            title: titles.get(neighbour.item_id.as_str()).copied().unwrap_or_default().to_string(),
                            score: neighbour.score,
                            support: neighbour.support,
                            kind: neighbour.kind,
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect();
    store.put_items(&items).await?;
    let elapsed = started.elapsed();
    progress.finished("write items", elapsed, &format!("{} items to {}", items.len(), store.tables().items));
    step_times.push(("write items".to_string(), elapsed));

    progress.started("write profiles");
    let started = Instant::now();
    store.put_profiles(&model_version, &trained.profiles).await?;
    let elapsed = started.elapsed();
    progress.finished("write profiles", elapsed, &format!("{} profiles to {}", trained.profiles.len(), store.tables().profiles));
    step_times.push(("write profiles".to_string(), elapsed));

    progress.started("activate");
    let started = Instant::now();
    let active = ActiveModel {
        model_version: model_version.clone(),
        manifest_key: manifest_key.clone(),
        manifest_sha256,
        published_at: Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
    };
    store.switch_active_model(&active, previous_version.as_deref()).await?;
    let elapsed = started.elapsed();
    let summary = match &previous_version {
        Some(previous) => format!("{model_version} replaces {previous}"),
        None => format!("{model_version} is the first active version"),
    };
    progress.finished("activate", elapsed, &summary);
    step_times.push(("activate".to_string(), elapsed));

    Ok(PublishReport {
        model_version,
        previous_version,
        manifest_key,
        items_written: items.len(),
        profiles_written: trained.profiles.len(),
        step_times,
    })
}

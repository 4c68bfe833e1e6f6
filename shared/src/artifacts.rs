//! Model artifacts in S3: publishing a version folder with its manifest, and
//! loading a version with every file checked against the manifest.

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use sha2::{Digest, Sha256};

use crate::embeddings::ItemEmbeddings;
use crate::error::{Error, Result};
use crate::model::{artifact_key, decode_neighbours, files, CatalogueItem, Manifest, ManifestFile, ModelData, Popularity};
use crate::publish::EMBEDDING_DTYPE;
use crate::ranker::Ranker;
use crate::store::ActiveModel;

/// Returns the lowercase hex sha256 of the bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Parts of a model version that a function loads into memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BundleParts {
    /// Load the neighbours of every item.
    pub neighbours: bool,
    /// Load the ONNX ranker.
    pub ranker: bool,
    /// Load the item embeddings.
    pub embeddings: bool,
}

/// One model version loaded into memory.
#[derive(Debug)]
pub struct ModelBundle {
    pub manifest: Manifest,
    pub data: ModelData,
    pub ranker: Option<Ranker>,
}

impl ModelBundle {
    /// Returns the model version.
    pub fn model_version(&self) -> &str {
        &self.manifest.model_version
    }
}

/// S3 bucket of model artifacts.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    client: Client,
    bucket: String,
}

impl ArtifactStore {
    /// Wraps a client and the bucket name.
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        ArtifactStore { client, bucket: bucket.into() }
    }

    /// Returns the bucket name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Uploads one object.
    pub async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<()> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|error| Error::S3 {
                operation: "PutObject",
                bucket: self.bucket.clone(),
                key: key.to_string(),
                message: DisplayErrorContext(&error).to_string(),
            })?;
        Ok(())
    }

    /// Downloads one object.
    pub async fn get(&self, key: &str) -> Result<Vec<u8>> {
        let s3_error = |message: String| Error::S3 { operation: "GetObject", bucket: self.bucket.clone(), key: key.to_string(), message };
        let output = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|error| s3_error(DisplayErrorContext(&error).to_string()))?;
        let body = output.body.collect().await.map_err(|error| s3_error(format!("reading the body failed: {error}")))?;
        Ok(body.into_bytes().to_vec())
    }

    /// Uploads the files of a model version and returns their manifest entries.
    pub async fn put_version_files(&self, model_version: &str, artifacts: Vec<(&str, Vec<u8>)>) -> Result<Vec<ManifestFile>> {
        let mut listed = Vec::with_capacity(artifacts.len());
        for (name, bytes) in artifacts {
            let key = artifact_key(model_version, name);
            let entry = ManifestFile { name: name.to_string(), key: key.clone(), sha256: sha256_hex(&bytes), size: bytes.len() as u64 };
            let content_type = if name.ends_with(".json") { "application/json" } else { "application/octet-stream" };
            self.put(&key, bytes, content_type).await?;
            listed.push(entry);
        }
        Ok(listed)
    }

    async fn get_verified(&self, manifest: &Manifest, name: &str) -> Result<Vec<u8>> {
        let invalid = |key: &str, reason: String| Error::InvalidArtifact {
            model_version: manifest.model_version.clone(),
            key: key.to_string(),
            reason,
        };
        let file = manifest.file(name).ok_or_else(|| invalid(name, "not listed in the manifest".into()))?;
        let bytes = self.get(&file.key).await?;
        if bytes.len() as u64 != file.size {
            return Err(invalid(&file.key, format!("size is {} bytes, the manifest says {}", bytes.len(), file.size)));
        }
        let sha256 = sha256_hex(&bytes);
        if sha256 != file.sha256 {
            return Err(invalid(&file.key, format!("sha256 is {sha256}, the manifest says {}", file.sha256)));
        }
        Ok(bytes)
    }

    /// Downloads a listed file as [`ArtifactStore::get_verified`] does, or nothing without a name.
    async fn get_verified_if(&self, manifest: &Manifest, name: Option<&str>) -> Result<Option<Vec<u8>>> {
        match name {
            Some(name) => self.get_verified(manifest, name).await.map(Some),
            None => Ok(None),
        }
    }

    /// Loads the active model version, checking the manifest and every file read.
    pub async fn load_bundle(&self, active: &ActiveModel, parts: BundleParts) -> Result<ModelBundle> {
        let invalid = |key: &str, reason: String| Error::InvalidArtifact {
            model_version: active.model_version.clone(),
            key: key.to_string(),
            reason,
        };
        let manifest_bytes = self.get(&active.manifest_key).await?;
        let manifest_sha256 = sha256_hex(&manifest_bytes);
        if manifest_sha256 != active.manifest_sha256 {
            return Err(invalid(
                &active.manifest_key,
                format!("sha256 is {manifest_sha256}, the active model record says {}", active.manifest_sha256),
            ));
        }
        let manifest: Manifest =
            serde_json::from_slice(&manifest_bytes).map_err(|error| invalid(&active.manifest_key, error.to_string()))?;
        if manifest.model_version != active.model_version {
            return Err(invalid(&active.manifest_key, format!("names model version {}", manifest.model_version)));
        }

        let parse_error = |name: &str, error: serde_json::Error| invalid(&artifact_key(&manifest.model_version, name), error.to_string());
        let embedding_file = manifest.embeddings.as_ref().map(|contract| contract.item_file.as_str());
        // The files are independent, so they download at once.
        let (catalogue_bytes, popularity_bytes, neighbours_bytes, embedding_bytes, ranker_bytes) = tokio::try_join!(
            self.get_verified(&manifest, files::CATALOGUE),
            self.get_verified(&manifest, files::POPULARITY),
            self.get_verified_if(&manifest, Some(files::NEIGHBOURS).filter(|_| parts.neighbours)),
            self.get_verified_if(&manifest, embedding_file.filter(|_| parts.embeddings)),
            self.get_verified_if(&manifest, Some(manifest.ranker.file.as_str()).filter(|_| parts.ranker)),
        )?;

        let catalogue: Vec<CatalogueItem> =
            serde_json::from_slice(&catalogue_bytes).map_err(|error| parse_error(files::CATALOGUE, error))?;
        let popularity: Popularity = serde_json::from_slice(&popularity_bytes).map_err(|error| parse_error(files::POPULARITY, error))?;
        let neighbours = match neighbours_bytes {
            Some(bytes) => decode_neighbours(&bytes, catalogue.len())
                .map_err(|reason| invalid(&artifact_key(&manifest.model_version, files::NEIGHBOURS), reason))?,
            None => Vec::new(),
        };
        let embeddings = match (&manifest.embeddings, embedding_bytes) {
            (Some(contract), Some(bytes)) => {
                let key = artifact_key(&manifest.model_version, &contract.item_file);
                if contract.dtype != EMBEDDING_DTYPE || contract.items != catalogue.len() {
                    return Err(invalid(
                        &key,
                        format!(
                            "{} rows of {} do not match the {} catalogue items of {EMBEDDING_DTYPE}",
                            contract.items,
                            contract.dtype,
                            catalogue.len()
                        ),
                    ));
                }
                let item_ids = catalogue.iter().map(|item| item.item_id.clone()).collect();
                Some(ItemEmbeddings::from_le_bytes(item_ids, &bytes, contract.settings).map_err(|error| invalid(&key, error.to_string()))?)
            }
            _ => None,
        };
        let ranker = match ranker_bytes {
            Some(bytes) => Some(Ranker::load(&bytes, &manifest.ranker)?),
            None => None,
        };

        let mut data = ModelData::from_neighbour_rows(catalogue, popularity, neighbours);
        if let Some(embeddings) = embeddings {
            data = data.with_embeddings(embeddings);
        }
        Ok(ModelBundle { data, manifest, ranker })
    }
}

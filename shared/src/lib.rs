//! Domain logic of shoprec, a serverless recommendation engine for online shops:
//! data cleaning and training, the artifact format, DynamoDB and S3 access,
//! recommendation and preference logic, and the HTTP handlers that the Lambda
//! functions wrap.

pub mod artifacts;
pub mod batch;
pub mod config;
pub mod embeddings;
pub mod error;
pub mod handlers;
pub mod http;
pub mod ingest;
pub mod live_profile;
pub mod metrics;
pub mod model;
pub mod model_cache;
pub mod preferences;
pub mod publish;
pub mod ranker;
pub mod recommend;
pub mod store;
pub mod stream;
pub mod telemetry;
pub mod template;
pub mod train;

pub use error::{Error, Result};

//! Settings read from the environment and the AWS clients built from them.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};

use crate::error::{Error, Result};
use crate::recommend::CandidateLimits;
use crate::store::TableNames;

/// Function settings from environment variables.
#[derive(Debug, Clone)]
pub struct Config {
    pub tables: TableNames,
    pub artifact_bucket: String,
    /// How long a loaded model version serves before the active version is checked again.
    pub model_refresh: Duration,
    /// JWT claim that must equal the path's user id on user routes, if any.
    pub user_id_claim: Option<String>,
    /// Candidates each source contributes to a recommendations request.
    pub candidate_limits: CandidateLimits,
}

/// Largest number of candidates one source may contribute.
pub const MAX_CANDIDATES_PER_SOURCE: usize = 5_000;

/// Reads an optional whole number from the environment, or returns the default.
fn count_or(name: &str, default: usize, max: usize) -> Result<usize> {
    let Ok(text) = std::env::var(name) else { return Ok(default) };
    let digits = text.trim();
    match digits.parse::<usize>() {
        Ok(count) if count <= max && digits.bytes().all(|byte| byte.is_ascii_digit()) => Ok(count),
        _ => Err(Error::Config { name: name.to_string(), reason: format!("{text:?} is not a whole number from 0 to {max}") }),
    }
}

impl CandidateLimits {
    /// Reads `CANDIDATES_NEIGHBOURS`, `CANDIDATES_EMBEDDING`,
    /// `CANDIDATES_SIMILAR_TO_RECENT` and `CANDIDATES_POPULAR`, each optional,
    /// with the defaults of [`CandidateLimits::default`].
    pub fn from_env() -> Result<Self> {
        let defaults = CandidateLimits::default();
        let max = MAX_CANDIDATES_PER_SOURCE;
        Ok(CandidateLimits {
            neighbours: count_or("CANDIDATES_NEIGHBOURS", defaults.neighbours, max)?,
            embedding: count_or("CANDIDATES_EMBEDDING", defaults.embedding, max)?,
            similar_to_recent: count_or("CANDIDATES_SIMILAR_TO_RECENT", defaults.similar_to_recent, max)?,
            popular: count_or("CANDIDATES_POPULAR", defaults.popular, max)?,
        })
    }
}

fn required(name: &str) -> Result<String> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => Ok(value),
        _ => Err(Error::Config {
            name: name.to_string(),
            reason: "missing or empty: set it to the resource name (template.yaml sets it on deployed functions)".into(),
        }),
    }
}

/// Default refresh interval of the model cache, in seconds.
pub const DEFAULT_MODEL_REFRESH_SECONDS: u64 = 60;

impl Config {
    /// Reads `ITEMS_TABLE`, `PROFILES_TABLE`, `EVENTS_TABLE`, `MODEL_STATE_TABLE`,
    /// `LIVE_PROFILES_TABLE`, the optional `USER_ID_CLAIM`,
    /// `ARTIFACT_BUCKET`, the optional `MODEL_REFRESH_SECONDS` and the
    /// optional candidate limits of [`CandidateLimits::from_env`].
    pub fn from_env() -> Result<Self> {
        let refresh = match std::env::var("MODEL_REFRESH_SECONDS") {
            Ok(text) => text.parse::<u64>().map_err(|error| Error::Config {
                name: "MODEL_REFRESH_SECONDS".into(),
                reason: format!("{text:?} is not a whole number of seconds: {error}"),
            })?,
            Err(_) => DEFAULT_MODEL_REFRESH_SECONDS,
        };
        Ok(Config {
            tables: TableNames {
                items: required("ITEMS_TABLE")?,
                profiles: required("PROFILES_TABLE")?,
                events: required("EVENTS_TABLE")?,
                model_state: required("MODEL_STATE_TABLE")?,
                live_profiles: required("LIVE_PROFILES_TABLE")?,
            },
            artifact_bucket: required("ARTIFACT_BUCKET")?,
            model_refresh: Duration::from_secs(refresh),
            user_id_claim: std::env::var("USER_ID_CLAIM").ok().filter(|claim| !claim.trim().is_empty()),
            candidate_limits: CandidateLimits::from_env()?,
        })
    }
}

/// Loads the SDK configuration with bounded timeouts and retries, so a slow
/// dependency fails a request in seconds instead of holding the function until
/// its Lambda timeout. Endpoints come from the standard `AWS_ENDPOINT_URL_*` variables.
pub async fn load_sdk_config() -> SdkConfig {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(Duration::from_secs(2))
        .operation_timeout(Duration::from_secs(5))
        .build();
    load_with_timeouts(timeouts).await
}

/// Loads the SDK configuration for offline jobs such as publishing and batch
/// recommendations, whose large reads and writes may take longer than a request may.
pub async fn load_job_sdk_config() -> SdkConfig {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(Duration::from_secs(30))
        .operation_timeout(Duration::from_secs(120))
        .build();
    load_with_timeouts(timeouts).await
}

async fn load_with_timeouts(timeouts: TimeoutConfig) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts)
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .load()
        .await
}

/// Builds the DynamoDB client.
pub fn dynamodb_client(sdk_config: &SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(sdk_config)
}

/// Builds the S3 client; an endpoint override (an emulator) gets path-style addressing.
pub fn s3_client(sdk_config: &SdkConfig) -> aws_sdk_s3::Client {
    let path_style = std::env::var_os("AWS_ENDPOINT_URL_S3").is_some() || std::env::var_os("AWS_ENDPOINT_URL").is_some();
    let config = aws_sdk_s3::config::Builder::from(sdk_config).force_path_style(path_style).build();
    aws_sdk_s3::Client::from_conf(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Each case sets its own variable, so tests running at once do not meet.
    #[test]
    fn count_reads_whole_numbers_up_to_max() {
        std::env::set_var("SHOPREC_TEST_COUNT_SET", " 700 ");
        assert_eq!(count_or("SHOPREC_TEST_COUNT_SET", 5, 5_000).unwrap(), 700);
        assert_eq!(count_or("SHOPREC_TEST_COUNT_UNSET", 5, 5_000).unwrap(), 5);
    }

    #[test]
    fn count_rejects_bad_values_by_name() {
        for (name, value) in
            [("SHOPREC_TEST_COUNT_NEGATIVE", "-1"), ("SHOPREC_TEST_COUNT_TEXT", "many"), ("SHOPREC_TEST_COUNT_HUGE", "5001")]
        {
            std::env::set_var(name, value);
            let error = count_or(name, 5, 5_000).unwrap_err().to_string();
            assert!(error.contains(name), "{error}");
            assert!(error.contains(value), "{error}");
        }
    }
}

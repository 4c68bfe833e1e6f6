//! HTTP handlers of the three functions over the domain modules.
//!
//! Each handler matches the route, does the work and maps every error to a
//! problem response, so every request gets a response.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use lambda_http::http::StatusCode;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use metrics_cloudwatch_embedded::Collector;
use serde::Serialize;

use crate::artifacts::{ArtifactStore, BundleParts, ModelBundle};
use crate::config::{dynamodb_client, load_sdk_config, s3_client, Config};
use crate::error::{Error, Result};
use crate::http::{json_body, json_response, parse_limit, query_parameter, route, Route};
use crate::live_profile::LiveProfile;
use crate::metrics::{flush_request_metrics, init_metrics, names, peak_rss_mebibytes, CountingScorer};
use crate::model_cache::ModelCache;
use crate::preferences::{build_preferences, parse_events, user_history, TrainedProfile};
use crate::recommend::{serve, CandidateLimits, CandidateSource, Recommendation, Served};
use crate::store::{DynamoStore, ItemRecord, NeighbourRecord};

/// Items kept in the similarity function's item cache.
const ITEM_CACHE_CAPACITY: u64 = 10_000;

/// Purchased items, summed over the cached trained profiles, that the
/// profile cache keeps. At an estimated 100 bytes each, that is 50 MB at most.
const PROFILE_CACHE_ITEMS: u64 = 500_000;

/// Time after which an unread trained profile leaves the cache.
const PROFILE_CACHE_IDLE: Duration = Duration::from_secs(15 * 60);

/// Which function a state serves; decides what the model cache loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Similarity,
    Preferences,
    Inference,
}

impl Function {
    /// Returns the function's name, as its crate and the metrics' `Function` dimension spell it.
    pub fn name(self) -> &'static str {
        match self {
            Function::Similarity => "similarity",
            Function::Preferences => "preferences",
            Function::Inference => "inference",
        }
    }

    fn bundle_parts(self) -> BundleParts {
        match self {
            Function::Similarity | Function::Preferences => BundleParts { neighbours: false, ranker: false, embeddings: false },
            Function::Inference => BundleParts { neighbours: true, ranker: true, embeddings: true },
        }
    }
}

/// State kept across warm invocations of a function.
pub struct AppState {
    pub function: Function,
    pub store: DynamoStore,
    pub models: ModelCache,
    /// Items with neighbours by (model version, item id).
    items: moka::future::Cache<(String, String), Arc<ItemRecord>>,
    /// Trained profiles by (model version, user id), None for a user without
    /// one. A version's profiles never change once it is active, so they
    /// stay valid until they leave the cache.
    profiles: moka::future::Cache<(String, String), Arc<Option<TrainedProfile>>>,
    pub candidate_limits: CandidateLimits,
    /// JWT claim that must equal the path's user id on user routes. None
    /// leaves user ids unchecked, as for callers signing with IAM.
    pub user_id_claim: Option<String>,
    /// EMF recorder that `handle` flushes to standard output after each
    /// request; None records nothing, as in most tests.
    pub metrics: Option<&'static Collector>,
}

/// Model version that served a request, attached to its response for the
/// metrics' `ModelVersion` dimension.
#[derive(Debug, Clone)]
struct ServedVersion(String);

/// Attaches the model version that produced a response.
fn with_version(mut response: Response<Body>, model_version: &str) -> Response<Body> {
    response.extensions_mut().insert(ServedVersion(model_version.to_string()));
    response
}

impl AppState {
    /// Builds the state from parts, for tests and tools.
    pub fn new(function: Function, store: DynamoStore, artifacts: ArtifactStore, model_refresh: Duration) -> Self {
        let models = ModelCache::new(store.clone(), artifacts, function.bundle_parts(), model_refresh);
        AppState {
            function,
            store,
            models,
            items: moka::future::Cache::builder()
                .max_capacity(ITEM_CACHE_CAPACITY)
                .time_to_live(model_refresh.max(Duration::from_secs(1)))
                .build(),
            profiles: moka::future::Cache::builder()
                .max_capacity(PROFILE_CACHE_ITEMS)
                .weigher(|_, profile: &Arc<Option<TrainedProfile>>| {
                    let items = profile.as_ref().as_ref().map_or(0, |profile| profile.purchases.len());
                    u32::try_from(items + 1).unwrap_or(u32::MAX)
                })
                .time_to_idle(PROFILE_CACHE_IDLE)
                .build(),
            candidate_limits: CandidateLimits::default(),
            user_id_claim: None,
            metrics: None,
        }
    }

    /// Builds the state from the environment and the default AWS configuration.
    ///
    /// It also loads the active model version, so that a cold start spends
    /// that time in the init phase and a provisioned instance serves its first
    /// request warm. When that load fails, the first request tries again.
    pub async fn from_env(function: Function) -> Result<Self> {
        let config = Config::from_env()?;
        let metrics = init_metrics(function.name())?;
        // Nothing below returns an error: a process that exits while this
        // thread is inside the ONNX Runtime library can crash instead.
        if function.bundle_parts().ranker {
            std::thread::spawn(|| {
                if let Err(error) = crate::ranker::prepare_runtime() {
                    tracing::error!(%error, "loading ONNX Runtime at start-up failed");
                }
            });
        }
        let sdk_config = load_sdk_config().await;
        let store = DynamoStore::new(dynamodb_client(&sdk_config), config.tables);
        let artifacts = ArtifactStore::new(s3_client(&sdk_config), config.artifact_bucket);
        let mut state = AppState::new(function, store, artifacts, config.model_refresh);
        state.user_id_claim = config.user_id_claim;
        state.candidate_limits = config.candidate_limits;
        state.metrics = Some(metrics);

        let started = Instant::now();
        match state.models.get().await {
            Ok(bundle) => tracing::info!(
                function = function.name(),
                model_version = bundle.model_version(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "model loaded at start-up"
            ),
            Err(error) => tracing::warn!(function = function.name(), %error, "model not loaded at start-up; the first request tries again"),
        }
        Ok(state)
    }
}

/// Handles one request of any route. Every error becomes a problem response, so the
/// function itself never returns an error to the Lambda runtime.
pub async fn handle(state: &AppState, request: Request) -> Response<Body> {
    let started = Instant::now();
    let request_id = request.lambda_context_ref().map(|context| context.request_id.clone()).unwrap_or_default();
    let method = request.method().to_string();
    let path = request.raw_http_path();
    let response = match dispatch(state, &request).await {
        Ok(response) => response,
        Err(error) => {
            let status = error.status();
            if status.is_server_error() {
                tracing::error!(%request_id, %method, %path, status = status.as_u16(), %error, "request failed");
            } else {
                let error = error.log_message();
                tracing::info!(%request_id, %method, %path, status = status.as_u16(), %error, "request rejected");
            }
            error.to_response()
        }
    };

    record_request(&response, started.elapsed());
    if let Some(collector) = state.metrics {
        if let Err(error) = flush_request_metrics(collector, &request_id, path, std::io::stdout().lock()) {
            tracing::warn!(%request_id, %error, "writing the request's metrics failed");
        }
    }
    response
}

/// Records the latency, status and memory metrics of one finished request.
fn record_request(response: &Response<Body>, elapsed: Duration) {
    let model_version = response.extensions().get::<ServedVersion>().map_or_else(|| "none".to_string(), |served| served.0.clone());
    metrics::histogram!(names::LATENCY, "ModelVersion" => model_version.clone()).record(elapsed.as_secs_f64() * 1_000.0);
    if response.status().is_server_error() {
        metrics::counter!(names::ERRORS, "ModelVersion" => model_version).increment(1);
    } else if response.status().is_client_error() {
        metrics::counter!(names::CLIENT_ERRORS, "ModelVersion" => model_version).increment(1);
    }
    if let Some(mebibytes) = peak_rss_mebibytes() {
        metrics::gauge!(names::PEAK_RSS).set(mebibytes);
    }
}

async fn dispatch(state: &AppState, request: &Request) -> Result<Response<Body>> {
    let route = route(request)?;
    let allowed = matches!(
        (&route, state.function),
        (Route::PopularItems | Route::SimilarItems { .. }, Function::Similarity)
            | (Route::Recommendations { .. }, Function::Inference)
            | (Route::PostEvents { .. } | Route::Preferences { .. }, Function::Preferences)
    );
    if !allowed {
        return Err(Error::RouteNotFound { method: request.method().to_string(), path: request.raw_http_path().to_string() });
    }
    if let Route::Recommendations { user_id } | Route::PostEvents { user_id } | Route::Preferences { user_id } = &route {
        authorize_user(state, request, user_id)?;
    }

    match route {
        Route::PopularItems => popular_items(state, request).await,
        Route::SimilarItems { item_id } => similar_items(state, request, &item_id).await,
        Route::Recommendations { user_id } => recommendations(state, request, &user_id).await,
        Route::PostEvents { user_id } => post_events(state, request, &user_id).await,
        Route::Preferences { user_id } => preferences(state, &user_id).await,
    }
}

/// Checks that the caller's JWT names the path's user in the configured claim.
/// API Gateway has verified the token's signature, issuer and audience before
/// the function runs, and passes its claims in the request context.
fn authorize_user(state: &AppState, request: &Request, user_id: &str) -> Result<()> {
    let Some(claim) = &state.user_id_claim else { return Ok(()) };
    let claims = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.authorizer.as_ref().and_then(|authorizer| authorizer.jwt.as_ref()),
        _ => None,
    }
    .map(|jwt| &jwt.claims);

    match claims.and_then(|claims| claims.get(claim)) {
        Some(value) if value == user_id => Ok(()),
        Some(_) => Err(Error::Forbidden { user_id: user_id.to_string(), claim: claim.clone(), found: "names another user".into() }),
        None => Err(Error::Forbidden { user_id: user_id.to_string(), claim: claim.clone(), found: "is missing".into() }),
    }
}

/// Body of `GET /items/{item_id}/similar`.
#[derive(Debug, Serialize)]
pub struct SimilarItemsResponse {
    pub item_id: String,
    pub title: String,
    pub model_version: String,
    pub neighbours: Vec<NeighbourRecord>,
}

async fn similar_items(state: &AppState, request: &Request, item_id: &str) -> Result<Response<Body>> {
    let limit = parse_limit(request)?;
    let bundle = state.models.get().await?;
    let model_version = bundle.model_version().to_string();

    let key = (model_version.clone(), item_id.to_string());
    let item = match state.items.get(&key).await {
        Some(item) => {
            metrics::counter!(names::CACHE_HITS, "ModelVersion" => model_version.clone()).increment(1);
            item
        }
        None => {
            metrics::counter!(names::CACHE_MISSES, "ModelVersion" => model_version.clone()).increment(1);
            let item = state
                .store
                .get_item(&model_version, item_id)
                .await?
                .ok_or_else(|| Error::ItemNotFound { item_id: item_id.to_string(), model_version: model_version.clone() })?;
            let item = Arc::new(item);
            state.items.insert(key, item.clone()).await;
            item
        }
    };

    tracing::info!(item_id, %model_version, neighbours = item.neighbours.len().min(limit), "served similar items");
    let response = json_response(
        StatusCode::OK,
        &SimilarItemsResponse {
            item_id: item.item_id.clone(),
            title: item.title.clone(),
            model_version: model_version.clone(),
            neighbours: item.neighbours.iter().take(limit).cloned().collect(),
        },
    );
    Ok(with_version(response, &model_version))
}

/// One entry of `GET /items/popular`.
#[derive(Debug, Serialize)]
pub struct PopularItem {
    pub item_id: String,
    pub title: String,
    pub buyers: u32,
    pub recent_buyers: u32,
}

/// Body of `GET /items/popular`.
#[derive(Debug, Serialize)]
pub struct PopularItemsResponse {
    pub model_version: String,
    /// "recent" or "all_time".
    pub window: &'static str,
    pub recent_days: u32,
    pub items: Vec<PopularItem>,
}

async fn popular_items(state: &AppState, request: &Request) -> Result<Response<Body>> {
    let limit = parse_limit(request)?;
    let window = match query_parameter(request, "window")?.as_deref() {
        None | Some("recent") => "recent",
        Some("all_time") => "all_time",
        Some(other) => return Err(Error::invalid("window", other, "must be recent or all_time")),
    };
    let bundle = state.models.get().await?;
    let data = &bundle.data;
    let list = if window == "recent" { &data.popularity().recent } else { &data.popularity().all_time };

    let items = list
        .iter()
        .take(limit)
        .map(|item_id| {
            let item = data.item(item_id);
            PopularItem {
                item_id: item_id.clone(),
                title: data.title(item_id).to_string(),
                buyers: item.map_or(0, |item| item.buyers),
                recent_buyers: item.map_or(0, |item| item.recent_buyers),
            }
        })
        .collect();
    let response = json_response(
        StatusCode::OK,
        &PopularItemsResponse {
            model_version: bundle.model_version().to_string(),
            window,
            recent_days: data.popularity().recent_days,
            items,
        },
    );
    Ok(with_version(response, bundle.model_version()))
}

/// Body of `GET /users/{user_id}/recommendations`.
#[derive(Debug, Serialize)]
pub struct RecommendationsResponse {
    pub user_id: String,
    pub model_version: String,
    /// True when the user has purchases in the trained model.
    pub known_user: bool,
    /// "popular" when the user has no history to rank from.
    pub fallback: Option<&'static str>,
    pub recommendations: Vec<Recommendation>,
}

/// Reads the user's trained profile of the bundle's version and the live
/// profile of their events, both at once.
async fn load_user(state: &AppState, bundle: &ModelBundle, user_id: &str) -> Result<(Arc<Option<TrainedProfile>>, LiveProfile)> {
    let (profile, live) = tokio::join!(trained_profile(state, bundle.model_version(), user_id), state.store.live_activity(user_id));
    Ok((profile?, live?))
}

/// Returns the user's trained profile of a model version from the cache, or
/// reads it and caches the result, also when the user has none.
async fn trained_profile(state: &AppState, model_version: &str, user_id: &str) -> Result<Arc<Option<TrainedProfile>>> {
    let key = (model_version.to_string(), user_id.to_string());
    if let Some(profile) = state.profiles.get(&key).await {
        metrics::counter!(names::CACHE_HITS, "ModelVersion" => model_version.to_string()).increment(1);
        return Ok(profile);
    }
    metrics::counter!(names::CACHE_MISSES, "ModelVersion" => model_version.to_string()).increment(1);
    let profile = Arc::new(state.store.get_profile(model_version, user_id).await?);
    state.profiles.insert(key, profile.clone()).await;
    Ok(profile)
}

async fn recommendations(state: &AppState, request: &Request, user_id: &str) -> Result<Response<Body>> {
    let limit = parse_limit(request)?;
    let bundle = state.models.get().await?;
    let (profile, live) = load_user(state, &bundle, user_id).await?;
    let profile = profile.as_ref().as_ref();
    let history = user_history(profile, &live);

    let ranker = bundle.ranker.as_ref().ok_or_else(|| Error::Ranker("this function loaded no ranker".into()))?;
    let scorer = CountingScorer::new(ranker);
    let Served { fallback, recommendations: ranked } = serve(&bundle.data, &history, &scorer, state.candidate_limits, limit)?;
    metrics::counter!(names::CANDIDATES_SCORED, "ModelVersion" => bundle.model_version().to_string()).increment(scorer.rows() as u64);
    if fallback.is_some() {
        metrics::counter!(names::FALLBACKS, "ModelVersion" => bundle.model_version().to_string()).increment(1);
    }

    let from_neighbours = ranked.iter().filter(|r| r.source == CandidateSource::Neighbours).count();
    let from_embedding = ranked.iter().filter(|r| r.source == CandidateSource::Embedding).count();
    tracing::info!(
        user_id,
        model_version = bundle.model_version(),
        known_user = profile.is_some(),
        events = live.events.total(),
        returned = ranked.len(),
        from_neighbours,
        from_embedding,
        fallback = fallback.unwrap_or("none"),
        "served recommendations"
    );
    let response = json_response(
        StatusCode::OK,
        &RecommendationsResponse {
            user_id: user_id.to_string(),
            model_version: bundle.model_version().to_string(),
            known_user: profile.is_some(),
            fallback,
            recommendations: ranked,
        },
    );
    Ok(with_version(response, bundle.model_version()))
}

/// Body of `POST /users/{user_id}/events`.
#[derive(Debug, Serialize)]
pub struct EventsResponse {
    pub user_id: String,
    /// Event ids stored by this request.
    pub stored: Vec<String>,
    /// Event ids that were already stored and were left unchanged.
    pub duplicates: Vec<String>,
}

async fn post_events(state: &AppState, request: &Request, user_id: &str) -> Result<Response<Body>> {
    let body = json_body(request)?;
    let events = parse_events(user_id, body, Utc::now())?;

    let results = futures::future::join_all(events.iter().map(|event| state.store.put_event(event))).await;
    let mut stored = Vec::new();
    let mut duplicates = Vec::new();
    let mut first_error = None;
    for (event, result) in events.iter().zip(results) {
        match result {
            Ok(true) => stored.push(event.event_id.clone()),
            Ok(false) => duplicates.push(event.event_id.clone()),
            Err(error) => {
                tracing::warn!(user_id, event_id = %event.event_id, %error, "storing event failed");
                first_error.get_or_insert(error);
            }
        }
    }
    // Stored events stay stored: the client resends the batch and the
    // idempotent writes turn the stored ones into duplicates.
    if let Some(error) = first_error {
        return Err(error);
    }

    tracing::info!(user_id, stored = stored.len(), duplicates = duplicates.len(), "stored events");
    let status = if stored.is_empty() { StatusCode::OK } else { StatusCode::CREATED };
    Ok(json_response(status, &EventsResponse { user_id: user_id.to_string(), stored, duplicates }))
}

async fn preferences(state: &AppState, user_id: &str) -> Result<Response<Body>> {
    let bundle = state.models.get().await?;
    let (profile, live) = load_user(state, &bundle, user_id).await?;
    let preferences = build_preferences(user_id, bundle.model_version(), &bundle.data, profile.as_ref().as_ref(), &live)?;
    tracing::info!(user_id, model_version = bundle.model_version(), events = live.events.total(), "served preferences");
    Ok(with_version(json_response(StatusCode::OK, &preferences), bundle.model_version()))
}

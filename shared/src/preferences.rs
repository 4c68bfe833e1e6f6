//! User events and the preference profile built from a user's purchases and events.

use chrono::{DateTime, SecondsFormat, Utc};
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
pub use crate::live_profile::EventCounts;
use crate::live_profile::LiveProfile;
use crate::model::ModelData;
use crate::recommend::{UserHistory, ADD_TO_CART_WEIGHT, VIEW_WEIGHT};

/// Largest number of events in one request; DynamoDB's BatchWriteItem takes 25 items.
pub const MAX_EVENTS_PER_REQUEST: usize = 25;

/// Longest accepted user, item or event id, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// Largest quantity accepted in one event.
pub const MAX_QUANTITY: u32 = 10_000;

/// How far in the future an event time stamp may lie, to allow for client clock skew.
pub const MAX_FUTURE_SKEW_SECONDS: i64 = 300;

/// Kind of user event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    View,
    AddToCart,
    Purchase,
}

/// One purchase summary of a trained profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PurchaseSummary {
    pub item_id: String,
    pub quantity: f64,
    /// Distinct orders (baskets) that contained the item.
    pub orders: u32,
    /// Unix seconds of the last purchase.
    pub last_at: i64,
}

/// A user's purchase history as of training, stored per model version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainedProfile {
    pub user_id: String,
    pub purchases: Vec<PurchaseSummary>,
    /// Unix seconds of each distinct order, ascending.
    pub order_times: Vec<i64>,
    pub first_at: i64,
    pub last_at: i64,
}

/// One event as stored in the events table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub user_id: String,
    pub event_id: String,
    pub event_type: EventType,
    pub item_id: String,
    pub quantity: u32,
    /// Unix seconds when the event happened, as sent by the client.
    pub timestamp: i64,
    /// Unix seconds when the event was stored.
    pub received_at: i64,
}

/// Checks an id from a path or body: 1 to [`MAX_ID_LEN`] bytes, not only white
/// space, and without control characters.
pub fn validate_id(field: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::invalid(field, value, "must not be empty or only white space"));
    }
    if value.len() > MAX_ID_LEN {
        let prefix: String = value.chars().take(32).collect();
        return Err(Error::invalid(field, format!("{prefix}…"), format!("must be at most {MAX_ID_LEN} bytes, got {}", value.len())));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(field, value, "must not contain control characters"));
    }
    Ok(())
}

/// Fields an event object may carry.
const EVENT_FIELDS: [&str; 5] = ["event_id", "type", "item_id", "quantity", "timestamp"];

/// Earliest accepted event time stamp, 1990-01-01T00:00:00Z, as unix seconds:
/// older times are typing errors, not shop history.
pub const MIN_EVENT_TIMESTAMP: i64 = 631_152_000;

/// Parses and validates an events request body: one event object, or
/// `{"events": [...]}` with 1 to [`MAX_EVENTS_PER_REQUEST`] events.
///
/// Every event is checked before anything is stored, so a bad event rejects the
/// whole request. Field names in errors are `type` for a single event and
/// `events[2].type` in a batch.
pub fn parse_events(user_id: &str, body: &[u8], now: DateTime<Utc>) -> Result<Vec<StoredEvent>> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|error| Error::InvalidJson(error.to_string()))?;
    let serde_json::Value::Object(object) = value else {
        return Err(Error::InvalidJson("expected an event object or {\"events\": [...]}".into()));
    };

    if !object.contains_key("events") {
        let event = parse_event(user_id, "", object, now)?;
        return Ok(vec![event]);
    }
    if let Some(extra) = object.keys().find(|key| *key != "events") {
        return Err(Error::invalid(extra.as_str(), extra.as_str(), "is not a known field: a batch has only \"events\""));
    }
    let raw_events = match &object["events"] {
        serde_json::Value::Array(events) => events.clone(),
        other => return Err(Error::invalid("events", other.to_string(), "must be an array of event objects")),
    };
    if raw_events.is_empty() {
        return Err(Error::invalid("events", "[]", "must contain at least one event"));
    }
    if raw_events.len() > MAX_EVENTS_PER_REQUEST {
        return Err(Error::invalid(
            "events",
            format!("{} events", raw_events.len()),
            format!("must contain at most {MAX_EVENTS_PER_REQUEST} events"),
        ));
    }

    let mut seen_ids = FxHashSet::default();
    let mut events = Vec::with_capacity(raw_events.len());
    for (index, raw) in raw_events.into_iter().enumerate() {
        let prefix = format!("events[{index}].");
        let serde_json::Value::Object(object) = raw else {
            return Err(Error::invalid(format!("events[{index}]"), raw.to_string(), "must be an event object"));
        };
        let event = parse_event(user_id, &prefix, object, now)?;
        if !seen_ids.insert(event.event_id.clone()) {
            return Err(Error::invalid(format!("{prefix}event_id"), &event.event_id, "appears twice in the request"));
        }
        events.push(event);
    }
    Ok(events)
}

/// Returns a required string field, or an error naming the field.
fn string_field(object: &serde_json::Map<String, serde_json::Value>, prefix: &str, name: &str) -> Result<String> {
    match object.get(name) {
        Some(serde_json::Value::String(text)) => Ok(text.clone()),
        Some(other) => Err(Error::invalid(format!("{prefix}{name}"), other.to_string(), "must be a string")),
        None => Err(Error::invalid(format!("{prefix}{name}"), "", "is missing")),
    }
}

fn parse_event(user_id: &str, prefix: &str, object: serde_json::Map<String, serde_json::Value>, now: DateTime<Utc>) -> Result<StoredEvent> {
    let field = |name: &str| format!("{prefix}{name}");
    if let Some(unknown) = object.keys().find(|key| !EVENT_FIELDS.contains(&key.as_str())) {
        return Err(Error::invalid(
            field(unknown),
            unknown.as_str(),
            format!("is not a known field; known fields are {}", EVENT_FIELDS.join(", ")),
        ));
    }

    let event_id = string_field(&object, prefix, "event_id")?;
    validate_id(&field("event_id"), &event_id)?;
    let item_id = string_field(&object, prefix, "item_id")?;
    validate_id(&field("item_id"), &item_id)?;
    let event_type = string_field(&object, prefix, "type")?;

    let event_type = match event_type.as_str() {
        "view" => EventType::View,
        "add_to_cart" => EventType::AddToCart,
        "purchase" => EventType::Purchase,
        other => return Err(Error::invalid(field("type"), other, "must be one of view, add_to_cart, purchase")),
    };

    let quantity = match object.get("quantity") {
        None => 1,
        Some(value) => match value.as_u64() {
            Some(quantity) if (1..=MAX_QUANTITY as u64).contains(&quantity) => quantity as u32,
            _ => {
                return Err(Error::invalid(
                    field("quantity"),
                    value.to_string(),
                    format!("must be a whole number from 1 to {MAX_QUANTITY}"),
                ));
            }
        },
    };

    let timestamp = match object.get("timestamp") {
        None => now.timestamp(),
        Some(serde_json::Value::String(text)) => {
            let parsed = DateTime::parse_from_rfc3339(text).map_err(|error| {
                Error::invalid(field("timestamp"), text, format!("must be an RFC 3339 time stamp such as 2011-12-09T12:50:00Z ({error})"))
            })?;
            let seconds = parsed.timestamp();
            if seconds < MIN_EVENT_TIMESTAMP {
                return Err(Error::invalid(field("timestamp"), text, "lies before 1990-01-01T00:00:00Z"));
            }
            if seconds > now.timestamp() + MAX_FUTURE_SKEW_SECONDS {
                return Err(Error::invalid(
                    field("timestamp"),
                    text,
                    format!("lies more than {MAX_FUTURE_SKEW_SECONDS} seconds in the future"),
                ));
            }
            seconds
        }
        Some(other) => {
            return Err(Error::invalid(field("timestamp"), other.to_string(), "must be an RFC 3339 time stamp string"));
        }
    };

    Ok(StoredEvent { user_id: user_id.to_string(), event_id, event_type, item_id, quantity, timestamp, received_at: now.timestamp() })
}

/// Checks a stored event against the rules the events route applies, for
/// events that reach the code by another path, such as a stream record.
pub fn validate_stored_event(event: &StoredEvent) -> Result<()> {
    validate_id("user_id", &event.user_id)?;
    validate_id("event_id", &event.event_id)?;
    validate_id("item_id", &event.item_id)?;
    if !(1..=MAX_QUANTITY).contains(&event.quantity) {
        return Err(Error::invalid("quantity", event.quantity.to_string(), format!("must be a whole number from 1 to {MAX_QUANTITY}")));
    }
    if event.timestamp < MIN_EVENT_TIMESTAMP {
        return Err(Error::invalid("timestamp", event.timestamp.to_string(), "lies before 1990-01-01T00:00:00Z"));
    }
    Ok(())
}

/// Builds the recommender's view of a user from the trained profile and the
/// live profile of their events.
pub fn user_history(profile: Option<&TrainedProfile>, live: &LiveProfile) -> UserHistory {
    let mut history = UserHistory::default();
    if let Some(profile) = profile {
        for purchase in &profile.purchases {
            history.purchased.insert(purchase.item_id.clone(), purchase.orders as f32);
            history.touch(&purchase.item_id, purchase.last_at);
        }
    }
    for (item_id, activity) in &live.items {
        if activity.purchases > 0 {
            // Each purchase event is one order, whatever its quantity.
            *history.purchased.entry(item_id.clone()).or_default() += activity.purchases as f32;
        }
        if activity.add_to_carts > 0 {
            history.interest.insert(item_id.clone(), ADD_TO_CART_WEIGHT);
        } else if activity.views > 0 {
            history.interest.insert(item_id.clone(), VIEW_WEIGHT);
        }
        history.touch(item_id, activity.last_at);
    }
    history.interest.retain(|item_id, _| !history.purchased.contains_key(item_id));
    history
}

/// Words that carry no theme in product titles.
const STOP_WORDS: &[&str] =
    &["and", "the", "with", "for", "set", "of", "in", "on", "to", "a", "an", "small", "large", "mini", "big", "assorted", "design", "pack"];

/// Splits a title into lower-case theme terms of at least three letters.
pub fn title_terms(title: &str) -> impl Iterator<Item = String> + '_ {
    title
        .split(|c: char| !c.is_alphabetic())
        .filter(|word| word.chars().count() >= 3)
        .map(str::to_lowercase)
        .filter(|word| !STOP_WORDS.contains(&word.as_str()))
}

/// Computes the smoothed inverse document frequency `ln(1 + N / df)` of every title term.
pub fn title_term_idf<'a>(titles: impl Iterator<Item = &'a str>) -> FxHashMap<String, f32> {
    let mut document_frequency: FxHashMap<String, u32> = FxHashMap::default();
    let mut documents = 0u32;
    for title in titles {
        documents += 1;
        let terms: FxHashSet<String> = title_terms(title).collect();
        for term in terms {
            *document_frequency.entry(term).or_default() += 1;
        }
    }
    document_frequency.into_iter().map(|(term, frequency)| (term, (documents as f32 / frequency as f32).ln_1p())).collect()
}

/// A favourite item in the preference profile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FavouriteItem {
    pub item_id: String,
    pub title: String,
    pub orders: u32,
    pub quantity: f64,
    pub last_at: String,
}

/// A recurring theme of the titles a user bought or looked at.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Theme {
    pub term: String,
    pub weight: f32,
}

/// The user's price band against the catalogue's price terciles.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PriceBand {
    /// "low", "mid" or "high".
    pub band: &'static str,
    pub median_price: f64,
    pub catalogue_terciles: [f64; 2],
}

/// How often the user orders.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PurchaseFrequency {
    pub orders: usize,
    pub active_days: f64,
    pub orders_per_month: f64,
    pub mean_days_between_orders: Option<f64>,
}

/// The preference profile returned by `GET /users/{user_id}/preferences`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Preferences {
    pub user_id: String,
    pub model_version: String,
    /// True when the user has purchases in the trained model.
    pub known_user: bool,
    pub favourite_items: Vec<FavouriteItem>,
    pub themes: Vec<Theme>,
    pub price_band: Option<PriceBand>,
    pub purchase_frequency: PurchaseFrequency,
    pub last_activity: Option<String>,
    pub events: EventCounts,
}

fn format_time(seconds: i64) -> String {
    DateTime::<Utc>::from_timestamp(seconds, 0).unwrap_or_default().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Number of favourite items and themes in a profile.
const PROFILE_LIST_LEN: usize = 10;

/// Builds the preference profile from the trained history and the live profile
/// of the user's events.
///
/// Returns [`Error::UserNotFound`] when there is neither a trained profile nor an event.
pub fn build_preferences(
    user_id: &str,
    model_version: &str,
    data: &ModelData,
    profile: Option<&TrainedProfile>,
    live: &LiveProfile,
) -> Result<Preferences> {
    if profile.is_none() && live.is_empty() {
        return Err(Error::UserNotFound(user_id.to_string()));
    }

    let mut purchases: FxHashMap<String, PurchaseSummary> = FxHashMap::default();
    let mut order_times: Vec<i64> = Vec::new();
    let mut last_activity: Option<i64> = None;
    if let Some(profile) = profile {
        for purchase in &profile.purchases {
            purchases.insert(purchase.item_id.clone(), purchase.clone());
        }
        order_times.extend(&profile.order_times);
        last_activity = Some(profile.last_at);
    }

    if let Some(live_last) = live.last_at {
        last_activity = Some(last_activity.map_or(live_last, |last| last.max(live_last)));
    }
    order_times.extend(&live.purchase_times);
    let mut interest: FxHashMap<&str, f32> = FxHashMap::default();
    for (item_id, activity) in &live.items {
        let weight = activity.views as f32 * VIEW_WEIGHT + activity.add_to_carts as f32 * ADD_TO_CART_WEIGHT;
        if weight > 0.0 {
            interest.insert(item_id, weight);
        }
        if let Some(last_purchase_at) = activity.last_purchase_at {
            let summary = purchases.entry(item_id.clone()).or_insert_with(|| PurchaseSummary {
                item_id: item_id.clone(),
                quantity: 0.0,
                orders: 0,
                last_at: last_purchase_at,
            });
            summary.quantity += activity.quantity as f64;
            summary.orders += activity.purchases;
            summary.last_at = summary.last_at.max(last_purchase_at);
        }
    }

    let mut favourites: Vec<&PurchaseSummary> = purchases.values().collect();
    favourites
        .sort_by(|a, b| b.orders.cmp(&a.orders).then_with(|| b.quantity.total_cmp(&a.quantity)).then_with(|| a.item_id.cmp(&b.item_id)));
    let favourite_items = favourites
        .iter()
        .take(PROFILE_LIST_LEN)
        .map(|purchase| FavouriteItem {
            item_id: purchase.item_id.clone(),
            title: data.title(&purchase.item_id).to_string(),
            orders: purchase.orders,
            quantity: purchase.quantity,
            last_at: format_time(purchase.last_at),
        })
        .collect();

    // A theme recurs across items, so each item counts once, with a logarithmic
    // bonus for repeat orders instead of a weight per order.
    let weighted_items = purchases
        .values()
        .map(|purchase| (purchase.item_id.as_str(), 1.0 + (purchase.orders.max(1) as f32).ln()))
        .chain(interest.iter().map(|(item_id, weight)| (*item_id, *weight)));
    let themes = themes(data, weighted_items);

    let prices: Vec<f64> = purchases.keys().filter_map(|item_id| data.item(item_id).map(|item| item.price)).collect();
    let price_band = price_band(prices, data.price_bands);

    order_times.sort_unstable();
    order_times.dedup();

    Ok(Preferences {
        user_id: user_id.to_string(),
        model_version: model_version.to_string(),
        known_user: profile.is_some(),
        favourite_items,
        themes,
        price_band,
        purchase_frequency: purchase_frequency(&order_times),
        last_activity: last_activity.map(format_time),
        events: live.events,
    })
}

fn themes<'a>(data: &ModelData, weighted_items: impl Iterator<Item = (&'a str, f32)>) -> Vec<Theme> {
    let mut weights: FxHashMap<String, f32> = FxHashMap::default();
    for (item_id, weight) in weighted_items {
        for term in title_terms(data.title(item_id)) {
            let idf = data.term_idf.get(&term).copied().unwrap_or(0.0);
            *weights.entry(term).or_default() += weight * idf;
        }
    }
    let total: f32 = weights.values().sum();
    let mut themes: Vec<Theme> = weights
        .into_iter()
        .filter(|(_, weight)| *weight > 0.0)
        .map(|(term, weight)| Theme { term, weight: if total > 0.0 { weight / total } else { 0.0 } })
        .collect();
    themes.sort_by(|a, b| b.weight.total_cmp(&a.weight).then_with(|| a.term.cmp(&b.term)));
    themes.truncate(PROFILE_LIST_LEN);
    themes
}

fn price_band(mut prices: Vec<f64>, terciles: [f64; 2]) -> Option<PriceBand> {
    if prices.is_empty() {
        return None;
    }
    prices.sort_by(f64::total_cmp);
    let median_price = prices[prices.len() / 2];
    let band = if median_price < terciles[0] {
        "low"
    } else if median_price > terciles[1] {
        "high"
    } else {
        "mid"
    };
    Some(PriceBand { band, median_price, catalogue_terciles: terciles })
}

/// Average length of a month in days.
const DAYS_PER_MONTH: f64 = 30.44;

fn purchase_frequency(order_times: &[i64]) -> PurchaseFrequency {
    let orders = order_times.len();
    let active_days = match (order_times.first(), order_times.last()) {
        (Some(first), Some(last)) => (last - first) as f64 / 86_400.0,
        _ => 0.0,
    };
    let orders_per_month = if orders == 0 { 0.0 } else { orders as f64 / (active_days / DAYS_PER_MONTH).max(1.0) };
    let mean_days_between_orders = (orders > 1).then(|| active_days / (orders - 1) as f64);
    PurchaseFrequency { orders, active_days, orders_per_month, mean_days_between_orders }
}

/// Event builders shared by the unit tests of this crate.
#[cfg(test)]
pub(crate) mod test_events {
    use super::{EventType, StoredEvent};

    /// Builds an event of user "u1" with quantity 2, received when it happened.
    pub(crate) fn event(event_id: &str, event_type: EventType, item_id: &str, timestamp: i64) -> StoredEvent {
        StoredEvent {
            user_id: "u1".into(),
            event_id: event_id.into(),
            event_type,
            item_id: item_id.into(),
            quantity: 2,
            timestamp,
            received_at: timestamp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CatalogueItem, Popularity};

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().with_timezone(&Utc)
    }

    fn invalid_field(result: Result<Vec<StoredEvent>>) -> (String, String) {
        match result {
            Err(Error::InvalidField { field, value, .. }) => (field, value),
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    #[test]
    fn parse_single_event_defaults() {
        let events = parse_events("u1", br#"{"event_id":"e1","type":"view","item_id":"85123A"}"#, now()).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].quantity, 1);
        assert_eq!(events[0].timestamp, now().timestamp());
        assert_eq!(events[0].event_type, EventType::View);
    }

    #[test]
    fn parse_batch_keeps_order() {
        let body = br#"{"events":[{"event_id":"e1","type":"purchase","item_id":"A","quantity":3,"timestamp":"2025-12-31T10:00:00Z"},{"event_id":"e2","type":"add_to_cart","item_id":"B"}]}"#;
        let events = parse_events("u1", body, now()).unwrap();
        assert_eq!(events[0].quantity, 3);
        assert_eq!(events[0].timestamp, 1_767_175_200);
        assert_eq!(events[1].event_type, EventType::AddToCart);
    }

    #[test]
    fn parse_rejects_unknown_type() {
        let (field, value) = invalid_field(parse_events("u1", br#"{"event_id":"e1","type":"like","item_id":"A"}"#, now()));
        assert_eq!(field, "type");
        assert_eq!(value, "like");
    }

    #[test]
    fn parse_rejects_duplicate_event_ids() {
        let body = br#"{"events":[{"event_id":"e1","type":"view","item_id":"A"},{"event_id":"e1","type":"view","item_id":"B"}]}"#;
        let (field, value) = invalid_field(parse_events("u1", body, now()));
        assert_eq!(field, "events[1].event_id");
        assert_eq!(value, "e1");
    }

    #[test]
    fn parse_rejects_oversized_batch() {
        let events: Vec<String> = (0..26).map(|i| format!(r#"{{"event_id":"e{i}","type":"view","item_id":"A"}}"#)).collect();
        let body = format!(r#"{{"events":[{}]}}"#, events.join(","));
        let (field, _) = invalid_field(parse_events("u1", body.as_bytes(), now()));
        assert_eq!(field, "events");
    }

    #[test]
    fn parse_rejects_bad_quantity_and_time() {
        let (field, value) = invalid_field(parse_events("u1", br#"{"event_id":"e1","type":"view","item_id":"A","quantity":0}"#, now()));
        assert_eq!(field, "quantity");
        assert_eq!(value, "0");

        let (field, value) =
            invalid_field(parse_events("u1", br#"{"event_id":"e1","type":"view","item_id":"A","timestamp":"yesterday"}"#, now()));
        assert_eq!(field, "timestamp");
        assert_eq!(value, "yesterday");

        let (field, _) = invalid_field(parse_events(
            "u1",
            br#"{"event_id":"e1","type":"view","item_id":"A","timestamp":"2027-01-01T00:00:00Z"}"#,
            now(),
        ));
        assert_eq!(field, "timestamp");
    }

    #[test]
    fn parse_rejects_control_characters() {
        let (field, _) = invalid_field(parse_events("u1", b"{\"event_id\":\"e\\u0001\",\"type\":\"view\",\"item_id\":\"A\"}", now()));
        assert_eq!(field, "event_id");
    }

    #[test]
    fn parse_rejects_malformed_json() {
        assert!(matches!(parse_events("u1", b"{", now()), Err(Error::InvalidJson(_))));
        assert!(matches!(parse_events("u1", b"[1]", now()), Err(Error::InvalidJson(_))));
    }

    #[test]
    fn parse_names_fields_of_wrong_type() {
        let cases: [(&[u8], &str); 7] = [
            (br#"{"event_id":123,"type":"view","item_id":"A"}"#, "event_id"),
            (br#"{"type":"view","item_id":"A"}"#, "event_id"),
            (br#"{"event_id":"e","type":"view","item_id":"A","colour":"red"}"#, "colour"),
            (br#"{"event_id":"e","type":"view","item_id":"A","timestamp":5}"#, "timestamp"),
            (br#"{"event_id":"e","type":"view","item_id":"A","quantity":null}"#, "quantity"),
            (br#"{"events":null}"#, "events"),
            (br#"{"events":[1]}"#, "events[0]"),
        ];
        for (body, expected) in cases {
            let (field, _) = invalid_field(parse_events("u1", body, now()));
            assert_eq!(field, expected, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn parse_rejects_ancient_and_blank_values() {
        let (field, _) =
            invalid_field(parse_events("u1", br#"{"event_id":"e","type":"view","item_id":"A","timestamp":"0001-01-01T00:00:00Z"}"#, now()));
        assert_eq!(field, "timestamp");
        let (field, _) = invalid_field(parse_events("u1", br#"{"event_id":"   ","type":"view","item_id":"A"}"#, now()));
        assert_eq!(field, "event_id");
    }

    fn sample_data() -> ModelData {
        let catalogue = vec![
            CatalogueItem { item_id: "A".into(), title: "RED HEART LANTERN".into(), price: 1.0, buyers: 5, recent_buyers: 1 },
            CatalogueItem { item_id: "B".into(), title: "PINK HEART MUG".into(), price: 3.0, buyers: 5, recent_buyers: 1 },
            CatalogueItem { item_id: "C".into(), title: "GARDEN TOOL SET".into(), price: 9.0, buyers: 5, recent_buyers: 1 },
        ];
        ModelData::new(catalogue, Popularity::default(), FxHashMap::default())
    }

    use crate::preferences::test_events::event;

    #[test]
    fn preferences_merge_profile_and_events() {
        let profile = TrainedProfile {
            user_id: "u1".into(),
            purchases: vec![PurchaseSummary { item_id: "A".into(), quantity: 4.0, orders: 2, last_at: 100 }],
            order_times: vec![0, 100],
            first_at: 0,
            last_at: 100,
        };
        let events = vec![event("e1", EventType::Purchase, "B", 86_400 * 61), event("e2", EventType::View, "C", 50)];
        let live = LiveProfile::new("u1").with_pending(&events);
        let preferences = build_preferences("u1", "v1", &sample_data(), Some(&profile), &live).unwrap();

        assert!(preferences.known_user);
        assert_eq!(preferences.favourite_items[0].item_id, "A");
        assert_eq!(preferences.favourite_items.len(), 2);
        assert_eq!(preferences.themes[0].term, "heart");
        assert_eq!(preferences.purchase_frequency.orders, 3);
        assert_eq!(preferences.events.purchase, 1);
        assert_eq!(preferences.events.view, 1);
        assert_eq!(preferences.last_activity.as_deref(), Some("1970-03-03T00:00:00Z"));
    }

    #[test]
    fn preferences_unknown_user_not_found() {
        let result = build_preferences("nobody", "v1", &sample_data(), None, &LiveProfile::new("nobody"));
        assert!(matches!(result, Err(Error::UserNotFound(_))));
    }

    #[test]
    fn history_moves_bought_items_out_of_interest() {
        let events =
            vec![event("e1", EventType::View, "A", 1), event("e2", EventType::Purchase, "A", 2), event("e3", EventType::AddToCart, "B", 3)];
        let history = user_history(None, &LiveProfile::new("u1").with_pending(&events));
        assert!(history.purchased.contains_key("A"));
        assert!(!history.interest.contains_key("A"));
        assert_eq!(history.interest["B"], ADD_TO_CART_WEIGHT);
    }

    #[test]
    fn history_places_late_events_by_time() {
        let events = vec![
            event("e1", EventType::View, "A", 5_000),
            event("e2", EventType::View, "B", 9_000),
            event("late", EventType::View, "A", 1_000),
        ];
        let history = user_history(None, &LiveProfile::new("u1").with_pending(&events));
        assert_eq!(history.last_at["A"], 5_000);
        assert_eq!(history.latest_at(), Some(9_000));
    }

    #[test]
    fn preferences_count_purchase_events_as_orders() {
        let events = vec![
            event("e1", EventType::Purchase, "A", 86_400 * 30),
            event("e2", EventType::Purchase, "A", 86_400),
            event("e3", EventType::View, "A", 86_400 * 40),
        ];
        let preferences = build_preferences("u1", "v1", &sample_data(), None, &LiveProfile::new("u1").with_pending(&events)).unwrap();
        assert_eq!(preferences.favourite_items[0].orders, 2);
        assert_eq!(preferences.favourite_items[0].quantity, 4.0);
        assert_eq!(preferences.favourite_items[0].last_at, "1970-01-31T00:00:00Z");
        assert_eq!(preferences.purchase_frequency.orders, 2);
        assert_eq!(preferences.last_activity.as_deref(), Some("1970-02-10T00:00:00Z"));
    }

    #[test]
    fn validate_id_rejects_long_ids() {
        let long = "x".repeat(MAX_ID_LEN + 1);
        assert!(validate_id("user_id", &long).is_err());
        assert!(validate_id("user_id", &"x".repeat(MAX_ID_LEN)).is_ok());
    }
}

//! The live profile: a user's stored events folded into per-item counts, kept
//! up to date by the stream function of the events table.
//!
//! Folding is commutative, so events that arrive late or out of order give the
//! same profile as events in time order: counts add up and times keep the
//! maximum, each taken from the event's own time stamp. Idempotency comes from
//! the store, which marks each event as applied in the same transaction that
//! writes the profile.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::preferences::{EventType, StoredEvent};

/// Event ids a live profile remembers, newest last.
///
/// A request reads the events still marked unapplied before it reads the
/// profile, so an event applied in between shows up in both reads. This list
/// lets it count once. The window between the two reads is one DynamoDB round
/// trip, far shorter than the stream function needs to apply this many events
/// of one user.
pub const RECENT_EVENT_IDS: usize = 100;

/// Items a live profile keeps; the least recently active ones go first.
///
/// Ids take up to 128 bytes and counts about 100 bytes per item (an estimate),
/// so a profile stays near 250 KB at most, under DynamoDB's 400 KB item limit.
/// It therefore keeps updating however many items a user touches.
pub const MAX_ITEMS: usize = 1_000;

/// Purchase times a live profile keeps; the oldest ones go first.
pub const MAX_PURCHASE_TIMES: usize = 1_000;

/// One item's events in a live profile.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemActivity {
    pub views: u32,
    pub add_to_carts: u32,
    /// Purchase events, each counted as one order.
    pub purchases: u32,
    /// Units bought over all purchase events.
    pub quantity: u64,
    /// Unix seconds of the latest event of any type.
    pub last_at: i64,
    /// Unix seconds of the latest purchase event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_purchase_at: Option<i64>,
}

/// Event counts by type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventCounts {
    pub view: u32,
    pub add_to_cart: u32,
    pub purchase: u32,
}

impl EventCounts {
    /// Returns the number of events of all types.
    pub fn total(&self) -> u64 {
        u64::from(self.view) + u64::from(self.add_to_cart) + u64::from(self.purchase)
    }
}

/// A user's events since they started sending them, folded into one record.
///
/// NOTE: past [`MAX_ITEMS`] items or [`MAX_PURCHASE_TIMES`] purchases the
/// profile drops the least recent ones, so it then depends on the order the
/// events arrived in. The event counts stay complete, and the events table
/// keeps every event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveProfile {
    pub user_id: String,
    /// Activity per item id.
    pub items: BTreeMap<String, ItemActivity>,
    /// Unix seconds of every purchase event, ascending.
    pub purchase_times: Vec<i64>,
    pub events: EventCounts,
    /// Unix seconds of the latest event.
    pub last_at: Option<i64>,
    /// Ids of the latest applied events, at most [`RECENT_EVENT_IDS`], oldest first.
    pub recent_event_ids: Vec<String>,
    /// Number of writes so far. Each write succeeds only if the stored revision is still the one it read.
    pub revision: u64,
}

impl LiveProfile {
    /// Creates the profile of a user without events.
    pub fn new(user_id: &str) -> Self {
        LiveProfile {
            user_id: user_id.to_string(),
            items: BTreeMap::new(),
            purchase_times: Vec::new(),
            events: EventCounts::default(),
            last_at: None,
            recent_event_ids: Vec::new(),
            revision: 0,
        }
    }

    /// Returns true when no event has been folded in.
    pub fn is_empty(&self) -> bool {
        self.events.total() == 0
    }

    /// Returns true when the event is among the latest applied ones.
    pub fn recently_applied(&self, event_id: &str) -> bool {
        self.recent_event_ids.iter().any(|id| id == event_id)
    }

    /// Folds one event in, placing it by its own time stamp, and remembers its id.
    ///
    /// The caller makes sure an event is applied once, as the store does with
    /// a conditional write on the event.
    pub fn apply(&mut self, event: &StoredEvent) {
        let activity = self.items.entry(event.item_id.clone()).or_default();
        match event.event_type {
            EventType::View => {
                activity.views += 1;
                self.events.view += 1;
            }
            EventType::AddToCart => {
                activity.add_to_carts += 1;
                self.events.add_to_cart += 1;
            }
            EventType::Purchase => {
                activity.purchases += 1;
                activity.quantity += u64::from(event.quantity);
                activity.last_purchase_at = Some(activity.last_purchase_at.map_or(event.timestamp, |last| last.max(event.timestamp)));
                self.events.purchase += 1;
                let position = self.purchase_times.partition_point(|time| *time <= event.timestamp);
                self.purchase_times.insert(position, event.timestamp);
            }
        }
        activity.last_at = activity.last_at.max(event.timestamp);
        self.last_at = Some(self.last_at.map_or(event.timestamp, |last| last.max(event.timestamp)));

        self.recent_event_ids.push(event.event_id.clone());
        if self.recent_event_ids.len() > RECENT_EVENT_IDS {
            let excess = self.recent_event_ids.len() - RECENT_EVENT_IDS;
            self.recent_event_ids.drain(..excess);
        }

        self.trim();
    }

    /// Drops the least recently active items and the oldest purchase times
    /// beyond the limits that keep the record under DynamoDB's item size limit.
    fn trim(&mut self) {
        if self.purchase_times.len() > MAX_PURCHASE_TIMES {
            let excess = self.purchase_times.len() - MAX_PURCHASE_TIMES;
            self.purchase_times.drain(..excess);
        }
        while self.items.len() > MAX_ITEMS {
            let oldest = self
                .items
                .iter()
                .min_by(|(id_a, a), (id_b, b)| a.last_at.cmp(&b.last_at).then_with(|| id_a.cmp(id_b)))
                .map(|(item_id, _)| item_id.clone())
                .expect("the map is not empty");
            self.items.remove(&oldest);
        }
    }

    /// Returns this profile with the events that the stream function has not
    /// applied yet folded in, skipping those it applied since they were read.
    pub fn with_pending(mut self, pending: &[StoredEvent]) -> Self {
        for event in pending {
            if !self.recently_applied(&event.event_id) {
                self.apply(event);
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::preferences::test_events::event;

    fn sample_events() -> Vec<StoredEvent> {
        vec![
            event("e1", EventType::View, "A", 500),
            event("e2", EventType::Purchase, "A", 900),
            event("e3", EventType::AddToCart, "B", 300),
            event("e4", EventType::Purchase, "B", 100),
            event("e5", EventType::View, "C", 700),
            event("e6", EventType::Purchase, "A", 200),
        ]
    }

    fn without_ids(mut profile: LiveProfile) -> LiveProfile {
        profile.recent_event_ids.clear();
        profile
    }

    #[test]
    fn apply_counts_events_by_item() {
        let mut profile = LiveProfile::new("u1");
        for event in sample_events() {
            profile.apply(&event);
        }

        let a = &profile.items["A"];
        assert_eq!(a.views, 1);
        assert_eq!(a.purchases, 2);
        assert_eq!(a.quantity, 4);
        assert_eq!(a.last_at, 900);
        assert_eq!(a.last_purchase_at, Some(900));
        assert_eq!(profile.items["B"].last_at, 300);
        assert_eq!(profile.items["B"].last_purchase_at, Some(100));
        assert_eq!(profile.purchase_times, vec![100, 200, 900]);
        assert_eq!(profile.events, EventCounts { view: 2, add_to_cart: 1, purchase: 3 });
        assert_eq!(profile.last_at, Some(900));
    }

    #[test]
    fn apply_order_does_not_matter() {
        let events = sample_events();
        let mut in_time_order = events.clone();
        in_time_order.sort_by_key(|event| event.timestamp);
        let expected = without_ids(LiveProfile::new("u1").with_pending(&in_time_order));

        // Every rotation and the reversal of the arrival order give the same profile.
        for shift in 0..events.len() {
            let mut arrival = events.clone();
            arrival.rotate_left(shift);
            assert_eq!(without_ids(LiveProfile::new("u1").with_pending(&arrival)), expected, "rotation {shift}");
            arrival.reverse();
            assert_eq!(without_ids(LiveProfile::new("u1").with_pending(&arrival)), expected, "reversed rotation {shift}");
        }
    }

    #[test]
    fn late_event_keeps_latest_time() {
        let mut profile = LiveProfile::new("u1");
        profile.apply(&event("new", EventType::View, "A", 5_000));
        profile.apply(&event("late", EventType::View, "A", 1_000));

        assert_eq!(profile.items["A"].last_at, 5_000);
        assert_eq!(profile.last_at, Some(5_000));
    }

    #[test]
    fn pending_skips_recently_applied() {
        let events = sample_events();
        let mut applied = LiveProfile::new("u1");
        applied.apply(&events[0]);
        applied.apply(&events[1]);

        // The first two were applied between the read of pending events and the profile.
        let merged = applied.with_pending(&events);
        let expected = LiveProfile::new("u1").with_pending(&events);
        assert_eq!(merged.events, expected.events);
        assert_eq!(merged.items, expected.items);
    }

    #[test]
    fn items_and_purchases_stay_bounded() {
        let mut profile = LiveProfile::new("u1");
        for index in 0..MAX_ITEMS + 50 {
            profile.apply(&event(&format!("e{index}"), EventType::Purchase, &format!("item-{index:05}"), 1_000 + index as i64));
        }

        assert_eq!(profile.items.len(), MAX_ITEMS);
        assert!(!profile.items.contains_key("item-00049"), "the least recent item is dropped");
        assert!(profile.items.contains_key("item-00050"));
        assert_eq!(profile.purchase_times.len(), MAX_PURCHASE_TIMES);
        assert_eq!(profile.purchase_times[0], 1_050);
        assert_eq!(profile.events.purchase as usize, MAX_ITEMS + 50, "event counts stay complete");
    }

    #[test]
    fn recent_ids_stay_bounded() {
        let mut profile = LiveProfile::new("u1");
        for index in 0..RECENT_EVENT_IDS + 7 {
            profile.apply(&event(&format!("e{index}"), EventType::View, "A", index as i64));
        }

        assert_eq!(profile.recent_event_ids.len(), RECENT_EVENT_IDS);
        assert_eq!(profile.recent_event_ids[0], "e7");
        assert!(profile.recently_applied(&format!("e{}", RECENT_EVENT_IDS + 6)));
        assert!(!profile.recently_applied("e6"));
    }
}

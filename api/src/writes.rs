//! The write side: validated events and orders published to their topics with the codec.
//!
//! - Events are validated against their Avro schema (`storeflow_avro::json`) before
//!   anything is published; a batch is all or nothing. An `event_id` the caller named and
//!   that was seen recently (a bounded window, in memory) is accepted once: the duplicate
//!   is acknowledged but not published again. Without an `event_id` the API assigns one
//!   (no deduplication then, and the assigned id does not take a place in the window).
//! - Orders are priced from the catalog and become an `OrderPlaced` whose `order_id` and
//!   `event_id` derive from the caller's key and its `Idempotency-Key`, so a retry — even
//!   after a restart of the API — names the same order.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use storeflow_avro::pii::Vault;
use storeflow_avro::{Codec, Event, JsonOptions, Timestamp};
use storeflow_ingest::Log;
use storeflow_ingest::publish::Publisher;

use crate::config::ApiConfig;
use crate::error::{ApiError, ApiResult};

/// Remembers the last `capacity` event ids, as 128-bit values (a UUID's own bits, else
/// the first half of the id's SHA-256): no allocation per event, and growing the set
/// rehashes 16-byte keys, not strings.
struct Recent {
    set: HashSet<u128>,
    order: VecDeque<u128>,
    capacity: usize,
}

fn id_key(id: &str) -> u128 {
    uuid::Uuid::try_parse(id).map(|u| u.as_u128()).unwrap_or_else(|_| {
        let d = Sha256::digest(id.as_bytes());
        u128::from_be_bytes(d[..16].try_into().expect("16 bytes"))
    })
}

impl Recent {
    fn insert(&mut self, id: &str) -> bool {
        let k = id_key(id);
        if !self.set.insert(k) {
            return false;
        }
        self.order.push_back(k);
        if self.order.len() > self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }

    fn remove(&mut self, id: &str) {
        let k = id_key(id);
        if self.set.remove(&k) {
            self.order.retain(|x| *x != k);
        }
    }
}

/// Events that passed validation, and for each whether the caller named its `event_id`
/// (only those can be retried with the same id, so only those are deduplicated).
#[derive(Debug)]
pub struct Checked {
    events: Vec<Event>,
    named: Vec<bool>,
}

impl Checked {
    /// The validated events, in the order they were sent.
    pub fn into_events(self) -> Vec<Event> {
        self.events
    }

    /// Events the API made itself (derived types included: they never come from a body),
    /// deduplicated by event id when `dedup`.
    pub(crate) fn made_here(events: Vec<Event>, dedup: bool) -> Checked {
        let named = vec![dedup; events.len()];
        Checked { events, named }
    }

    /// The events, in the request's order.
    pub fn events(&self) -> &[Event] {
        &self.events
    }
}

/// The digest of the body that placed an order, and the order's id.
type OrderSlot = ([u8; 32], String);

/// Publishes validated events.
pub struct Writer {
    publisher: Publisher,
    recent: Mutex<Recent>,
    /// Idempotency slots (key id + Idempotency-Key) → (body digest, order id), the last
    /// `dedup_window` of them; older retries still name the same order (the id is
    /// derived), only the 409 for a changed body is lost.
    orders: Mutex<(HashMap<String, OrderSlot>, VecDeque<String>)>,
    window: usize,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer")
    }
}

/// What happened to a batch of events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// Events published now.
    pub published: usize,
    /// Events whose `event_id` was already accepted (not published again).
    pub duplicates: usize,
}

impl Writer {
    /// A writer on `log`, remembering the last `dedup_window` event ids.
    /// Personal data is sealed with `vault` before it is published.
    pub fn new(log: &dyn Log, codec: Arc<Codec>, vault: Arc<Vault>, dedup_window: usize) -> Result<Writer, storeflow_ingest::LogError> {
        Ok(Writer {
            publisher: Publisher::new(log, codec, vault)?,
            recent: Mutex::new(Recent { set: HashSet::new(), order: VecDeque::new(), capacity: dedup_window.max(1) }),
            orders: Mutex::new((HashMap::new(), VecDeque::new())),
            window: dedup_window.max(1),
        })
    }

    /// Validates JSON events (inputs only: apps cannot send derived events). The error of
    /// the first bad event names it: `events[3].items[0].quantity` in a batch.
    ///
    /// `occurred_at` must lie within `time` of the server's clock: a device's clock decides
    /// no deadline (a `PaymentFailed` dated 2100 would move its partition's stream time past
    /// every order's).
    ///
    /// Strings and arrays are first held to `config.field_limits`, before anything else
    /// reads them.
    pub fn validate(values: Vec<serde_json::Value>, batch: bool, config: &ApiConfig) -> ApiResult<Checked> {
        let time = &config.time;
        // A missing event_id or occurred_at is filled in (now, a new UUID): apps that do
        // not make ids can still send events, without deduplication.
        let opts = JsonOptions { fill_missing_ids: true, inputs_only: true };
        let named: Vec<bool> = values.iter().map(|v| v.get("event_id").is_some_and(|id| !id.is_null())).collect();
        let events = values
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                config.field_limits.check(&v).and_then(|()| storeflow_avro::json::event_from_json(v, opts)).map_err(|mut e| {
                    if batch {
                        e.field = Some(match e.field.take() {
                            Some(f) => format!("events[{i}].{f}"),
                            None => format!("events[{i}]"),
                        });
                    }
                    ApiError::from(e)
                })
            })
            .collect::<ApiResult<Vec<Event>>>()?;
        let now = Timestamp::now();
        let at = |i: usize, f: &str| if batch { format!("events[{i}].{f}") } else { f.to_string() };
        for (i, e) in events.iter().enumerate() {
            if let Err(why) = time.check_sent(e.occurred_at(), now) {
                return Err(ApiError::Invalid { code: "occurred_at_out_of_range", message: why, field: Some(at(i, "occurred_at")) });
            }
            // A sealed value is made here, never sent: its sender would choose the pseudonym
            // the fraud checks compare.
            if let Some(f) = storeflow_avro::pii::sealed_field(e) {
                return Err(ApiError::Invalid { code: "sealed_value", message: storeflow_avro::pii::already_sealed(f), field: Some(at(i, f)) });
            }
        }
        Ok(Checked { events, named })
    }

    /// Publishes the events not seen before and waits until the log acknowledged them.
    pub async fn publish(&self, checked: Checked) -> ApiResult<Accepted> {
        let total = checked.events.len();
        let mut remembered = Vec::new();
        let fresh: Vec<Event> = {
            let mut recent = self.recent.lock();
            checked
                .events
                .into_iter()
                .zip(checked.named)
                .filter(|(e, named)| {
                    if !named {
                        return true;
                    }
                    let new = recent.insert(e.event_id());
                    if new {
                        remembered.push(e.event_id().to_string());
                    }
                    new
                })
                .map(|(e, _)| e)
                .collect()
        };
        let accepted = Accepted { published: fresh.len(), duplicates: total - fresh.len() };
        if fresh.is_empty() {
            return Ok(accepted);
        }
        let result = async {
            let deliveries = self.publisher.publish_batch(&fresh)?;
            for d in deliveries {
                d.await?;
            }
            Ok::<_, storeflow_ingest::LogError>(())
        }
        .await;
        if let Err(e) = result {
            // Not published (or not known to be): let a retry through.
            let mut recent = self.recent.lock();
            for id in &remembered {
                recent.remove(id);
            }
            return Err(if e.is_retriable() {
                ApiError::Unavailable(format!("the log did not acknowledge the events; retry: {e}"))
            } else {
                ApiError::Internal(format!("publishing events: {e}"))
            });
        }
        Ok(accepted)
    }

    /// The order id for `idempotency_key` of key `key_id`, and whether this exact request
    /// (by `body_digest`) was already placed. A reused key with another body is a 409.
    pub fn order_for(&self, key_id: &str, idempotency_key: &str, body_digest: [u8; 32]) -> ApiResult<(String, bool)> {
        let slot = format!("{key_id}\u{0}{idempotency_key}");
        let orders = self.orders.lock();
        if let Some((digest, order_id)) = orders.0.get(&slot) {
            if *digest != body_digest {
                return Err(ApiError::Conflict {
                    code: "idempotency_key_reused",
                    message: format!("Idempotency-Key `{idempotency_key}` was used for another order body ({order_id})"),
                });
            }
            return Ok((order_id.clone(), true));
        }
        // Bound to the key, so that an app key may later read only its own orders.
        Ok((crate::roles::order_id(key_id, &slot), false))
    }

    /// Remembers that this request placed `order_id`.
    pub fn remember_order(&self, key_id: &str, idempotency_key: &str, body_digest: [u8; 32], order_id: &str) {
        let slot = format!("{key_id}\u{0}{idempotency_key}");
        let mut orders = self.orders.lock();
        if orders.0.insert(slot.clone(), (body_digest, order_id.to_string())).is_none() {
            orders.1.push_back(slot);
            if orders.1.len() > self.window
                && let Some(old) = orders.1.pop_front()
            {
                orders.0.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dedup_window_forgets_the_oldest_ids() {
        let mut r = Recent { set: HashSet::new(), order: VecDeque::new(), capacity: 2 };
        let a = "0b4f6a4e-58a4-4b7b-9a53-000000000001";
        assert!(r.insert(a));
        assert!(!r.insert(a));
        assert!(!r.insert(&a.to_uppercase()), "the same UUID spelled in capitals");
        assert!(r.insert("b (not a UUID)"));
        assert!(!r.insert("b (not a UUID)"));
        assert!(r.insert("c"));
        assert!(r.insert(a), "a fell out of the window");
        assert_eq!(r.set.len(), 2);
    }
}

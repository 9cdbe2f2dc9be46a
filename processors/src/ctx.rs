//! What a processor sees while it handles a record: emit outputs, its typed state stores,
//! timers. Nothing here does I/O; the runtime turns it into log writes at the next commit.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ProcessError;
use crate::state::store::Store;
use crate::state::task_state::TaskState;
use crate::state::timers;
use crate::wire::Wire;

/// An output waiting for its record to succeed.
#[derive(Debug)]
pub struct Emitted<O> {
    /// Destination topic.
    pub topic: String,
    /// Key.
    pub key: String,
    /// Value.
    pub value: O,
    /// Extra headers (dead letters carry their reason here).
    pub headers: Vec<storeflow_ingest::Header>,
}

/// The context of one record (or timer).
pub struct Ctx<'a, O> {
    pub(crate) processor: &'static str,
    pub(crate) state: &'a mut TaskState,
    pub(crate) out: Vec<Emitted<O>>,
    pub(crate) partition: u32,
    pub(crate) stores: &'static [&'static str],
    pub(crate) time: i64,
}

impl<'a, O: Wire> Ctx<'a, O> {
    pub(crate) fn new(processor: &'static str, state: &'a mut TaskState, partition: u32, stores: &'static [&'static str], time: i64) -> Self {
        Ctx { processor, state, out: Vec::new(), partition, stores, time }
    }

    /// Sends `value` to its topic ([`Wire::topic`]) with its key, when the record commits.
    pub fn emit(&mut self, value: O) {
        let (topic, key) = (value.topic(), value.key());
        self.out.push(Emitted { topic, key, value, headers: vec![] });
    }

    /// A deterministic `event_id` for an event this step derives from `parts` (what it is
    /// about: ids, a kind): the same record gives the same id on every run and after a
    /// crash, so consumers drop the duplicate; the processor's name seeds it, so two
    /// processors deriving from the same parts never collide.
    pub fn event_id(&self, parts: &[&str]) -> String {
        let seed = crate::ids::fnv1a(0xcbf2_9ce4_8422_2325, 0, &[self.processor]);
        crate::ids::derived_event_id(seed, 31, self.time, parts)
    }

    /// Sends `value` to `topic` under `key` (an internal or repartition topic).
    pub fn emit_to(&mut self, topic: &str, key: &str, value: O) {
        self.out.push(Emitted { topic: topic.to_string(), key: key.to_string(), value, headers: vec![] });
    }

    /// Sends `value` — a record of `topic` that the processor accepted earlier and held back
    /// (say, an event that arrived before the state it needs) — to `<topic>.dlq` with
    /// `reason`, as the runtime does for a record that fails when it arrives.
    pub fn dead_letter(&mut self, topic: &str, key: &str, value: O, reason: &str) {
        let headers = storeflow_ingest::dlq::headers_for(self.processor, reason, topic, self.partition, "held back", self.time);
        self.out.push(Emitted { topic: storeflow_avro::dlq_topic(topic), key: key.to_string(), value, headers });
    }

    /// The task's state, for `store` (which must be declared in [`crate::Processor::stores`]).
    fn state_of<V>(&mut self, store: Store<V>) -> &mut TaskState {
        debug_assert!(
            self.stores.contains(&store.name) || store.name.starts_with("__"),
            "store `{}` is not declared in Processor::stores",
            store.name
        );
        self.state
    }

    /// The value of `key` in `store`, if present and not expired.
    pub fn get<V: DeserializeOwned>(&mut self, store: Store<V>, key: &str) -> Result<Option<V>, ProcessError> {
        store.get(self.state_of(store), key)
    }

    /// Sets `key` in `store`.
    pub fn put<V: Serialize>(&mut self, store: Store<V>, key: &str, value: &V) -> Result<(), ProcessError> {
        store.put(self.state_of(store), key, value)
    }

    /// Sets `key` in `store` until stream time reaches `expires_at` (ms): then it reads as
    /// absent and the runtime deletes it (through the changelog).
    pub fn put_until<V: Serialize>(&mut self, store: Store<V>, key: &str, value: &V, expires_at: i64) -> Result<(), ProcessError> {
        store.put_until(self.state_of(store), key, value, expires_at)
    }

    /// Deletes `key` from `store`.
    pub fn delete<V>(&mut self, store: Store<V>, key: &str) -> Result<(), ProcessError> {
        store.delete(self.state_of(store), key)
    }

    /// Every live entry of `store` whose key starts with `prefix`, in key order.
    pub fn scan_prefix<V: DeserializeOwned>(&mut self, store: Store<V>, prefix: &str) -> Result<Vec<(String, V)>, ProcessError> {
        store.scan_prefix(self.state_of(store), prefix)
    }

    /// Calls [`crate::Processor::on_timer`] with `key` once every input group has passed
    /// `at` (ms of event time; a time already past fires at the next step). Setting the same
    /// (at, key) twice sets it once.
    pub fn set_timer(&mut self, at: i64, key: &str) {
        timers::set_timer(self.state, at.max(self.time), key);
    }

    /// Cancels a timer set with the same `at` and `key` (a timer set for a time already past
    /// was stored at the time it was set; `on_timer` should check state before acting).
    pub fn cancel_timer(&mut self, at: i64, key: &str) {
        timers::cancel_timer(self.state, at, key);
    }

    /// A mark of the outputs so far, to [`Ctx::rollback_outputs`] to.
    pub fn savepoint(&self) -> usize {
        self.out.len()
    }

    /// Forgets the outputs emitted since `savepoint` (when a held-back record fails after
    /// the record that replays it succeeded).
    pub fn rollback_outputs(&mut self, savepoint: usize) {
        self.out.truncate(savepoint);
    }

    /// The event time of the record being processed (or the due time of the timer).
    pub fn time(&self) -> i64 {
        self.time
    }

    /// The partition (task) this runs in.
    pub fn partition(&self) -> u32 {
        self.partition
    }
}

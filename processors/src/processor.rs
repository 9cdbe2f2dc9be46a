//! The `Processor` trait: business logic only. The runtime owns partitions, state, commits,
//! retries, the DLQ and metrics.

use serde::de::DeserializeOwned;

use crate::ctx::Ctx;
use crate::wire::Wire;

/// A record handed to a processor.
#[derive(Clone, Debug)]
pub struct Input<T> {
    /// The decoded value.
    pub value: T,
    /// Topic it came from.
    pub topic: String,
    /// Partition (the task's).
    pub partition: u32,
    /// Offset in that partition.
    pub offset: u64,
    /// Record timestamp (ms).
    pub timestamp: i64,
    /// Record key.
    pub key: String,
}

/// A timer that came due.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timer {
    /// When it was due (ms, stream time).
    pub at: i64,
    /// What the processor registered it with.
    pub key: String,
}

/// Why a record could not be processed.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// It never will be (a bad record, an illegal transition): it goes to the DLQ with this
    /// reason, nothing it did is kept, and the stream moves on.
    #[error("{0}")]
    Permanent(String),
    /// It may be later (a dependency is down): the runtime retries the same record with
    /// capped back-off and never skips it.
    #[error("transient: {0}")]
    Transient(String),
}

impl ProcessError {
    /// A permanent error with a reason.
    pub fn permanent(reason: impl Into<String>) -> Self {
        ProcessError::Permanent(reason.into())
    }
}

/// A stream processor: one struct in one file plus one line in the registry.
///
/// It must keep every piece of state that depends on the records in `ctx`'s stores — never
/// in `self` — because partitions (and their state) move between instances. `self` holds
/// configuration only.
pub trait Processor: Send + 'static {
    /// snake_case name: the consumer group suffix (`storeflow.<name>`), the state and
    /// changelog prefix, the metrics label and the config key.
    const NAME: &'static str;
    /// Typed configuration (`[processors.<name>]`), defaults when absent.
    type Config: DeserializeOwned + Default + Send;
    /// What it reads.
    type In: Wire;
    /// What it writes.
    type Out: Wire;

    /// Builds the processor from its configuration.
    fn new(config: Self::Config) -> Self;

    /// Topics it reads, all with the same partition count (co-partitioned by key).
    fn inputs(&self) -> Vec<String>;

    /// State stores it uses (names for [`Ctx::store`]).
    fn stores(&self) -> &'static [&'static str] {
        &[]
    }

    /// Topics every instance reads in full, from the start, whatever partitions it owns —
    /// reference data such as exchange rates (Kafka Streams' global tables). Keep them small.
    fn global_inputs(&self) -> Vec<String> {
        Vec::new()
    }

    /// Applies a record of a global input. This is the one place a processor keeps state in
    /// `self`: every instance rebuilds it from the global topics when it starts.
    fn on_global(&mut self, _input: &Input<Self::In>) {}

    /// Handles one record.
    fn process(&mut self, input: &Input<Self::In>, ctx: &mut Ctx<'_, Self::Out>) -> Result<(), ProcessError>;

    /// Handles a timer set with [`Ctx::set_timer`], when the partition's stream time reaches it.
    fn on_timer(&mut self, _timer: &Timer, _ctx: &mut Ctx<'_, Self::Out>) -> Result<(), ProcessError> {
        Ok(())
    }
}

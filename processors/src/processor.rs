//! The `Processor` trait: business logic only. The runtime owns partitions, state, commits,
//! retries, the DLQ and metrics.

use serde::de::DeserializeOwned;

use crate::ctx::Ctx;
use crate::error::ProcessError;
use crate::flow::Flow;
use crate::state::timers::Timer;
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
    /// Logical time of this step (ms): the record's timestamp, or the stream time when the
    /// record came late (what [`Ctx::time`] reads).
    pub timestamp: i64,
    /// Record key.
    pub key: String,
    /// The step's identity: what orders records of the same time deterministically (for a
    /// processor that holds records back and applies them later in their order).
    pub cause: u64,
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

    /// Its name: [`Processor::NAME`], unless one type runs as several processors whose
    /// names are known only when they start (SQL processors, one per file).
    fn name(&self) -> &'static str {
        Self::NAME
    }

    /// What it reads — all topics with the same partition count (co-partitioned by key) —
    /// in which orders, and what each input group and its timers may write
    /// ([`Flow`], docs/ARCHITECTURE.md "Time and order"). Emitting to a topic the flow does
    /// not declare for the group being processed is a permanent error.
    fn flow(&self) -> Flow;

    /// Topics it reads (from [`Processor::flow`]).
    fn inputs(&self) -> Vec<String> {
        self.flow().inputs()
    }

    /// The names of the state stores it uses: its [`Store`](crate::Store) constants'
    /// (`&[ORDERS.name, EARLY.name]`).
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

    /// Handles a timer set with [`Ctx::set_timer`], once every input group has passed it.
    fn on_timer(&mut self, _timer: &Timer, _ctx: &mut Ctx<'_, Self::Out>) -> Result<(), ProcessError> {
        Ok(())
    }
}

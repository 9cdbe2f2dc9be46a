//! Stream processors and the runtime that runs them.
//!
//! A processor is one struct in one file implementing [`Processor`] — business logic only —
//! plus one line in [`registry`]. The runtime ([`runtime`]) owns everything else: partitions
//! (as tasks), state stores backed by a changelog, exactly-once commits (Kafka transactions,
//! or the embedded log's atomic commits), retries, the dead-letter topics, timers and
//! metrics. [`TestDriver`] runs any processor, or a chain, on in-memory records with
//! controllable time — no broker, no disk.

// The crate's own name inside it too, so that a processor's file reads the same here and in
// docs/ADDING-A-PROCESSOR.md (`use storeflow_processors::…`).
extern crate self as storeflow_processors;

pub mod ctx;
pub mod dlq;
pub mod driver;
pub mod error;
pub mod flow;
pub mod fraud;
pub mod geo;
mod ids;
pub mod inventory;
pub mod metrics;
pub mod orders;
pub mod payments;
pub mod recommendations;
pub mod sales;
pub mod processor;
pub mod runtime;
pub mod state;
pub mod testing;
pub mod wire;

pub use ctx::Ctx;
pub use driver::TestDriver;
pub use error::{ProcessError, Result, RuntimeError};
pub use flow::{Emit, Flow, Group};
pub use processor::{Input, Processor};
pub use runtime::task::{DynProcessor, Step, dlq_headers};
pub use runtime::topology::{Node, Topology};
pub use runtime::{Idle, Runtime, RuntimeConfig, StateBackend};
pub use state::{Store, Timer};
pub use wire::Wire;

/// How a registered processor is built from `[processors.<name>]` (JSON; `null` means
/// defaults).
pub type Build = std::sync::Arc<dyn Fn(&serde_json::Value) -> Result<Box<dyn DynProcessor>> + Send + Sync>;

/// A registered processor: how to build it from its configuration.
#[derive(Clone)]
pub struct Registration {
    /// [`Processor::name`].
    pub name: &'static str,
    /// Builds it from `[processors.<name>]` (JSON); `null` means defaults.
    pub build: Build,
}

/// Builds processor `P` from a JSON config (defaults for `null`).
pub fn build<P: Processor>(config: &serde_json::Value) -> Result<Box<dyn DynProcessor>> {
    let cfg: P::Config = if config.is_null() {
        P::Config::default()
    } else {
        serde_json::from_value(config.clone())
            .map_err(|e| RuntimeError::Setup(format!("[processors.{}]: {e}", P::NAME)))?
    };
    Ok(Box::new(P::new(cfg)))
}

/// The processors of `registrations` as one graph, with their task counts from the log's
/// topics: what progress across processors is computed over. `config(name)` gives a
/// processor's `[processors.<name>]` (JSON, `null` for defaults).
pub fn topology(log: &dyn storeflow_ingest::Log, registrations: &[Registration], config: &dyn Fn(&str) -> serde_json::Value) -> Result<runtime::topology::Topology> {
    let infos = log.describe_topics()?;
    let mut nodes = Vec::new();
    for reg in registrations {
        let processor = (reg.build)(&config(reg.name))?;
        let flow = processor.flow();
        let first = flow.inputs().into_iter().next().unwrap_or_default();
        let tasks = infos.iter().find(|i| i.name == first).map(|i| i.partitions.len() as u32).unwrap_or(0);
        nodes.push(runtime::topology::Node { name: reg.name.to_string(), flow, globals: processor.global_inputs(), tasks });
    }
    runtime::topology::Topology::new(nodes)
}

/// Defines `registry()`: every processor storeflow runs, in order.
#[macro_export]
macro_rules! registry {
    ($($p:path),* $(,)?) => {
        /// Every processor storeflow runs, in order. Adding one is one line here.
        pub fn registry() -> Vec<$crate::Registration> {
            vec![$($crate::Registration { name: <$p as $crate::Processor>::NAME, build: std::sync::Arc::new($crate::build::<$p>) }),*]
        }
    };
}

registry!(
    inventory::Inventory,
    orders::Orders,
    fraud::Fraud,
    recommendations::Recommendations,
    sales::Sales,
    payments::Payments,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processor_names_are_unique_snake_case() {
        let names: Vec<&str> = registry().iter().map(|r| r.name).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "duplicate processor names: {names:?}");
        for n in names {
            assert!(n.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "`{n}` is not snake_case");
        }
    }
}

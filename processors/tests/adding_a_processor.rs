//! docs/ADDING-A-PROCESSOR.md, followed exactly: its step 1 (the processor's file) and step
//! 3 (its tests) are below verbatim, and its step 2 (the registry line) builds a registry
//! here. `the_guide_shows_this_file` fails when the guide and this file drift apart.

#[macro_use]
extern crate storeflow_processors;

#[allow(dead_code)]
mod views {
//! Counts product views per product and, every `every` views, emits the product as
//! trending in its category.

use serde::Deserialize;
use storeflow_avro::{Event, RecommendationsUpdated, ScoredProduct, Timestamp, Topic};
use storeflow_processors::{Ctx, Flow, Input, ProcessError, Processor, Store};

/// `[processors.views]` in storeflow.toml; every field documented, defaults in `Default`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ViewsConfig {
    /// Emit an update every this many views.
    pub every: u64,
}

impl Default for ViewsConfig {
    fn default() -> Self {
        ViewsConfig { every: 100 }
    }
}

/// Views so far, per product id.
const VIEWS: Store<u64> = Store::new("views");

pub struct Views(ViewsConfig);

impl Processor for Views {
    const NAME: &'static str = "views"; // consumer group, metrics label, config key
    type Config = ViewsConfig;
    type In = Event; // contract events in and out
    type Out = Event;

    fn new(config: ViewsConfig) -> Self {
        Views(config)
    }

    // What it reads, in one time order, and what it may write.
    fn flow(&self) -> Flow {
        Flow::new().group(&[Topic::Sessions.name()]).emits(&[Topic::Recommendations.name()]).build()
    }

    fn stores(&self) -> &'static [&'static str] {
        &[VIEWS.name]
    }

    fn process(&mut self, input: &Input<Event>, ctx: &mut Ctx<'_, Event>) -> Result<(), ProcessError> {
        let Event::ProductViewed(v) = &input.value else { return Ok(()) };
        let n = ctx.get(VIEWS, &v.product_id)?.unwrap_or(0) + 1;
        ctx.put(VIEWS, &v.product_id, &n)?;
        if n % self.0.every == 0 {
            // Goes to the event's topic under its key, in the step's transaction.
            ctx.emit(Event::RecommendationsUpdated(RecommendationsUpdated {
                event_id: ctx.event_id(&["trending", &v.product_id, &n.to_string()]),
                occurred_at: Timestamp(ctx.time()),
                product_id: String::new(),
                kind: "trending".into(),
                items: vec![ScoredProduct { product_id: v.product_id.clone(), score: n as f64 }],
                session_id: None,
                category: Some(v.category.clone()),
                version: n as i64,
            }));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use storeflow_avro::ProductViewed;
    use storeflow_processors::TestDriver;

    const T0: i64 = 1_764_000_000_000;

    fn viewed(n: u32, product: &str, at: i64) -> Event {
        Event::ProductViewed(ProductViewed {
            event_id: format!("00000000-0000-4000-8000-{n:012}"),
            occurred_at: Timestamp(at),
            session_id: "s-1".into(),
            customer_id: None,
            product_id: product.into(),
            vendor_id: "v-1".into(),
            category: "shoes".into(),
        })
    }

    #[test]
    fn every_second_view_of_a_product_emits_it_as_trending() {
        let mut d = TestDriver::new(Views::new(ViewsConfig { every: 2 }));
        for (n, product) in ["p-1", "p-1", "p-2", "p-1", "p-1"].into_iter().enumerate() {
            d.pipe(viewed(n as u32, product, T0 + n as i64));
        }
        let updates = d.outputs::<Event>(Topic::Recommendations.name());
        assert_eq!(updates.len(), 2, "after the 2nd and the 4th view of p-1");
        assert_eq!(d.store("views", VIEWS, "p-1"), Some(4));
        assert_eq!(d.store("views", VIEWS, "p-2"), Some(1));
        assert!(d.dlq(Topic::Sessions.name()).is_empty());
    }
}
}

mod registered {
    use super::views;
    // Step 2's line, with the modules it names.
    use storeflow_processors::{fraud, inventory, orders, recommendations, sales};

    registry!(
        inventory::Inventory,
        orders::Orders,
        fraud::Fraud,
        recommendations::Recommendations,
        sales::Sales,
        views::Views,
    );

    #[test]
    fn the_registry_line_starts_the_new_processor_beside_the_others() {
        let names: Vec<&str> = registry().iter().map(|r| r.name).collect();
        assert_eq!(names, ["inventory", "orders", "fraud", "recommendations", "sales", "views"]);
        let views = registry().into_iter().find(|r| r.name == "views").unwrap();
        // Built from `[processors.views]` as storeflow.toml gives it; unknown keys refused.
        assert!((views.build)(&serde_json::json!({"every": 10})).is_ok());
        let err = (views.build)(&serde_json::json!({"evry": 10})).err().unwrap().to_string();
        assert!(err.contains("[processors.views]") && err.contains("evry"), "{err}");
    }
}

/// The guide's blocks, as written there, are in this file; and step 2's list is the
/// registry in processors/src/lib.rs with one line added.
#[test]
fn the_guide_shows_this_file() {
    let guide = include_str!("../../docs/ADDING-A-PROCESSOR.md");
    let this = include_str!("adding_a_processor.rs");
    let blocks: Vec<&str> = guide.split("```rust\n").skip(1).map(|b| b.split("```").next().unwrap()).collect();
    assert_eq!(blocks.len(), 3, "the guide has three Rust blocks");
    for (i, b) in [blocks[0], blocks[2]].into_iter().enumerate() {
        assert!(this.contains(b.trim_end()), "block {} of the guide is not in this file as written", [1, 3][i]);
    }
    let lib = include_str!("../src/lib.rs");
    let start = lib.find("\nregistry!(").expect("lib.rs invokes registry!") + 1;
    let real = &lib[start..start + lib[start..].find(");").unwrap() + 2];
    let expected = real.replace("\n);", "\n    views::Views,\n);");
    assert_eq!(blocks[1].trim_end(), expected, "step 2 is not lib.rs's registry with one line added");
}

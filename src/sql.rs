//! The SQL processors `storeflow run` starts beside the registered ones: the shipped files
//! and those of `[sql] dirs`, each planned, its output schema admitted by the compatibility
//! gate and registered, its topics created (docs/SQL-PROCESSORS.md).

use std::sync::Arc;

use anyhow::Context;
use storeflow_ingest::TopicSpec;
use storeflow_processors::{DynProcessor, Registration, RuntimeError};
use storeflow_sql::Query;

use crate::backends::Backends;
use crate::config::Config;

/// The currency `to_base` converts to: the sales processor's, so both agree.
pub fn base_currency(config: &Config) -> String {
    config.processor_config("sales").get("base_currency").and_then(|v| v.as_str()).unwrap_or("EUR").to_string()
}

/// The SQL processors of `config`, parsed (nothing planned yet).
pub fn queries(config: &Config) -> anyhow::Result<Vec<Query>> {
    Ok(storeflow_sql::discover(&config.sql.dirs, config.sql.shipped)?)
}

/// Where each SQL output's schema versions are kept between runs.
pub fn history(config: &Config) -> std::path::PathBuf {
    config.data_dir.join("sql").join("schemas")
}

/// Every processor storeflow runs: the registered ones, then the SQL ones — planned, their
/// outputs admitted by the gate and registered, their topics created. A query that does not
/// plan, or whose output changed incompatibly, stops the start with the reason.
pub fn registrations(b: &Backends, config: &Config) -> anyhow::Result<Vec<Registration>> {
    let mut regs = storeflow_processors::registry();
    let app = config.runtime.app.clone();
    let base = base_currency(config);
    for q in queries(config)? {
        let processor = storeflow_sql::prepare(&q, &b.codec, &app, &base, Some(&history(config))).map_err(anyhow::Error::msg)?;
        let mut specs = vec![TopicSpec::new(&q.output, config.partitions)];
        if let Some(r) = q.repartition_topic(&app) {
            specs.push(TopicSpec::new(&r, config.partitions));
        }
        b.log.create_topics(&specs).with_context(|| format!("creating the topics of {}", q.name))?;
        drop(processor);
        let name: &'static str = Box::leak(q.name.clone().into_boxed_str());
        let (codec, app, base) = (b.codec.clone(), app.clone(), base.clone());
        regs.push(Registration {
            name,
            build: Arc::new(move |_config| {
                storeflow_sql::prepare(&q, &codec, &app, &base, None).map(|p| Box::new(p) as Box<dyn DynProcessor>).map_err(RuntimeError::Setup)
            }),
        });
    }
    Ok(regs)
}

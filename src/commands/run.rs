//! `storeflow run`: open the backends and serve until Ctrl-C.

use crate::backends::Backends;
use crate::report;

/// `storeflow run`.
pub fn run(b: &Backends) -> anyhow::Result<()> {
    for line in &b.banner {
        eprintln!("{line}");
    }
    let topics = b.log.describe_topics()?;
    let records: u64 = topics.iter().map(|t| t.records()).sum();
    println!(
        "storeflow is running: the log holds {} topics and {} records. Publish with `storeflow simulate` \
         from another terminal once this one stops (the embedded log has one owner at a time).",
        topics.len(),
        report::count(records)
    );
    println!("Not running yet in this build: processors, sinks and the HTTP API. Press Ctrl-C to stop.");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(tokio::signal::ctrl_c())?;
    println!("stopping");
    Ok(())
}

//! `storeflow sinks rebuild`: the sinks' [`rebuild`](storeflow_sinks::rebuild) with a
//! progress bar and a summary.

use anyhow::Context;

use crate::backends::Backends;
use crate::config::Config;
use crate::{pipeline, report};

/// `storeflow sinks rebuild SINK`.
pub fn rebuild(b: &Backends, config: &Config, sink: &str, quiet: bool) -> anyhow::Result<()> {
    let sinks = pipeline::sinks_config(config);
    let bar = report::progress(0, "records", quiet);
    let progress = |done: u64, total: u64| {
        bar.set_length(total);
        bar.set_position(done);
    };
    let r = storeflow_sinks::rebuild::rebuild(b.log.clone(), b.codec.clone(), &sinks, sink, &progress).with_context(|| format!("rebuilding the {sink} sink"))?;
    bar.finish_and_clear();
    let c = r.counts;
    println!("Rebuilt {} ({}) from the log in {:.1} s:", r.sink, r.store, r.elapsed.as_secs_f64());
    println!(
        "  {} records written, {} skipped (nothing to write for them), {} could not be written (already dead letters), {} new dead letters",
        report::count(c.written),
        report::count(c.skipped),
        report::count(r.known_dead),
        report::count(c.dead_lettered)
    );
    println!("  the old store is kept at {} — delete it once the new one looks right", r.replaced);
    println!("  {} is set to the rebuild's offsets on {} partitions: the next `storeflow run` goes on from there", r.group, r.partitions);
    Ok(())
}

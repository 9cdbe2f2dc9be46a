//! `storeflow topics`: what the log holds.

use crate::backends::Backends;
use crate::report;

/// `storeflow topics list`.
pub fn list(b: &Backends) -> anyhow::Result<()> {
    println!("{:<32} {:>10} {:>12}  {}", "topic", "partitions", "records", "offsets (start..end per partition)");
    for t in b.log.describe_topics()? {
        let ranges: Vec<String> = t.partitions.iter().map(|p| format!("{}..{}", p.start, p.end)).collect();
        println!(
            "{:<32} {:>10} {:>12}  {}{}",
            t.name,
            t.partitions.len(),
            report::count(t.records()),
            ranges.join(" "),
            if t.compact { "  (compacted)" } else { "" }
        );
    }
    Ok(())
}

//! `storeflow log`: check the embedded log's files for damage, and repair a corrupt
//! partition. Recovery cuts only torn tails (a crash's leftovers); corruption stays on disk,
//! reported, until an operator chooses the cut here (`ingest/src/embedded/repair.rs`).

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use anyhow::Context;
use storeflow_ingest::{LogError, TopicPartition, embedded};

use crate::report;

/// Parses `<topic>/<partition>` (topic names hold no `/`).
pub fn parse_partition(s: &str) -> Result<TopicPartition, String> {
    let (topic, p) = s
        .rsplit_once('/')
        .filter(|(t, _)| !t.is_empty())
        .ok_or_else(|| format!("`{s}` is not <topic>/<partition> (e.g. storefront.orders/0)"))?;
    let p: u32 = p.parse().map_err(|_| format!("`{p}` in `{s}` is not a partition number"))?;
    Ok(TopicPartition::new(topic, p))
}

/// `storeflow log check`: false (exit 1) when anything is corrupt.
pub fn check(dir: &Path) -> anyhow::Result<bool> {
    let r = embedded::check(dir)
        .map_err(plain)
        .with_context(|| format!("checking the embedded log in {}", dir.display()))?;
    let segments: usize = r.partitions.iter().map(|p| p.segments).sum();
    let records: u64 = r.partitions.iter().map(|p| p.records()).sum();
    let bytes: u64 = r.partitions.iter().map(|p| p.bytes).sum();
    let topics = r.partitions.iter().map(|p| &p.partition.topic).collect::<std::collections::BTreeSet<_>>().len();
    println!(
        "{}: {topics} topics, {} partitions, {} segments, {} readable records, {}",
        dir.display(),
        r.partitions.len(),
        report::count(segments as u64),
        report::count(records),
        report::bytes(bytes)
    );
    match &r.journal_corruption {
        Some(why) => println!("journal: CORRUPT: {why}"),
        None if r.journal_torn_bytes > 0 => println!(
            "journal: {}, a torn last entry of {} (left by a crash; the next start cuts it)",
            report::bytes(r.journal_bytes),
            report::bytes(r.journal_torn_bytes)
        ),
        None => println!("journal: {}, intact", report::bytes(r.journal_bytes)),
    }
    for p in &r.partitions {
        if p.torn_bytes > 0 {
            println!(
                "torn tail: {}: {} after offset {} (left by a crash; the next start cuts it, losing nothing acknowledged)",
                p.partition,
                report::bytes(p.torn_bytes),
                p.end.saturating_sub(1)
            );
        }
        if p.uncommitted > 0 {
            println!(
                "unfinished transaction: {}: {} records that never committed (the next start cuts them)",
                p.partition,
                report::count(p.uncommitted)
            );
        }
    }
    let corrupt: Vec<_> = r.partitions.iter().filter_map(|p| p.corruption.as_ref().map(|c| (p, c))).collect();
    for (p, c) in &corrupt {
        println!("\nCORRUPT {}", p.partition);
        println!("  segment   {}", c.segment.display());
        println!("  position  byte {} (offset {}): {}", c.position, c.offset, c.reason);
        println!("  serves    offsets {}..{}; reads from {} on and appends are refused", p.start, p.end, p.end);
        match &c.resumes_at {
            Some((seg, pos, off)) => println!(
                "  after it  {} intact records still on disk, from offset {off} at byte {pos} of {}",
                report::count(p.records_after_corruption),
                seg.display()
            ),
            None => println!("  after it  nothing: the damaged frame is the last one"),
        }
        println!(
            "  repair    storeflow log repair --data-dir {} --partition {} --truncate-at {}",
            dir.display(),
            p.partition,
            p.end
        );
        println!("            (drops the records from that offset on; restore the segment from a backup instead to keep them)");
    }
    if r.is_corrupt() {
        println!(
            "\n{} corrupt partition(s){}.",
            corrupt.len(),
            if r.journal_corruption.is_some() { " and a corrupt journal" } else { "" }
        );
        return Ok(false);
    }
    println!("No corruption.");
    Ok(true)
}

/// `storeflow log repair`: false (exit 1) when refused or declined.
pub fn repair(dir: &Path, partition: &TopicPartition, truncate_at: u64, yes: bool) -> anyhow::Result<bool> {
    let plan = embedded::plan_repair(dir, partition, truncate_at)
        .map_err(plain)
        .with_context(|| format!("planning the repair of {partition} in {}", dir.display()))?;
    let c = &plan.corruption;
    println!("{partition} is corrupt at offset {} ({}, byte {}: {}).", c.offset, c.segment.display(), c.position, c.reason);
    println!("Truncating it at offset {truncate_at} drops:");
    if plan.readable_records > 0 {
        println!(
            "  {} readable records (offsets {truncate_at}..{})",
            report::count(plan.readable_records),
            plan.end
        );
    }
    println!(
        "  {} intact records on disk past the corruption (only a backup of the segment could bring them back)",
        report::count(plan.records_after_corruption)
    );
    println!(
        "  {} in all: {} from byte {}{}",
        report::bytes(plan.bytes),
        plan.truncated.0.display(),
        plan.truncated.1,
        if plan.deleted.is_empty() { String::new() } else { format!(", and {} later segment files", plan.deleted.len()) }
    );
    println!("Consumer groups that committed past offset {truncate_at} resume at it.");
    if !yes {
        if !std::io::stdin().is_terminal() {
            eprintln!("Refusing without --yes: not run from a terminal. Nothing was changed.");
            return Ok(false);
        }
        print!("Truncate {partition} at offset {truncate_at}? Type `yes` to go on: ");
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if answer.trim() != "yes" {
            println!("Nothing was changed.");
            return Ok(false);
        }
    }
    let done = embedded::repair(dir, partition, truncate_at)
        .map_err(plain)
        .with_context(|| format!("repairing {partition} in {}", dir.display()))?;
    println!(
        "Truncated {partition} at offset {truncate_at}: dropped {} records and {}. It serves offsets below {truncate_at} and takes appends again.",
        report::count(done.readable_records + done.records_after_corruption),
        report::bytes(done.bytes)
    );
    Ok(true)
}

/// The library says "invalid configuration" for a refused check or repair; here it is the
/// command line that asked for it, so the message stands alone.
fn plain(e: LogError) -> anyhow::Error {
    match e {
        LogError::InvalidConfig(m) => anyhow::anyhow!(m),
        e => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_parse_as_topic_slash_number() {
        assert_eq!(parse_partition("storefront.orders/3"), Ok(TopicPartition::new("storefront.orders", 3)));
        assert!(parse_partition("storefront.orders").is_err());
        assert!(parse_partition("/3").is_err());
        assert!(parse_partition("t/x").is_err());
    }
}

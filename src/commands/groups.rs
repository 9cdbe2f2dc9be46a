//! `storeflow groups`: the processors' and sinks' consumer groups — how far behind the log
//! each is (`list`, `describe`), and moving a sink group's offsets (`reset`).
//!
//! Reads the groups' committed offsets and the partitions' watermarks through the `Log`
//! trait (both backends); `reset --execute` writes the group's offsets and nothing else.
//!
//! The groups are named like the parts that own them: `<app>.<processor>`
//! ([`group_of`]) and `<app>.sink.<sink>` (`SinksConfig::group`). A processor's partitions
//! are its inputs; a sink's are those its group has committed offsets for (a sink knows its
//! topics only once its store is open).

use std::collections::BTreeSet;

use anyhow::{Context, bail};
use storeflow_ingest::{LogError, TopicPartition};
use storeflow_processors::runtime::progress::progress_topic;
use storeflow_processors::runtime::{changelog_of, group_of};

use crate::backends::Backends;
use crate::cli::ResetTo;
use crate::config::Config;
use crate::{pipeline, report};

/// What owns a group.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owner {
    Processor(&'static str),
    Sink(String),
}

impl Owner {
    fn kind(&self) -> &'static str {
        match self {
            Owner::Processor(_) => "processor",
            Owner::Sink(_) => "sink",
        }
    }
}

/// A processor's or sink's group and the partitions it reads.
struct Group {
    name: String,
    owner: Owner,
    partitions: Vec<TopicPartition>,
}

/// One partition of a group: committed offset (the next to read), start and end.
struct Row {
    tp: TopicPartition,
    committed: Option<u64>,
    start: u64,
    end: u64,
}

impl Row {
    /// Records not read yet: from the committed offset (or, with none, from the start,
    /// where the group's consumers begin) to the end.
    fn lag(&self) -> u64 {
        self.end.saturating_sub(self.committed.unwrap_or(self.start).max(self.start))
    }
}

/// Every processor group and every sink group (enabled in the configuration, or with
/// committed offsets on the log).
fn groups(b: &Backends, config: &Config) -> anyhow::Result<Vec<Group>> {
    let app = &config.runtime.app;
    let infos = b.log.describe_topics()?;
    let partitions_of = |topic: &str| -> Vec<TopicPartition> {
        infos
            .iter()
            .find(|i| i.name == topic)
            .map(|i| i.partitions.iter().map(|p| TopicPartition::new(topic, p.partition)).collect())
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for reg in storeflow_processors::registry() {
        let processor = (reg.build)(&config.processor_config(reg.name)).with_context(|| format!("configuring the {} processor", reg.name))?;
        let partitions = processor.inputs().iter().flat_map(|t| partitions_of(t)).collect();
        out.push(Group { name: group_of(app, reg.name), owner: Owner::Processor(reg.name), partitions });
    }
    let sinks = pipeline::sinks_config(config);
    let prefix = format!("{app}.sink.");
    let mut names: BTreeSet<String> = sinks.describe().into_iter().map(|(n, _)| n.to_string()).collect();
    for g in b.log.list_groups()? {
        if let Some(n) = g.strip_prefix(&prefix)
            && !n.is_empty()
            && !n.contains('.')
        {
            names.insert(n.to_string());
        }
    }
    let every: Vec<TopicPartition> = infos.iter().flat_map(|i| partitions_of(&i.name)).collect();
    for n in names {
        let group = sinks.group(&n);
        let committed = b.log.committed_offsets(&group, &every)?;
        let partitions = every.iter().zip(committed).filter(|(_, c)| c.is_some()).map(|(tp, _)| tp.clone()).collect();
        out.push(Group { name: group, owner: Owner::Sink(n), partitions });
    }
    Ok(out)
}

fn find(b: &Backends, config: &Config, name: &str) -> anyhow::Result<Group> {
    let all = groups(b, config)?;
    let known: Vec<String> = all.iter().map(|g| g.name.clone()).collect();
    all.into_iter()
        .find(|g| g.name == name)
        .with_context(|| format!("no processor or sink group named {name} (known: {})", known.join(", ")))
}

fn rows(b: &Backends, g: &Group) -> anyhow::Result<Vec<Row>> {
    let committed = b.log.committed_offsets(&g.name, &g.partitions)?;
    let marks = b.log.watermarks(&g.partitions)?;
    Ok(g.partitions
        .iter()
        .zip(committed)
        .zip(marks)
        .map(|((tp, committed), (start, end))| Row { tp: tp.clone(), committed, start, end })
        .collect())
}

fn members(b: &Backends, group: &str) -> anyhow::Result<String> {
    Ok(match b.log.group_members(group)? {
        Some(n) => n.to_string(),
        None => "?".to_string(),
    })
}

/// `storeflow groups list`.
pub fn list(b: &Backends, config: &Config) -> anyhow::Result<()> {
    println!("{:<36} {:<10} {:>10} {:>12} {:>8}", "group", "kind", "partitions", "lag", "members");
    for g in groups(b, config)? {
        let rows = rows(b, &g)?;
        let lag: u64 = rows.iter().map(Row::lag).sum();
        let never = rows.iter().all(|r| r.committed.is_none());
        println!(
            "{:<36} {:<10} {:>10} {:>12} {:>8}{}",
            g.name,
            g.owner.kind(),
            rows.len(),
            report::count(lag),
            members(b, &g.name)?,
            if never { "  (no offsets committed yet)" } else { "" }
        );
    }
    Ok(())
}

/// `storeflow groups describe GROUP`.
pub fn describe(b: &Backends, config: &Config, name: &str) -> anyhow::Result<()> {
    let g = find(b, config, name)?;
    let rows = rows(b, &g)?;
    let who = match &g.owner {
        Owner::Processor(p) => format!("processor {p}"),
        Owner::Sink(s) => format!("sink {s}"),
    };
    println!("group {} ({who}), {} live members", g.name, members(b, &g.name)?);
    if rows.is_empty() {
        println!("no committed offsets yet: its consumers start at the earliest offset.");
        return Ok(());
    }
    println!("{:<36} {:>12} {:>12} {:>12}", "partition", "committed", "end", "lag");
    for r in &rows {
        println!(
            "{:<36} {:>12} {:>12} {:>12}",
            r.tp.to_string(),
            r.committed.map_or("-".to_string(), |c| c.to_string()),
            r.end,
            r.lag()
        );
    }
    println!("total lag {}", rows.iter().map(Row::lag).sum::<u64>());
    Ok(())
}

/// `storeflow groups reset GROUP --to-…`: prints the plan; applies it with `execute`.
pub fn reset(b: &Backends, config: &Config, name: &str, to: &ResetTo, topic: Option<&str>, execute: bool) -> anyhow::Result<()> {
    let g = find(b, config, name)?;
    if let Owner::Processor(p) = g.owner {
        bail!(
            "{name} is the {p} processor's group: its offsets commit in one transaction with its state (changelog \
             {changelog}), its stream times and skip sets, and its progress on {progress}. Moved alone, \
             the offsets would replay records into state that already holds them (stock counted twice, orders \
             confirmed again) or skip records the state never saw. Resetting a processor is not supported; only \
             sink groups (`storeflow groups list`) can be reset (docs/OPERATIONS.md, Consumer groups).",
            changelog = changelog_of(&config.runtime.app, p),
            progress = progress_topic(&config.runtime.app),
        );
    }
    let mut rows = rows(b, &g)?;
    if let Some(t) = topic {
        rows.retain(|r| &*r.tp.topic == t);
        if rows.is_empty() {
            let topics: BTreeSet<&str> = g.partitions.iter().map(|tp| &*tp.topic).collect();
            bail!("{name} has no committed offsets on {t} (it has on: {})", topics.into_iter().collect::<Vec<_>>().join(", "));
        }
    }
    if rows.is_empty() {
        bail!("{name} has no committed offsets yet: its consumers start at the earliest offset anyway");
    }
    let tps: Vec<TopicPartition> = rows.iter().map(|r| r.tp.clone()).collect();
    let targets: Vec<u64> = if to.to_earliest {
        rows.iter().map(|r| r.start).collect()
    } else if to.to_latest {
        rows.iter().map(|r| r.end).collect()
    } else {
        let ms = to.to_datetime.context("one of --to-earliest, --to-latest, --to-datetime")?;
        b.log.offsets_for_time(&tps, ms)?
    };
    println!("{:<36} {:>12} {:>12} {:>12}", "partition", "committed", "new", "lag after");
    for (r, t) in rows.iter().zip(&targets) {
        println!(
            "{:<36} {:>12} {:>12} {:>12}",
            r.tp.to_string(),
            r.committed.map_or("-".to_string(), |c| c.to_string()),
            t,
            r.end.saturating_sub(*t)
        );
    }
    let replayed: u64 = rows.iter().zip(&targets).map(|(r, t)| r.end.saturating_sub(*t)).sum();
    if !execute {
        println!("\nDry run: nothing changed. Add --execute to apply it (the sink then reads {} records again when it next starts).", report::count(replayed));
        return Ok(());
    }
    let offsets: Vec<(TopicPartition, u64)> = tps.into_iter().zip(targets).collect();
    match b.log.reset_offsets(name, &offsets) {
        Ok(()) => {}
        Err(LogError::NotOwner { .. }) => {
            bail!("{name} has live members: stop the storeflow processes that run it, then reset again")
        }
        Err(e) => return Err(e).with_context(|| format!("resetting the offsets of {name}")),
    }
    println!("\nReset {} partitions of {name}: the sink reads {} records again when it next starts.", offsets.len(), report::count(replayed));
    Ok(())
}

//! The command line: `storeflow --help` is the first page of the manual.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// storeflow — the event backbone of a multi-vendor marketplace.
///
/// Every storefront action (views, carts, orders, payments, shipments, returns, stock moves,
/// catalog changes) is an Avro event on a log. Stream processors keep inventory balanced,
/// drive orders through their lifecycle, score fraud and learn recommendations; sinks land
/// the results in a read model, a search index and analytics; an HTTP API takes writes and
/// serves reads.
///
/// With no configuration everything runs embedded in one process, data under ./data.
/// Point it at real services with storeflow.toml or STOREFLOW__* environment variables
/// (see `storeflow config --help`).
#[derive(Debug, Parser)]
#[command(name = "storeflow", version, propagate_version = true, max_term_width = 100)]
#[command(after_help = "First steps:\n  storeflow demo                  run everything on simulated traffic and show what flowed\n  storeflow simulate --events 1e5 publish simulated traffic into ./data\n  storeflow topics list           what the log holds\n  storeflow schemas check         is every schema change backward compatible?")]
pub struct Cli {
    /// Configuration file (default: ./storeflow.toml when it exists).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Log verbosity: error, warn, info, debug or trace (or a tracing filter).
    #[arg(long, global = true, default_value = "warn", env = "STOREFLOW_LOG")]
    pub log: String,

    #[command(subcommand)]
    pub command: Command,
}

/// Where data lives and where the API listens.
#[derive(Debug, Args, Clone, Default)]
pub struct Place {
    /// Directory of the embedded log and stores [default: ./data, or `data_dir` in the config].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Address of the HTTP API [default: 127.0.0.1:8080, or `listen` in the config].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// Address of the schema registry `storeflow run` serves (Confluent REST API; "" turns it
    /// off) [default: 127.0.0.1:8081, or `registry_listen` in the config].
    #[arg(long, value_name = "ADDR")]
    pub registry_listen: Option<String>,
}

/// How much simulated traffic.
#[derive(Debug, Args, Clone)]
pub struct Traffic {
    /// Number of events to publish (accepts 20000, 2e4, 20k).
    #[arg(long, default_value = "20000", value_parser = parse_count)]
    pub events: u64,

    /// Events per second of wall-clock time; 0 publishes as fast as the log takes them.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,

    /// Seed of the simulation: the same seed gives the same events. Without it, the first
    /// seed from 42 up that this log has not run yet (a seed that already ran would place
    /// the same orders again); a --seed that already ran is refused.
    #[arg(long)]
    pub seed: Option<u64>,

    /// Share of orders placed by a simulated fraud ring (0 to 1).
    #[arg(long, default_value_t = 0.01)]
    pub fraud_ring: f64,

    /// Hide the progress bar (it is hidden anyway when output is not a terminal).
    #[arg(long)]
    pub quiet: bool,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run storeflow: the log, the processors, the sinks and the HTTP API, until Ctrl-C.
    ///
    /// The API listens on `--listen` (default 127.0.0.1:8080; OpenAPI at /openapi.json). On a
    /// fresh data dir it writes one admin API key to <data-dir>/admin.key (mode 0600), and
    /// prints it once only when stdout is a terminal. The schema registry the records' ids
    /// refer to is served over the Confluent REST API on `--registry-listen` (default
    /// 127.0.0.1:8081), for stock Confluent clients (docs/PRODUCING.md).
    Run(Place),

    /// Run storeflow on simulated storefront traffic, then show what flowed through it.
    ///
    /// The README's first command. Publishes `--events` simulated events through the same
    /// ingest path the API uses, reads every one back from the log, and prints a summary.
    Demo {
        #[command(flatten)]
        place: Place,
        #[command(flatten)]
        traffic: Traffic,
    },

    /// Publish realistic simulated storefront traffic into the log.
    ///
    /// Sessions browse, search, add to cart and check out; orders span vendors, warehouses
    /// and currencies; payments mostly succeed; shipments, deliveries, cancellations,
    /// returns, refunds, stock receipts and catalog changes follow.
    Simulate {
        #[command(flatten)]
        place: Place,
        #[command(flatten)]
        traffic: Traffic,
    },

    /// Inspect and check the Avro event contract.
    #[command(subcommand)]
    Schemas(SchemasCommand),

    /// Inspect the log's topics.
    #[command(subcommand)]
    Topics(TopicsCommand),

    /// Run stream processors only (no API): scale out by starting more of these with the
    /// same configuration; instances share partitions, and state moves with them.
    Process {
        #[command(flatten)]
        place: Place,
        /// Run only these processors (comma-separated); all by default.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },

    /// Inspect dead-letter topics and put their records back.
    #[command(subcommand)]
    Dlq(DlqCommand),

    /// Check the embedded log's files for damage, and repair a corrupt partition.
    #[command(subcommand)]
    Log(LogCommand),

    /// Print the effective configuration (defaults, file and STOREFLOW__* merged).
    ///
    /// Keys: data_dir, listen, registry_listen, registry_basic_auth, partitions, [log] segment_bytes, retention_hours,
    /// retention_bytes, fsync (always|interval|never), fsync_interval_ms; [kafka] brokers,
    /// [kafka.properties]; [schema_registry] url; [stripe] api_base; [sinks] data_dir, app,
    /// base_currency, and per sink [sinks.<name>] enabled plus its store, the one place it
    /// is named: [sinks.read_model] postgres_url, [sinks.analytics.clickhouse] url,
    /// [sinks.search.elasticsearch] url. Environment: STOREFLOW__LOG__FSYNC=always,
    /// STOREFLOW__KAFKA__BROKERS=host:9092, STOREFLOW__SINKS__READ_MODEL__POSTGRES_URL=…, …
    Config,
}

/// `storeflow schemas …`
#[derive(Debug, Subcommand)]
pub enum SchemasCommand {
    /// Check every schema against its frozen versions (BACKWARD_TRANSITIVE) and the
    /// contract's conventions; exits 1 on any incompatible change.
    Check(SchemaDirs),
    /// Freeze new and changed schemas into the history as their next version (do it when a
    /// release ships the change).
    Freeze(SchemaDirs),
    /// List every event type with its topic, key and schema id.
    List,
    /// Validate JSON events against the contract, naming the field at fault.
    ///
    /// Reads a JSON object, an array of objects, or one object per line (JSON Lines) from
    /// FILE or standard input — the same validation the API applies. Exits 1 if any fails.
    Validate {
        /// File to read; `-` or nothing reads standard input.
        file: Option<PathBuf>,
    },
    /// Print an example event of a type as JSON (what the API accepts).
    Example {
        /// Event type, e.g. OrderPlaced.
        name: String,
    },
}

/// Where the schemas are.
#[derive(Debug, Args)]
pub struct SchemaDirs {
    /// Current schemas.
    #[arg(long, default_value = "avro/schemas")]
    pub dir: PathBuf,
    /// Frozen versions (`<Name>/v<N>.avsc`).
    #[arg(long, default_value = "avro/history")]
    pub history: PathBuf,
}

/// `storeflow dlq …`
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Show the records a processor gave up on, with the reason and where they came from.
    List {
        /// A topic (`storefront.orders`) or its dead-letter topic (`storefront.orders.dlq`).
        topic: String,
        /// Show at most this many (the newest).
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        place: Place,
    },
    /// Re-publish dead letters to their original topic (each one once, however often this
    /// runs) — after fixing what made them fail.
    Replay {
        /// A topic or its dead-letter topic.
        topic: String,
        #[command(flatten)]
        place: Place,
    },
}

/// `storeflow log …`
#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Scan the log's files, changing nothing; exits 1 on any corruption.
    ///
    /// Reads every partition's segments and the journal and summarizes partitions, segments,
    /// records, torn tails (a crash's leftovers, cut at the next start) and corruptions (with
    /// segment file, byte position and the repair command).
    #[command(after_help = "Example:\n  storeflow log check --data-dir ./data")]
    Check {
        /// Directory of the embedded log [default: ./data, or `data_dir` in the config].
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Truncate a corrupt partition at or before its corruption point.
    ///
    /// The records from `--truncate-at` on are dropped; the partition then serves reads and
    /// takes appends again. Prints what it drops and asks first (`--yes` skips the question and
    /// is required when not run from a terminal). Stop storeflow first.
    #[command(after_help = "Example (the offset `storeflow log check` names):\n  \
        storeflow log repair --data-dir ./data --partition storefront.orders/0 --truncate-at 1042")]
    Repair {
        /// Directory of the embedded log [default: ./data, or `data_dir` in the config].
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// The partition, as <topic>/<partition>.
        #[arg(long, value_name = "TOPIC/N", value_parser = crate::commands::log::parse_partition)]
        partition: storeflow_ingest::TopicPartition,
        /// The new end of the partition: the first offset dropped.
        #[arg(long, value_name = "OFFSET")]
        truncate_at: u64,
        /// Truncate without asking.
        #[arg(long)]
        yes: bool,
    },
}

/// `storeflow topics …`
#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// List topics with their partitions and how many records they hold.
    List(Place),
}

/// Parses `20000`, `2e4`, `20k`, `1.5M`.
pub fn parse_count(s: &str) -> Result<u64, String> {
    let s = s.trim().replace('_', "");
    let (num, mult) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1e3),
        Some('m' | 'M') => (&s[..s.len() - 1], 1e6),
        _ => (s.as_str(), 1.0),
    };
    let v: f64 = num.parse().map_err(|_| format!("`{s}` is not a count (try 20000, 2e4 or 20k)"))?;
    if !(v >= 0.0 && v * mult <= 1e12) {
        return Err(format!("`{s}` is out of range"));
    }
    Ok((v * mult).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_accept_plain_scientific_and_suffixed_forms() {
        assert_eq!(parse_count("20000"), Ok(20_000));
        assert_eq!(parse_count("2e4"), Ok(20_000));
        assert_eq!(parse_count("20k"), Ok(20_000));
        assert_eq!(parse_count("1.5M"), Ok(1_500_000));
        assert!(parse_count("lots").is_err());
        assert!(parse_count("-5").is_err());
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}

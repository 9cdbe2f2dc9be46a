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

    /// How log lines are written to stderr: `text` for people, `json` (one JSON object a
    /// line: timestamp, level, target, fields) for a log collector.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "STOREFLOW_LOG_FORMAT")]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line.
    Json,
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

    /// Date the traffic to end at this RFC 3339 time instead of now: the same --seed and
    /// --ending-at give the same events on any log (to replay one traffic on several
    /// brokers, or to compare two builds); personal data is sealed under each data
    /// directory's own keys (copy `data/keys` to seal it alike).
    #[arg(long, value_name = "RFC3339", value_parser = parse_datetime)]
    pub ending_at: Option<i64>,

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

    /// Inspect the log's topics, read their records as JSON and publish JSON events.
    #[command(subcommand)]
    Topics(TopicsCommand),

    /// The processors' and sinks' consumer groups: their lag, and moving their offsets.
    #[command(subcommand)]
    Groups(GroupsCommand),

    /// The sinks' stores: rebuild one from the log.
    #[command(subcommand)]
    Sinks(SinksCommand),

    /// Run stream processors only (no API): scale out by starting more of these with the
    /// same configuration; instances share partitions, and state moves with them.
    Process {
        #[command(flatten)]
        place: Place,
        /// Run only these processors (comma-separated); all by default.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Serve /metrics, /readyz and /healthz on this address [default: `ops_listen` in
        /// the config; empty: not served].
        #[arg(long, value_name = "ADDR")]
        ops_listen: Option<String>,
    },

    /// Inspect dead-letter topics and put their records back.
    #[command(subcommand)]
    Dlq(DlqCommand),

    /// Check the embedded log's files for damage, and repair a corrupt partition.
    #[command(subcommand)]
    Log(LogCommand),

    /// Check, explain and try SQL processors (docs/SQL-PROCESSORS.md).
    ///
    /// A SQL processor is one `.sql` file in `processors/sql/` (or a `[sql] dirs` folder): a
    /// header, then one SELECT. `storeflow run` runs every one it finds, with no build.
    #[command(subcommand, after_help = "Examples:\n  storeflow sql check processors/sql/hot_products.sql\n  storeflow sql explain processors/sql/revenue_by_category.sql\n  storeflow sql run processors/sql/abandoned_carts.sql --from-beginning")]
    Sql(SqlCommand),

    /// Print the effective configuration (defaults, file and STOREFLOW__* merged).
    ///
    /// Secrets are shown masked. Every key, with its default, is in storeflow.example.toml
    /// (printed below by `storeflow config --help`); copy it to storeflow.toml to start.
    #[command(after_long_help = concat!(
        "Examples:\n  storeflow config\n  STOREFLOW__KAFKA__BROKERS=127.0.0.1:9092 storeflow config\n  storeflow --config prod.toml config\n\n",
        "Every key (storeflow.example.toml):\n\n",
        include_str!("../storeflow.example.toml")
    ))]
    Config,
}

/// `storeflow sql …`
#[derive(Debug, Subcommand)]
pub enum SqlCommand {
    /// Parse, plan and type-check a SQL processor against the contract; print its output
    /// schema. Errors point at the line and column.
    #[command(after_help = "Example:\n  storeflow sql check processors/sql/hot_products.sql")]
    Check {
        /// The `.sql` file.
        file: PathBuf,
    },
    /// Show DataFusion's plan of a SQL processor's query.
    #[command(after_help = "Example:\n  storeflow sql explain processors/sql/revenue_by_category.sql")]
    Explain {
        /// The `.sql` file.
        file: PathBuf,
    },
    /// Run a SQL processor over what the log holds and print its results as a table (one
    /// partition, state in memory, every window closed at the end, nothing written).
    #[command(after_help = "Example:\n  storeflow demo --events 20000 && storeflow sql run processors/sql/hot_products.sql --from-beginning")]
    Run {
        /// The `.sql` file.
        file: PathBuf,
        /// Read every input from its first record (the only mode there is: say it).
        #[arg(long, required = true)]
        from_beginning: bool,
        /// Print at most this many rows.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        place: Place,
    },
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

    /// Print a topic's records as JSON lines, decoded.
    ///
    /// One line a record: {"topic","partition","offset","timestamp","key","type","value"}.
    /// `value` is the event as the API takes it (`storeflow schemas example`); on a
    /// dead-letter topic each line also has "dead_letter": the processor or sink that gave
    /// up, the reason and where the record came from. A value that does not decode is
    /// printed with "type": null and "error". Without --follow it stops at the end of the
    /// partitions as they were when it started.
    #[command(after_help = "Examples:\n  \
        storeflow topics tail storefront.orders --limit 5\n  \
        storeflow topics tail storefront.orders --from latest --follow | jq .value.order_id\n  \
        storeflow topics tail storefront.payments --from 2026-12-01T09:00:00Z --partition 2\n  \
        storeflow topics tail storefront.orders.dlq        # dead letters, with their reasons")]
    Tail {
        /// The topic (`storeflow topics list` shows them).
        topic: String,
        /// Where to start: earliest, latest, an offset (in every partition read), or an
        /// RFC 3339 time (the first record stamped at or after it, per partition).
        #[arg(long, default_value = "earliest", value_parser = parse_start, value_name = "WHERE")]
        from: Start,
        /// Keep reading new records until Ctrl-C.
        #[arg(long)]
        follow: bool,
        /// Stop after this many records.
        #[arg(long, value_name = "N")]
        limit: Option<u64>,
        /// Read only this partition.
        #[arg(long, value_name = "P")]
        partition: Option<u32>,
        #[command(flatten)]
        place: Place,
    },

    /// Publish JSON events (one a line) from standard input to a topic.
    ///
    /// Each line is an event as `POST /v1/events` takes it (`storeflow schemas example
    /// OrderPlaced`), validated the same way; its type must belong to the topic. Every line
    /// is checked before anything is published: one bad line (reported with its line number
    /// and field) and nothing is, unless --skip-invalid. Events go out with the contract's
    /// key, personal data sealed, like the API's.
    #[command(after_help = "Examples:\n  \
        storeflow topics produce storefront.inventory < stock.jsonl\n  \
        storeflow schemas example StockReceived | jq -c . | storeflow topics produce storefront.inventory\n  \
        storeflow topics produce storefront.orders --skip-invalid < orders.jsonl")]
    Produce {
        /// The topic.
        topic: String,
        /// Publish the valid lines and report the invalid ones, instead of publishing nothing.
        #[arg(long)]
        skip_invalid: bool,
        #[command(flatten)]
        place: Place,
    },
}

/// Where `topics tail` starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The oldest record held.
    Earliest,
    /// Only records published from now on.
    Latest,
    /// This offset (clamped to what the partition holds).
    Offset(u64),
    /// The first record stamped at or after this time (ms since the epoch).
    Time(i64),
}

/// Parses `earliest`, `latest`, an offset or an RFC 3339 time.
pub fn parse_start(s: &str) -> Result<Start, String> {
    match s {
        "earliest" => Ok(Start::Earliest),
        "latest" => Ok(Start::Latest),
        _ => match s.parse::<u64>() {
            Ok(o) => Ok(Start::Offset(o)),
            Err(_) => parse_datetime(s)
                .map(Start::Time)
                .map_err(|_| format!("`{s}` is not earliest, latest, an offset or an RFC 3339 time (2026-12-01T09:00:00Z)")),
        },
    }
}

/// Parses an RFC 3339 time into ms since the epoch.
pub fn parse_datetime(s: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("`{s}` is not an RFC 3339 time such as 2026-12-01T09:00:00Z: {e}"))
}

/// `storeflow sinks …`
#[derive(Debug, Subcommand)]
pub enum SinksCommand {
    /// Replay the log into a fresh store of one sink, then swap it in for the live one.
    ///
    /// For a store that is damaged, lost, or written by an older sink: the sink runs alone
    /// into an empty store beside the live one (the embedded twins under
    /// <data_dir>/sinks/rebuild-<time>/; a new Postgres or ClickHouse database
    /// <db>_rebuild_<time>; a new Elasticsearch index <index>-rebuild-<time>), in a consumer
    /// group of its own, until it has read everything. Then the live store moves aside — kept
    /// as <data_dir>/sinks/replaced-<time>/, <db>_replaced_<time> or <index>-replaced-<time>
    /// until you delete it — the new one takes its place, and the sink's group is set to
    /// where the new store is, so the next `storeflow run` goes on from there. Records that
    /// cannot be written are counted; their dead letters are not published twice.
    ///
    /// Stop the storeflow processes that run the sink first (refused while its group has
    /// live members, or while sessions use the Postgres database). docs/OPERATIONS.md says
    /// how each store is swapped.
    #[command(after_help = "Examples:
          storeflow sinks rebuild read_model --data-dir ./data
          storeflow sinks rebuild search
          STOREFLOW__SINKS__READ_MODEL__POSTGRES_URL=postgres://storeflow@127.0.0.1/storeflow storeflow sinks rebuild read_model")]
    Rebuild {
        /// The sink: read_model, analytics or search.
        sink: String,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        #[command(flatten)]
        place: Place,
    },
}

/// `storeflow groups …`
#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// List the processors' and sinks' consumer groups with their total lag.
    #[command(after_help = "Example:\n  storeflow groups list --data-dir ./data")]
    List(Place),

    /// Show a group's committed offset, end offset and lag per partition.
    #[command(after_help = "Examples:\n  \
        storeflow groups describe storeflow.inventory\n  \
        storeflow groups describe storeflow.sink.read_model")]
    Describe {
        /// The group (`storeflow groups list` names them).
        group: String,
        #[command(flatten)]
        place: Place,
    },

    /// Move a sink group's committed offsets: prints the plan, applies it with --execute.
    ///
    /// The sink re-reads from there when it next starts: after --to-earliest it rewrites its
    /// store from the log (its writes are idempotent, so a replay leaves the same rows);
    /// --to-latest skips what it has not read yet. Refused while the group has live members
    /// (on the embedded log storeflow must be stopped anyway). Processor groups are refused:
    /// their state, changelog and progress commit with their offsets, and moving the offsets
    /// alone would replay into existing state (see docs/OPERATIONS.md).
    #[command(after_help = "Examples:\n  \
        storeflow groups reset storeflow.sink.search --to-earliest             # the plan only\n  \
        storeflow groups reset storeflow.sink.search --to-earliest --execute\n  \
        storeflow groups reset storeflow.sink.analytics --to-datetime 2026-12-01T00:00:00Z --topic storefront.orders --execute")]
    Reset {
        /// The group.
        group: String,
        #[command(flatten)]
        to: ResetTo,
        /// Only this topic's partitions.
        #[arg(long, value_name = "TOPIC")]
        topic: Option<String>,
        /// Apply the plan (without it nothing changes).
        #[arg(long)]
        execute: bool,
        #[command(flatten)]
        place: Place,
    },
}

/// Where `groups reset` moves the offsets: one of the three.
#[derive(Debug, Args, Clone)]
#[group(required = true, multiple = false)]
pub struct ResetTo {
    /// To the oldest record held.
    #[arg(long)]
    pub to_earliest: bool,
    /// To the end: skip everything not read yet.
    #[arg(long)]
    pub to_latest: bool,
    /// To the first record stamped at or after this RFC 3339 time.
    #[arg(long, value_name = "RFC3339", value_parser = parse_datetime)]
    pub to_datetime: Option<i64>,
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

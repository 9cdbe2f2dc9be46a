//! How the runtime runs ([`RuntimeConfig`]), where task state lives, what a quiet input
//! means, and the names of a processor's consumer group and changelog.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::topology::Topology;

/// Where task state lives.
#[derive(Clone, Debug)]
pub enum StateBackend {
    /// In memory: every task restores from its changelog when it starts.
    Memory,
    /// One redb file per task under this directory (`<dir>/<processor>/<partition>.redb`).
    Redb(PathBuf),
}

/// How the runtime runs.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// The application id: prefix of consumer groups (`<app>.<processor>`), changelogs
    /// (`<app>.<processor>.changelog`), the progress topic (`<app>.progress`) and
    /// transactional ids. Two deployments on one Kafka cluster need different ones.
    pub app: String,
    /// Commit after this many records (per instance)…
    pub commit_records: u64,
    /// …or this much time, whichever comes first.
    pub commit_interval: Duration,
    /// Where state lives.
    pub state: StateBackend,
    /// Records per poll.
    pub max_poll: usize,
    /// What a quiet input means: live, time goes on (stream time follows the wall clock, so
    /// payment timeouts fire in quiet periods); for a bounded replay, the input is over.
    pub idle: Idle,
    /// Longest wait between retries of a record that failed transiently.
    pub max_backoff: Duration,
    /// A stable name for this instance. On Kafka it becomes the static group membership id
    /// (`group.instance.id`, KIP-345), so a restarted instance takes its partitions straight
    /// back instead of waiting out the session timeout.
    pub instance: Option<String>,
    /// Extra consumer properties (librdkafka names on Kafka).
    pub consumer_properties: Vec<(String, String)>,
    /// How long a group waits for a source input that has nothing buffered and nothing to
    /// fetch before it goes on without it (Kafka Streams' `max.task.idle.ms`). An input with
    /// records still to fetch is always waited for; one whose producer declared its
    /// progress is waited for exactly as far as that.
    pub max_task_idle: Duration,
    /// How much later than their cause records on a feedback edge are stamped (ms of event
    /// time): how far the two sides of a cycle (orders ⇄ inventory) may work ahead of each
    /// other. Part of the results: two runs must use the same value to agree.
    pub lookahead_ms: i64,
    /// How far ahead of the wall clock a source record may be dated: one past it is
    /// dead-lettered instead of moving stream time (`[time]`).
    pub time: storeflow_avro::TimeBounds,
    /// Every processor of the deployment, for progress across them; `None`: this
    /// processor alone (its derived inputs, if any, have no known writer).
    pub topology: Option<Arc<Topology>>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            app: "storeflow".to_string(),
            commit_records: 100_000,
            commit_interval: Duration::from_millis(100),
            state: StateBackend::Memory,
            max_poll: 5_000,
            idle: Idle::WallClock,
            max_backoff: Duration::from_secs(5),
            instance: None,
            consumer_properties: Vec::new(),
            max_task_idle: Duration::from_millis(100),
            lookahead_ms: 500,
            time: storeflow_avro::TimeBounds::default(),
            topology: None,
        }
    }
}

/// What an input that is caught up and quiet for `max_task_idle` means.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Idle {
    /// Live: time goes on. An idle source's stream time follows the wall clock, so timers
    /// fire in quiet periods — the one wall-clock input to processing.
    #[default]
    WallClock,
    /// A bounded replay: once every source of a group is idle its input is over, and stream
    /// time goes to the end, firing every timer left (Flink's end of input). Results then
    /// depend on the log alone — what reproducibility tests and backfills of a finished log
    /// use.
    EndOfInput,
}

/// The consumer group of a processor.
pub fn group_of(app: &str, name: &str) -> String {
    format!("{app}.{name}")
}

/// The changelog topic of a processor.
pub fn changelog_of(app: &str, name: &str) -> String {
    format!("{app}.{name}.changelog")
}

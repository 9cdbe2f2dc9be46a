//! The sink registry: what makes adding a sink one folder and one line.
//!
//! A sink implements two traits: [`Sink`], what the runner drives (topics, batching, the
//! write, retry-or-give-up), and [`Registered`], what the registry knows of it — its name,
//! its typed configuration `[sinks.<name>]`, how it opens its store and the query handle it
//! hands out. The list in `lib.rs` ([`registry!`](crate::registry!)) names every sink once;
//! [`SinksConfig`](crate::SinksConfig) reads, validates and prints each sink's section
//! through it, and [`Sinks`](crate::Sinks) starts the enabled ones and hands out their
//! handles. docs/ADDING-A-SINK.md walks through a new one.
//!
//! The registry erases the sinks' types the way the processors' does: a blanket
//! implementation over every [`Registered`] sink parses its configuration once, into its
//! own type, and keeps it behind [`DynConfig`].

use std::any::Any;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use serde::Serialize;
use serde::de::DeserializeOwned;
use storeflow_avro::Codec;
use storeflow_ingest::Log;
use tokio::runtime::Handle;

use crate::metrics::SinkMetrics;
use crate::runner::{RunnerSettings, Sink, SinkThread, spawn};
use crate::{Result, SinkError};

/// What every sink's configuration (`[sinks.<name>]`) is: documented fields with defaults
/// in `Default`, `deny_unknown_fields`, secrets that serialize and print masked
/// ([`crate::redact`]).
pub trait SinkConfig: Serialize + DeserializeOwned + Default + Clone + std::fmt::Debug + Send + Sync + 'static {
    /// Checks the values without connecting to anything.
    fn validate(&self) -> Result<()>;
    /// Where the sink writes, in words, for the start-up banner (credentials masked), e.g.
    /// `embedded SQLite, data/sinks/read_model.sqlite`.
    fn describe(&self, data_dir: &Path) -> String;
    /// The store this configuration writes to, as `storeflow sinks rebuild` stages a fresh
    /// one beside it ([`crate::rebuild`]). Default: a store the rebuild cannot stage.
    fn store(&self) -> Store {
        Store::Unsupported("the sink does not say where its store is (SinkConfig::store)".into())
    }
    /// This configuration writing to `store` instead (a fresh store of the same kind that
    /// a rebuild staged). Embedded stores move with `[sinks] data_dir`, so the default is the
    /// configuration unchanged.
    fn pointed_at(&self, _store: &Store) -> Self {
        self.clone()
    }
}

/// A sink's store, as a rebuild sees it.
#[derive(Clone, Debug)]
pub enum Store {
    /// Files or folders of this name under `[sinks] data_dir` (an embedded twin).
    Embedded(&'static [&'static str]),
    /// A Postgres database: the URL (its path names the database).
    Postgres(secrecy::SecretString),
    /// A ClickHouse database on a server (the fields of `[sinks.analytics.clickhouse]`).
    ClickHouse { url: String, user: String, password: Option<secrecy::SecretString>, database: String },
    /// An Elasticsearch index on a server (the fields of `[sinks.search.elasticsearch]`).
    Elasticsearch { url: String, username: Option<String>, password: Option<secrecy::SecretString>, index: String },
    /// A store a rebuild cannot stage yet, and why, in words.
    Unsupported(String),
}

/// What a sink is given to open its store and make its query handle.
#[derive(Clone, Debug)]
pub struct SinkContext {
    /// Folder of the embedded stores (`[sinks] data_dir`).
    pub data_dir: PathBuf,
    /// The currency amounts are also kept in (`[sinks] base_currency`).
    pub base_currency: String,
    /// The sinks' runtime: the stores' clients live on it and the handles' queries run on it.
    pub rt: Handle,
}

/// A sink the registry can run: its name, its configuration, its store and its handle.
///
/// `open` runs on the sinks' runtime, from a thread of its own, so its future need not be
/// `Send`.
#[allow(async_fn_in_trait)]
pub trait Registered: Sink + Sized {
    /// snake_case: the module, the config section `[sinks.<name>]`, the consumer group
    /// suffix (`<app>.sink.<name>`) and the metrics label.
    const NAME: &'static str;
    /// `[sinks.<name>]`; defaults when absent.
    type Config: SinkConfig;
    /// What readers (the API) query the store through: cheap to clone, `Send + Sync`.
    type Handle: Clone + Send + Sync + 'static;

    /// Opens (or creates) the store — migrations, DDL, an index — and whatever the sink
    /// rebuilds from it.
    async fn open(config: &Self::Config, cx: &SinkContext) -> Result<Self>;

    /// The query handle on the opened store.
    fn handle(&self, cx: &SinkContext) -> Self::Handle;
}

/// A registered sink: its name and how to make its configuration.
#[derive(Clone, Copy)]
pub struct Registration {
    /// [`Registered::NAME`].
    pub name: &'static str,
    defaults: fn() -> Box<dyn DynConfig>,
}

impl Registration {
    /// The registration of sink `S`.
    pub fn of<S: Registered>() -> Registration {
        Registration { name: S::NAME, defaults: || Box::new(Typed::<S>(S::Config::default(), PhantomData)) }
    }

    /// The sink's configuration with its defaults.
    pub fn defaults(&self) -> Box<dyn DynConfig> {
        (self.defaults)()
    }
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Registration").field(&self.name).finish()
    }
}

/// Defines `registry()`: every sink storeflow runs, in start order.
#[macro_export]
macro_rules! registry {
    ($($s:path),* $(,)?) => {
        /// Every sink storeflow runs, in start order. Adding one is one line here.
        pub fn registry() -> Vec<$crate::registry::Registration> {
            vec![$($crate::registry::Registration::of::<$s>()),*]
        }
    };
}

/// What a sink is started with besides its configuration.
pub struct Start<'a> {
    /// Store folder, base currency, runtime.
    pub cx: &'a SinkContext,
    /// The log it reads and dead-letters to.
    pub log: &'a Arc<dyn Log>,
    /// The event codec.
    pub codec: &'a Arc<Codec>,
    /// Its group, poll size and back-off.
    pub settings: RunnerSettings,
    /// The sinks' metrics.
    pub metrics: SinkMetrics,
    /// Set to stop every sink.
    pub stop: Arc<AtomicBool>,
}

/// A sink's query handle, its type erased ([`Sinks::handle`](crate::Sinks::handle) gives it
/// back typed).
pub type AnyHandle = Box<dyn Any + Send + Sync>;

/// A registered sink's configuration with its type erased: what
/// [`SinksConfig`](crate::SinksConfig) holds per sink.
pub trait DynConfig: Send + Sync {
    /// The typed configuration, for [`SinksConfig::sink`](crate::SinksConfig::sink).
    fn as_any(&self) -> &dyn Any;
    /// The typed configuration, for [`SinksConfig::sink_mut`](crate::SinksConfig::sink_mut).
    fn as_any_mut(&mut self) -> &mut dyn Any;
    /// A copy.
    fn clone_box(&self) -> Box<dyn DynConfig>;
    /// Replaces the values with `[sinks.<name>]` as read (JSON); unknown keys are refused.
    fn parse(&mut self, value: serde_json::Value) -> Result<()>;
    /// The values as they may be shown (secrets masked).
    fn to_json(&self) -> serde_json::Value;
    /// [`SinkConfig::validate`].
    fn validate(&self) -> Result<()>;
    /// [`SinkConfig::describe`].
    fn describe(&self, data_dir: &Path) -> String;
    /// [`SinkConfig::store`].
    fn store(&self) -> Store;
    /// [`SinkConfig::pointed_at`].
    fn pointed_at(&self, store: &Store) -> Box<dyn DynConfig>;
    /// `Debug` of the typed configuration.
    fn debug(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result;
    /// Opens the store and starts the sink on its own thread; returns the thread and the
    /// query handle.
    fn start(&self, start: Start<'_>) -> Result<(SinkThread, AnyHandle)>;
}

/// The configuration of sink `S`, behind [`DynConfig`].
struct Typed<S: Registered>(S::Config, PhantomData<fn() -> S>);

/// The typed configuration of `S` in `config`, if `config` is `S`'s.
pub(crate) fn typed<S: Registered>(config: &dyn DynConfig) -> Option<&S::Config> {
    config.as_any().downcast_ref::<Typed<S>>().map(|t| &t.0)
}

/// The typed configuration of `S` in `config`, if `config` is `S`'s.
pub(crate) fn typed_mut<S: Registered>(config: &mut dyn DynConfig) -> Option<&mut S::Config> {
    config.as_any_mut().downcast_mut::<Typed<S>>().map(|t| &mut t.0)
}

impl<S: Registered> DynConfig for Typed<S> {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn clone_box(&self) -> Box<dyn DynConfig> {
        Box::new(Typed::<S>(self.0.clone(), PhantomData))
    }

    fn parse(&mut self, value: serde_json::Value) -> Result<()> {
        self.0 = serde_json::from_value(value).map_err(|e| SinkError::Config(format!("[sinks.{}]: {e}", S::NAME)))?;
        Ok(())
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.0).expect("a sink's configuration serializes to JSON")
    }

    fn validate(&self) -> Result<()> {
        self.0.validate()
    }

    fn describe(&self, data_dir: &Path) -> String {
        self.0.describe(data_dir)
    }

    fn store(&self) -> Store {
        self.0.store()
    }

    fn pointed_at(&self, store: &Store) -> Box<dyn DynConfig> {
        Box::new(Typed::<S>(self.0.pointed_at(store), PhantomData))
    }

    fn debug(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.0, f)
    }

    fn start(&self, start: Start<'_>) -> Result<(SinkThread, AnyHandle)> {
        let Start { cx, log, codec, settings, metrics, stop } = start;
        let sink = on_runtime(&cx.rt, || S::open(&self.0, cx))?;
        let handle: AnyHandle = Box::new(sink.handle(cx));
        let thread = spawn(sink, log.clone(), codec.clone(), cx.rt.clone(), settings, metrics, stop)?;
        Ok((thread, handle))
    }
}

/// Runs the future `f` makes to completion on `rt`, from a thread of its own (so it works
/// whether or not the caller is inside an async runtime, and the future need not be `Send`).
fn on_runtime<T: Send, F: std::future::Future<Output = T>>(rt: &Handle, f: impl FnOnce() -> F + Send) -> T {
    std::thread::scope(|s| s.spawn(|| rt.block_on(f())).join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
}

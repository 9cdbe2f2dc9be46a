//! `storeflow sinks rebuild <sink>`: replay the log into a fresh store, then swap it in.
//!
//! The CQRS move: a store is a view of the log, so when it is damaged, or a sink's code
//! changed what it writes, the view is built again from the log instead of patched. Kafka
//! Connect has no command for it (one resets the connector's offsets by hand and truncates
//! the tables, with the old data gone before the new is there).
//!
//! [`rebuild`]:
//!
//! 1. refuses while the sink's group `<app>.sink.<name>` has live members (the stores are
//!    swapped under the sink; on the embedded log the data dir's `LOCK` already keeps a
//!    running `storeflow` out);
//! 2. stages an empty store of the same kind beside the live one ([`Store`]): the embedded
//!    twins under `<data_dir>/rebuild-<tag>/`, a Postgres read model in a new database
//!    `<db>_rebuild_<tag>`, ClickHouse analytics in a new database `<db>_rebuild_<tag>`, the
//!    Elasticsearch product index in a new index `<index>-rebuild-<tag>`;
//! 3. runs the sink alone into it, in a consumer group of its own
//!    (`<app>.sink.<name>.rebuild-<tag>`), from the start of the log until it has committed
//!    everything (progress through the caller's callback). Records it cannot write are the
//!    dead letters they were the first time: those already on the log (by topic, partition
//!    and offset, [`KnownDead`]) are counted, not published again;
//! 4. swaps: the live store moves aside, kept as `<data_dir>/replaced-<tag>/` or database
//!    `<db>_replaced_<tag>` (delete it when the new one looks right), and the staged one
//!    takes its place — Postgres renames both databases in one transaction; ClickHouse
//!    exchanges each table with the live one of its name (atomic per table, so the live
//!    database's materialized views go on feeding the rebuilt rollups), and the staged
//!    database, now holding the old tables, becomes `<db>_replaced_<tag>`; Elasticsearch,
//!    which cannot rename an index, clones the live one to `<index>-replaced-<tag>` and the
//!    staged one to the live name (hard links, under a write block) and deletes the sources;
//! 5. sets the sink's group to the offsets the rebuild committed, so the next `storeflow run`
//!    goes on from where the new store is. Store first, offsets second: a crash between the
//!    two leaves the new store with older offsets, and the sink writes those records again,
//!    which changes nothing (writes are idempotent). The other order would skip records.
//!
//! A sink whose configuration does not say where its store is
//! ([`SinkConfig::store`](crate::SinkConfig::store)) is refused with the reason, before
//! anything changes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use sqlx::{AssertSqlSafe, Connection};
use storeflow_avro::Codec;
use storeflow_ingest::{Log, TopicPartition};

use crate::config::SinksConfig;
use crate::registry::Store;
use crate::runner::KnownDead;
use crate::sinks::{SinkCounts, Sinks};
use crate::{Result, SinkError};

/// What a rebuild did.
#[derive(Debug)]
pub struct Rebuilt {
    /// The sink.
    pub sink: String,
    /// Where the new store is, in words (credentials masked).
    pub store: String,
    /// Where the old store was moved, in words.
    pub replaced: String,
    /// Records written, skipped and newly dead-lettered while rebuilding.
    pub counts: SinkCounts,
    /// Records that could not be written and whose dead letters were already on the log.
    pub known_dead: u64,
    /// The sink's group and how many partitions were set to the rebuild's offsets.
    pub group: String,
    /// Partitions set.
    pub partitions: usize,
    /// How long it took.
    pub elapsed: Duration,
}

/// How far a rebuild is: records of the sink's topics read so far, and in all (the log's
/// ends when the sink started).
pub type Progress<'a> = &'a dyn Fn(u64, u64);

/// Rebuilds sink `name` of `config` from `log` (see the module docs). `progress` hears the
/// records done and the total about every 200 ms.
pub fn rebuild(log: Arc<dyn Log>, codec: Arc<Codec>, config: &SinksConfig, name: &str, progress: Progress<'_>) -> Result<Rebuilt> {
    let started = Instant::now();
    config.validate()?;
    let Some(section) = config.section(name) else {
        return Err(SinkError::Config(format!("there is no sink `{name}`: the sinks are {}", config.names().join(", "))));
    };
    if !config.is_enabled(name) {
        return Err(SinkError::Config(format!("the {name} sink is not enabled ([sinks.{name}] enabled = false): it has no store to rebuild")));
    }
    let live_group = config.group(name);
    if let Some(n) = log.group_members(&live_group)?
        && n > 0
    {
        return Err(SinkError::Config(format!(
            "{live_group} has {n} live members: stop the storeflow processes that run the {name} sink, then rebuild (the stores are swapped under it)"
        )));
    }
    let store = section.store();
    let described = section.describe(&config.data_dir);
    let tag = chrono::Utc::now().format("%Y%m%d%H%M%S").to_string();
    let staged = Staged::prepare(&store, &config.data_dir, &tag)?;
    let mut staged_config = config.clone().only(&[name]);
    staged_config.set_section(name, section.pointed_at(&staged.store));
    if let Some(dir) = &staged.data_dir {
        staged_config.data_dir = dir.clone();
    }

    let known = Arc::new(known_dead(log.as_ref(), name)?);
    let group = format!("{live_group}.rebuild-{tag}");
    tracing::info!(sink = name, group, "rebuilding into {}", staged.describe());
    let sinks = Sinks::start_replay(log.clone(), codec, staged_config, group.clone(), known.clone())?;
    let topics = sinks.topics(name);
    let tps: Vec<TopicPartition> = log
        .describe_topics()?
        .into_iter()
        .filter(|t| topics.contains(&t.name))
        .flat_map(|t| t.partitions.into_iter().map(move |p| TopicPartition::new(&t.name, p.partition)))
        .collect();
    let total: u64 = log.watermarks(&tps)?.iter().map(|(start, end)| end - start).sum();
    loop {
        if let Some(f) = sinks.failure() {
            let _ = sinks.stop();
            return Err(SinkError::Config(format!("the rebuild stopped: {f}; the live store is untouched, the staged one is {}", staged.describe())));
        }
        let lag = sinks.lag()?.get(name).copied().unwrap_or(0);
        progress(total.saturating_sub(lag), total.max(lag));
        if lag == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let counts = sinks.counts().get(name).copied().unwrap_or_default();
    sinks.stop()?;
    // A partition the rebuild committed nothing on had nothing to read (it caught up), and
    // the live group's offset there, if any, is its end too: left as it is.
    let committed = log.committed_offsets(&group, &tps)?;
    let offsets: Vec<(TopicPartition, u64)> = tps.iter().zip(committed).filter_map(|(tp, c)| Some((tp.clone(), c?))).collect();

    let replaced = staged.swap(&store, &config.data_dir, &tag)?;
    log.reset_offsets(&live_group, &offsets)?;
    Ok(Rebuilt {
        sink: name.to_string(),
        store: described,
        replaced,
        counts,
        known_dead: known.met.load(Ordering::Relaxed),
        group: live_group,
        partitions: offsets.len(),
        elapsed: started.elapsed(),
    })
}

/// The dead letters sink `name` published, from every dead-letter topic on the log.
fn known_dead(log: &dyn Log, name: &str) -> Result<KnownDead> {
    let mut known = KnownDead::default();
    for t in log.describe_topics()? {
        if !t.name.ends_with(".dlq") || t.records() == 0 {
            continue;
        }
        for d in storeflow_ingest::dlq::list(log, &t.name)? {
            if d.processor == name {
                known.records.insert((d.topic, d.partition, d.offset));
            }
        }
    }
    Ok(known)
}

/// The fresh store a rebuild writes to.
struct Staged {
    /// The store, as the sink's configuration is pointed at it.
    store: Store,
    /// The sinks' data dir for it (embedded stores).
    data_dir: Option<PathBuf>,
    /// The staged Postgres database and the live one's name.
    postgres: Option<Postgres>,
    /// The live ClickHouse database and the staged one's name.
    clickhouse: Option<(crate::analytics::ClickHouseConfig, String)>,
    /// The live Elasticsearch index and the staged one's name.
    elasticsearch: Option<(crate::search::config::ElasticsearchConfig, String)>,
}

struct Postgres {
    /// The live URL with the maintenance database `postgres` as its path.
    admin: SecretString,
    live: String,
    staged: String,
}

impl Staged {
    /// Makes the empty store (a folder, a database) beside the live one.
    fn prepare(store: &Store, data_dir: &Path, tag: &str) -> Result<Staged> {
        match store {
            Store::Embedded(_) => {
                let dir = data_dir.join(format!("rebuild-{tag}"));
                if dir.exists() {
                    return Err(SinkError::Config(format!("{} exists: another rebuild started this second", dir.display())));
                }
                std::fs::create_dir_all(&dir).map_err(SinkError::io(format!("creating {}", dir.display())))?;
                Ok(Staged { store: store.clone(), data_dir: Some(dir), postgres: None, clickhouse: None, elasticsearch: None })
            }
            Store::Postgres(url) => {
                let live = database_of(url.expose_secret())?;
                let staged = sibling(&live, "rebuild", tag);
                let admin: SecretString = with_database(url.expose_secret(), "postgres").into();
                block_on(async {
                    let mut c = connect(&admin).await?;
                    let others = sessions(&mut c, &live).await?;
                    if others > 0 {
                        return Err(SinkError::Config(format!(
                            "{others} sessions are connected to database {live}: stop the storeflow processes that use it (its API reads it too), then rebuild (the databases are renamed under them)"
                        )));
                    }
                    // Identifiers cannot be bound; both names are quoted.
                    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {}", quote(&staged)))).execute(&mut c).await.map_err(SinkError::sql(format!("creating database {staged}")))?;
                    Ok(())
                })?;
                let url: SecretString = with_database(url.expose_secret(), &staged).into();
                Ok(Staged { store: Store::Postgres(url), data_dir: None, postgres: Some(Postgres { admin, live, staged }), clickhouse: None, elasticsearch: None })
            }
            Store::ClickHouse { url, user, password, database } => {
                let live = crate::analytics::ClickHouseConfig::of(store).expect("a ClickHouse store");
                let staged = sibling(database, "rebuild", tag);
                block_on(crate::analytics::clickhouse::stage(&live, &staged))?;
                let store = Store::ClickHouse { url: url.clone(), user: user.clone(), password: password.clone(), database: staged.clone() };
                Ok(Staged { store, data_dir: None, postgres: None, clickhouse: Some((live, staged)), elasticsearch: None })
            }
            Store::Elasticsearch { url, username, password, index } => {
                let live = crate::search::config::ElasticsearchConfig::of(store).expect("an Elasticsearch store");
                let staged = format!("{index}-rebuild-{tag}");
                block_on(crate::search::elastic::stage(&live, &staged))?;
                let store = Store::Elasticsearch { url: url.clone(), username: username.clone(), password: password.clone(), index: staged.clone() };
                Ok(Staged { store, data_dir: None, postgres: None, clickhouse: None, elasticsearch: Some((live, staged)) })
            }
            Store::Unsupported(why) => Err(SinkError::Config(why.clone())),
        }
    }

    /// The staged store, in words.
    fn describe(&self) -> String {
        match (&self.data_dir, &self.postgres, &self.clickhouse) {
            (Some(d), _, _) => d.display().to_string(),
            (_, Some(p), _) => format!("database {}", p.staged),
            (_, _, Some((_, staged))) => format!("ClickHouse database {staged}"),
            _ => match &self.elasticsearch {
                Some((_, staged)) => format!("Elasticsearch index {staged}"),
                None => "nothing".into(),
            },
        }
    }

    /// Moves the live store aside and the staged one in; says where the old one went.
    fn swap(&self, live: &Store, data_dir: &Path, tag: &str) -> Result<String> {
        if let (Store::Embedded(names), Some(staged_dir)) = (live, &self.data_dir) {
            let replaced = data_dir.join(format!("replaced-{tag}"));
            std::fs::create_dir_all(&replaced).map_err(SinkError::io(format!("creating {}", replaced.display())))?;
            for n in *names {
                rename_if_there(&data_dir.join(n), &replaced.join(n))?;
            }
            for n in *names {
                rename_if_there(&staged_dir.join(n), &data_dir.join(n))?;
            }
            std::fs::remove_dir_all(staged_dir).map_err(SinkError::io(format!("removing {}", staged_dir.display())))?;
            return Ok(replaced.display().to_string());
        }
        if let Some((live, staged)) = &self.clickhouse {
            let replaced = sibling(&live.database, "replaced", tag);
            block_on(crate::analytics::clickhouse::swap(live, staged, &replaced))?;
            return Ok(format!("ClickHouse database {replaced}"));
        }
        if let Some((live, staged)) = &self.elasticsearch {
            let replaced = format!("{}-replaced-{tag}", live.index);
            block_on(crate::search::elastic::swap(live, staged, &replaced))?;
            return Ok(format!("Elasticsearch index {replaced}"));
        }
        let Some(p) = &self.postgres else { return Err(SinkError::Config("nothing was staged".into())) };
        let replaced = sibling(&p.live, "replaced", tag);
        block_on(async {
            let mut c = connect(&p.admin).await?;
            // The rebuild's own pool may still be closing its connections.
            let deadline = Instant::now() + Duration::from_secs(10);
            while sessions(&mut c, &p.staged).await? > 0 {
                if Instant::now() >= deadline {
                    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()")
                        .bind(&p.staged)
                        .execute(&mut c)
                        .await
                        .map_err(SinkError::sql("closing the rebuild's sessions"))?;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let mut tx = c.begin().await.map_err(SinkError::sql("starting the swap"))?;
            for (from, to) in [(&p.live, &replaced), (&p.staged, &p.live)] {
                sqlx::query(AssertSqlSafe(format!("ALTER DATABASE {} RENAME TO {}", quote(from), quote(to))))
                    .execute(&mut *tx)
                    .await
                    .map_err(SinkError::sql(format!("renaming database {from} to {to} (the rebuilt store stays as {})", p.staged)))?;
            }
            tx.commit().await.map_err(SinkError::sql("committing the swap"))?;
            Ok(())
        })?;
        Ok(format!("database {replaced}"))
    }
}

fn rename_if_there(from: &Path, to: &Path) -> Result<()> {
    match std::fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(SinkError::io(format!("moving {} to {}", from.display(), to.display()))(e)),
    }
}

/// `<live>_<what>_<tag>`, cut to Postgres' 63-byte identifiers.
fn sibling(live: &str, what: &str, tag: &str) -> String {
    let suffix = format!("_{what}_{tag}");
    let keep = live.len().min(63 - suffix.len());
    let mut cut = keep;
    while !live.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{suffix}", &live[..cut])
}

/// The database a `postgres://…/db?…` URL names (`postgres` without one, as libpq does
/// with the user's name; we ask for one).
fn database_of(url: &str) -> Result<String> {
    let (_, path, _) = split(url);
    let db = path.trim_start_matches('/');
    if db.is_empty() {
        return Err(SinkError::Config("[sinks.read_model] postgres_url names no database (postgres://…/<database>): a rebuild stages a database beside it".into()));
    }
    Ok(db.to_string())
}

/// `url` with its path set to `/db`.
fn with_database(url: &str, db: &str) -> String {
    let (head, _, tail) = split(url);
    format!("{head}/{db}{tail}")
}

/// `scheme://authority`, `/path`, `?query#fragment`.
fn split(url: &str) -> (&str, &str, &str) {
    let after = url.find("://").map_or(0, |i| i + 3);
    let end_authority = url[after..].find(['/', '?', '#']).map_or(url.len(), |i| after + i);
    let end_path = url[end_authority..].find(['?', '#']).map_or(url.len(), |i| end_authority + i);
    (&url[..end_authority], &url[end_authority..end_path], &url[end_path..])
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

async fn connect(url: &SecretString) -> Result<sqlx::PgConnection> {
    sqlx::PgConnection::connect(url.expose_secret()).await.map_err(SinkError::sql("connecting to Postgres' maintenance database `postgres`"))
}

/// Other sessions connected to database `db`.
async fn sessions(c: &mut sqlx::PgConnection, db: &str) -> Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()")
        .bind(db)
        .fetch_one(c)
        .await
        .map_err(SinkError::sql("counting sessions"))
}

/// Runs `f` on a small runtime of its own (the rebuild is called from plain threads).
fn block_on<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(SinkError::io("starting a runtime"))?.block_on(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postgres_url_keeps_its_credentials_host_and_parameters_when_its_database_changes() {
        let url = "postgres://u:p%2Fw@db.example:5433/shop?sslmode=require";
        assert_eq!(database_of(url).unwrap(), "shop");
        assert_eq!(with_database(url, "shop_rebuild_1"), "postgres://u:p%2Fw@db.example:5433/shop_rebuild_1?sslmode=require");
        assert_eq!(with_database("postgres://h", "postgres"), "postgres://h/postgres");
        assert!(database_of("postgres://u@h:5432").is_err());
        assert!(database_of("postgres://u@h:5432/?sslmode=disable").is_err());
    }

    #[test]
    fn staged_and_replaced_database_names_fit_postgres_identifiers() {
        let long = "d".repeat(80);
        let name = sibling(&long, "replaced", "20261204050000");
        assert_eq!(name.len(), 63);
        assert!(name.ends_with("_replaced_20261204050000"));
        assert_eq!(sibling("storeflow", "rebuild", "1"), "storeflow_rebuild_1");
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
    }
}

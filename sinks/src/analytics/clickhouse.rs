//! The ClickHouse backend: brings tables created by an older release to the current shape
//! ([`UPGRADES`]), applies `sql/clickhouse/*.sql` on start, inserts rows with the
//! `clickhouse` crate (`RowBinaryWithNamesAndTypes`, validated against the server's
//! schema), reads high-water marks and answers the dashboards' questions
//! (`sql/analytics/*.clickhouse.sql`).

use std::collections::HashMap;

use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;

use super::config::ClickHouseConfig;
use super::rows::FactRow;
use crate::{Result, SinkError};

/// The DDL files, in order.
pub const DDL: &[(&str, &str)] = &[
    ("0001_tables.sql", include_str!("../../../sql/clickhouse/0001_tables.sql")),
    ("0002_rollups.sql", include_str!("../../../sql/clickhouse/0002_rollups.sql")),
];

/// `Item::position` in ClickHouse SQL over a row's `src_partition` / `src_offset`:
/// `partition × 2⁴⁸ + offset`, saturating like the Rust side.
const POS_OF_SOURCE: &str = "if(src_partition < 32768 AND src_offset < 281474976710656, \
    toInt64(src_partition) * 281474976710656 + toInt64(src_offset), 9223372036854775807)";

/// How a table created by an older release becomes the table `0001_tables.sql` describes.
#[derive(Debug)]
pub enum How {
    /// Same engine, one more column: this `ALTER TABLE … ADD COLUMN IF NOT EXISTS`.
    AddColumn(&'static str),
    /// The engine changed (a ReplacingMergeTree's version column): the old table is renamed
    /// `<table>__old`, the current one created, the old rows copied with this `INSERT …
    /// SELECT … FROM <table>__old` (`{pos}` is [`POS_OF_SOURCE`]), and the old table dropped.
    /// A start that dies half-way finds `<table>__old` and copies again into an emptied table.
    Rebuild(&'static str),
}

/// A change of a table's shape since an older release.
#[derive(Debug)]
pub struct Upgrade {
    /// The table.
    pub table: &'static str,
    /// A column the current shape has and the old one lacks.
    pub marker: &'static str,
    /// What to do.
    pub how: How,
}

/// Tables whose shape changed, and how existing ones are brought up to date. The versions
/// that decide what is newer replaced event time (docs/SINKS.md): dimensions are
/// ReplacingMergeTree by log position, vendor minutes by the sales processor's version.
pub const UPGRADES: &[Upgrade] = &[
    Upgrade {
        table: "fact_stock_levels",
        marker: "version",
        how: How::AddColumn("ALTER TABLE fact_stock_levels ADD COLUMN IF NOT EXISTS version Int64 DEFAULT 0 AFTER cause"),
    },
    Upgrade {
        table: "dim_vendors",
        marker: "pos",
        how: How::Rebuild(
            "INSERT INTO dim_vendors (event_id, occurred_at, vendor_id, name, country, plan, payout_currency, pos, \
             src_topic, src_partition, src_offset) \
             SELECT event_id, occurred_at, vendor_id, name, country, plan, payout_currency, {pos}, \
             src_topic, src_partition, src_offset FROM dim_vendors__old",
        ),
    },
    Upgrade {
        table: "dim_products",
        marker: "pos",
        // Each row is the product's state after the catalog event it names, so its
        // position is exact; the old `version` (an event time) is dropped.
        how: How::Rebuild(
            "INSERT INTO dim_products (event_id, occurred_at, product_id, vendor_id, sku, title, category, brand, status, \
             price_minor, currency, created_at, pos, src_topic, src_partition, src_offset) \
             SELECT event_id, occurred_at, product_id, vendor_id, sku, title, category, brand, status, price_minor, currency, \
             created_at, {pos}, src_topic, src_partition, src_offset FROM dim_products__old",
        ),
    },
    Upgrade {
        table: "fact_vendor_minutes",
        marker: "version",
        // Rows from before versions existed are version 0 (what their records carried): of
        // those, the last in its partition — the processor's latest figure — is kept.
        how: How::Rebuild(
            "INSERT INTO fact_vendor_minutes (event_id, occurred_at, vendor_id, minute, currency, orders, units, gmv_minor, \
             refunds_minor, commission_minor, net_payout_minor, base_currency, gmv_base_minor, net_payout_base_minor, version, \
             src_topic, src_partition, src_offset) \
             SELECT event_id, occurred_at, vendor_id, minute, currency, orders, units, gmv_minor, refunds_minor, \
             commission_minor, net_payout_minor, base_currency, gmv_base_minor, net_payout_base_minor, 0, \
             src_topic, src_partition, src_offset FROM fact_vendor_minutes__old \
             ORDER BY src_partition DESC, src_offset DESC LIMIT 1 BY vendor_id, minute, currency",
        ),
    },
];

#[derive(clickhouse::Row, serde::Deserialize)]
struct ColumnName {
    name: String,
}

/// Splits a DDL file into statements (`;` at the end of a line), without comment lines.
pub fn statements(sql: &str) -> Vec<String> {
    let body: Vec<&str> = sql.lines().filter(|l| !l.trim_start().starts_with("--")).collect();
    body.join("\n").split(";\n").chain(std::iter::once("")).map(|s| s.trim().trim_end_matches(';').trim().to_string()).filter(|s| !s.is_empty()).collect()
}

/// A ClickHouse database holding the analytics tables.
#[derive(Clone)]
pub struct ClickHouseStore {
    client: clickhouse::Client,
    database: String,
}

impl std::fmt::Debug for ClickHouseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseStore").field("database", &self.database).finish()
    }
}

#[derive(clickhouse::Row, serde::Deserialize)]
struct Mark {
    src_topic: String,
    src_partition: u32,
    offset: u64,
}

/// A client of the server `config` names, on no database in particular.
pub(crate) fn server(config: &ClickHouseConfig) -> clickhouse::Client {
    let client = clickhouse::Client::default().with_url(&config.url).with_user(&config.user);
    match &config.password {
        Some(p) => client.with_password(p.expose_secret()),
        None => client,
    }
}

/// For a rebuild ([`crate::rebuild`]): makes the (empty) database `staged` on the server of
/// `live`, after making sure the live database has its tables and rollups (one that was
/// lost is created empty, as `storeflow run` would).
pub(crate) async fn stage(live: &ClickHouseConfig, staged: &str) -> Result<()> {
    ClickHouseStore::open(live).await?;
    let client = server(live);
    client.query(&format!("CREATE DATABASE `{staged}`")).execute().await.map_err(SinkError::ch(format!("creating ClickHouse database {staged}")))
}

/// For a rebuild: swaps each table of database `staged` with the live one of its name
/// (`EXCHANGE TABLES`, atomic per table), then renames `staged`, which now holds the old
/// tables, to `replaced`. The live database's materialized views name the live tables, so
/// they go on feeding the rollups, now the rebuilt ones; the views of the replaced database
/// are dropped (they named tables of a database that no longer exists under that name).
pub(crate) async fn swap(live: &ClickHouseConfig, staged: &str, replaced: &str) -> Result<()> {
    let client = server(live);
    let tables = |db: String| {
        let client = client.clone();
        async move {
            let rows: Vec<ColumnName> = client
                .query("SELECT name FROM system.tables WHERE database = ? AND engine NOT IN ('MaterializedView', 'View') ORDER BY name")
                .bind(&db)
                .fetch_all()
                .await
                .map_err(SinkError::ch(format!("listing the tables of {db}")))?;
            Ok::<Vec<String>, SinkError>(rows.into_iter().map(|r| r.name).collect())
        }
    };
    let have = tables(live.database.clone()).await?;
    let db = &live.database;
    for t in tables(staged.to_string()).await? {
        let sql = if have.contains(&t) {
            format!("EXCHANGE TABLES `{db}`.`{t}` AND `{staged}`.`{t}`")
        } else {
            format!("RENAME TABLE `{staged}`.`{t}` TO `{db}`.`{t}`")
        };
        client.query(&sql).execute().await.map_err(SinkError::ch(format!("swapping {t} into {db}")))?;
    }
    let views: Vec<ColumnName> = client
        .query("SELECT name FROM system.tables WHERE database = ? AND engine = 'MaterializedView'")
        .bind(staged)
        .fetch_all()
        .await
        .map_err(SinkError::ch(format!("listing the views of {staged}")))?;
    for v in views {
        client.query(&format!("DROP VIEW `{staged}`.`{}`", v.name)).execute().await.map_err(SinkError::ch(format!("dropping {staged}.{}", v.name)))?;
    }
    client.query(&format!("RENAME DATABASE `{staged}` TO `{replaced}`")).execute().await.map_err(SinkError::ch(format!("renaming {staged} to {replaced}")))
}

impl ClickHouseStore {
    /// Connects, creates the database if missing and applies the DDL.
    pub async fn open(config: &ClickHouseConfig) -> Result<ClickHouseStore> {
        let client = server(config);
        client
            .query(&format!("CREATE DATABASE IF NOT EXISTS `{}`", config.database))
            .execute()
            .await
            .map_err(SinkError::ch(format!("creating ClickHouse database {}", config.database)))?;
        let client = client.with_database(&config.database);
        let store = ClickHouseStore { client, database: config.database.clone() };
        store.upgrade_before_ddl().await?;
        for (file, sql) in DDL {
            for st in statements(sql) {
                store.client.query(&st).execute().await.map_err(SinkError::ch(format!("applying sql/clickhouse/{file}")))?;
            }
        }
        store.upgrade_after_ddl().await?;
        Ok(store)
    }

    /// Column names of `table` in the database (none: no such table).
    async fn columns(&self, table: &str) -> Result<Vec<String>> {
        let rows: Vec<ColumnName> = self
            .client
            .query("SELECT name FROM system.columns WHERE database = currentDatabase() AND table = ? ORDER BY position")
            .bind(table)
            .fetch_all()
            .await
            .map_err(SinkError::ch(format!("reading the columns of {table}")))?;
        Ok(rows.into_iter().map(|c| c.name).collect())
    }

    async fn run(&self, sql: &str, what: &str) -> Result<()> {
        self.client.query(sql).execute().await.map_err(SinkError::ch(what.to_string()))
    }

    /// Adds missing columns and moves tables whose engine changed out of the way
    /// (`<table>__old`), so the DDL creates them anew.
    async fn upgrade_before_ddl(&self) -> Result<()> {
        for u in UPGRADES {
            let cols = self.columns(u.table).await?;
            if cols.is_empty() || cols.iter().any(|c| c == u.marker) {
                continue; // created by the DDL below, or current already
            }
            let old = format!("{}__old", u.table);
            match u.how {
                How::AddColumn(sql) => self.run(sql, &format!("adding {} to {}", u.marker, u.table)).await?,
                // A previous start renamed it already: the current table exists, keep both.
                How::Rebuild(_) if !self.columns(&old).await?.is_empty() => {}
                How::Rebuild(_) => {
                    tracing::info!(table = u.table, "rebuilding a ClickHouse table of an older release ({} is new)", u.marker);
                    self.run(&format!("RENAME TABLE `{}` TO `{old}`", u.table), &format!("renaming {} to {old}", u.table)).await?;
                }
            }
        }
        Ok(())
    }

    /// Copies the rows of the tables moved out of the way into their new shape.
    async fn upgrade_after_ddl(&self) -> Result<()> {
        for u in UPGRADES {
            let How::Rebuild(copy) = u.how else { continue };
            let old = format!("{}__old", u.table);
            if self.columns(&old).await?.is_empty() {
                continue;
            }
            self.run(&format!("TRUNCATE TABLE `{}`", u.table), &format!("emptying {} before the copy", u.table)).await?;
            self.run(&copy.replace("{pos}", POS_OF_SOURCE), &format!("copying {old} into {}", u.table)).await?;
            self.run(&format!("DROP TABLE `{old}` SYNC"), &format!("dropping {old}")).await?;
        }
        Ok(())
    }

    /// The client (on the analytics database).
    pub fn client(&self) -> &clickhouse::Client {
        &self.client
    }

    /// Inserts `rows` into their table in one INSERT.
    pub async fn insert<R: FactRow>(&self, rows: &[R]) -> Result<()> {
        let ctx = || format!("inserting {} rows into ClickHouse {}.{}", rows.len(), self.database, R::TABLE);
        let mut ins = self.client.insert::<R>(R::TABLE).await.map_err(SinkError::ch(ctx()))?;
        for r in rows {
            ins.write(r).await.map_err(SinkError::ch(ctx()))?;
        }
        ins.end().await.map_err(SinkError::ch(ctx()))
    }

    /// The highest source offset `table` holds per `(topic, partition)`.
    pub async fn marks(&self, table: &str, topics: &[String]) -> Result<HashMap<(String, u32), u64>> {
        let rows: Vec<Mark> = self
            .client
            .query(&format!(
                "SELECT src_topic, src_partition, max(src_offset) AS offset FROM `{table}` WHERE src_topic IN ? GROUP BY src_topic, src_partition"
            ))
            .bind(topics)
            .fetch_all()
            .await
            .map_err(SinkError::ch(format!("reading the high-water marks of {table}")))?;
        Ok(rows.into_iter().map(|m| ((m.src_topic, m.src_partition), m.offset)).collect())
    }

    /// Runs a question (`{name:Type}` parameters) and parses each row from JSON.
    pub async fn query<T: DeserializeOwned>(&self, sql: &str, params: &[(&str, Param)]) -> Result<Vec<T>> {
        let mut q = self.client.query(sql).with_setting("output_format_json_quote_64bit_integers", "0");
        for (name, p) in params {
            q = match p {
                Param::Int(v) | Param::Time(v) => q.param(name, v),
                Param::Text(v) => q.param(name, v),
            };
        }
        let mut cursor = q.fetch_bytes("JSONEachRow").map_err(SinkError::ch("querying ClickHouse"))?;
        let bytes = cursor.collect().await.map_err(SinkError::ch("reading a ClickHouse answer"))?;
        let mut out = Vec::new();
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            out.push(serde_json::from_slice(line).map_err(|e| SinkError::Parquet {
                context: "parsing a ClickHouse answer".into(),
                message: e.to_string(),
                io: false,
            })?);
        }
        Ok(out)
    }
}

/// A query parameter.
#[derive(Clone, Debug)]
pub enum Param {
    /// An integer.
    Int(i64),
    /// A time, milliseconds since the epoch (ClickHouse: `Int64`; DataFusion: a UTC timestamp).
    Time(i64),
    /// Text.
    Text(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddl_files_split_into_create_statements() {
        for (file, sql) in DDL {
            let st = statements(sql);
            assert!(st.len() > 5, "{file}");
            for s in st {
                assert!(s.starts_with("CREATE "), "{file}: {s}");
                assert!(!s.ends_with(';'));
            }
        }
    }
}

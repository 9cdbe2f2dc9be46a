//! The ClickHouse backend: applies `sql/clickhouse/*.sql` on start, inserts rows with the
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

impl ClickHouseStore {
    /// Connects, creates the database if missing and applies the DDL.
    pub async fn open(config: &ClickHouseConfig) -> Result<ClickHouseStore> {
        let mut client = clickhouse::Client::default().with_url(&config.url).with_user(&config.user);
        if let Some(p) = &config.password {
            client = client.with_password(p.expose_secret());
        }
        client
            .query(&format!("CREATE DATABASE IF NOT EXISTS `{}`", config.database))
            .execute()
            .await
            .map_err(SinkError::ch(format!("creating ClickHouse database {}", config.database)))?;
        let client = client.with_database(&config.database);
        for (file, sql) in DDL {
            for st in statements(sql) {
                client.query(&st).execute().await.map_err(SinkError::ch(format!("applying sql/clickhouse/{file}")))?;
            }
        }
        Ok(ClickHouseStore { client, database: config.database.clone() })
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

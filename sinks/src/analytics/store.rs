//! Where the analytics tables live: ClickHouse, or Parquet files queried with DataFusion —
//! one type for the sink's writes, the questions and the dumps.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::clickhouse::ClickHouseStore;
use super::config::AnalyticsConfig;
use super::parquet::ParquetStore;
use super::rows::FactRow;
use crate::Result;

/// Where the analytics tables live.
#[derive(Clone, Debug)]
pub enum Store {
    /// ClickHouse (distributed mode).
    ClickHouse(ClickHouseStore),
    /// Parquet files + DataFusion (embedded twin).
    Parquet(Arc<ParquetStore>),
}

impl Store {
    /// Opens ClickHouse when configured, else the Parquet store under `data_dir/analytics`.
    pub async fn open(config: &AnalyticsConfig, data_dir: &Path) -> Result<Store> {
        Ok(match &config.clickhouse {
            Some(ch) => Store::ClickHouse(ClickHouseStore::open(ch).await?),
            None => Store::Parquet(Arc::new(ParquetStore::open(&data_dir.join("analytics"))?)),
        })
    }

    /// `clickhouse` or `parquet`.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::ClickHouse(_) => "clickhouse",
            Store::Parquet(_) => "parquet",
        }
    }

    pub(super) async fn insert<R: FactRow>(&self, rows: &[R]) -> Result<()> {
        match self {
            Store::ClickHouse(c) => c.insert(rows).await,
            Store::Parquet(p) => p.insert(rows).await,
        }
    }

    pub(super) async fn marks(&self, table: &str, topics: &[String]) -> Result<HashMap<(String, u32), u64>> {
        match self {
            Store::ClickHouse(c) => c.marks(table, topics).await,
            Store::Parquet(p) => Ok(p.marks(table).into_iter().filter(|((t, _), _)| topics.contains(t)).collect()),
        }
    }
}

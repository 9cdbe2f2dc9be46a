//! Everything that differs between Postgres and SQLite, in one place.
//!
//! The read model runs the same sqlx code on both. What differs:
//!
//! | | Postgres | SQLite (embedded twin) |
//! |---|---|---|
//! | migrations | `sql/postgres/*.sql` as they are | the same files with `JSONB` → `TEXT` |
//! | bulk upsert | one `INSERT … SELECT … FROM UNNEST($1::text[], …) … ON CONFLICT` per op and round | the same `INSERT … VALUES ($1, …) … ON CONFLICT` per row, prepared once, in one transaction |
//! | JSON values | `::jsonb` cast of a text parameter | text |
//! | connections | a pool of `pool_size` | a pool of `pool_size` readers over WAL, writes serialized by SQLite |
//!
//! The `ON CONFLICT … DO UPDATE SET … WHERE …` tails, the read queries (`$1` parameters),
//! `COALESCE`, `CASE` and `CAST(… AS BIGINT)` are written once and run on both.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Row, SqlSafeStr};

use crate::{Result, SinkError};

/// The migrations of the read model, in order (`sql/postgres/`).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "read model", include_str!("../../../sql/postgres/0001_read_model.sql")),
    (2, "versions decide what is newer", include_str!("../../../sql/postgres/0002_versions.sql")),
    (3, "shipment positions", include_str!("../../../sql/postgres/0003_shipment_positions.sql")),
];

/// The read model's database.
#[derive(Clone, Debug)]
pub enum Db {
    /// Postgres (distributed mode).
    Postgres(PgPool),
    /// SQLite (embedded twin).
    Sqlite(SqlitePool),
}

/// Which SQL dialect a [`Db`] speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// Postgres.
    Postgres,
    /// SQLite.
    Sqlite,
}

impl Db {
    /// Connects to Postgres at `url` and runs the migrations.
    pub async fn postgres(url: &str, pool_size: u32) -> Result<Db> {
        let opts = PgConnectOptions::from_str(url).map_err(SinkError::sql("parsing the Postgres URL"))?;
        let pool = PgPoolOptions::new()
            .max_connections(pool_size)
            .acquire_timeout(Duration::from_secs(10))
            .connect_lazy_with(opts);
        let db = Db::Postgres(pool);
        db.migrate().await?;
        Ok(db)
    }

    /// Opens (or creates) the SQLite file at `path` and runs the migrations.
    pub async fn sqlite(path: &Path, pool_size: u32) -> Result<Db> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(SinkError::io(format!("creating {}", dir.display())))?;
        }
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL: a committed transaction survives a process crash; the last
            // ones may be lost on power loss, and the sink then rewrites them from the log.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(false);
        let pool = SqlitePoolOptions::new()
            .max_connections(pool_size)
            .connect_with(opts)
            .await
            .map_err(SinkError::sql(format!("opening {}", path.display())))?;
        let db = Db::Sqlite(pool);
        db.migrate().await?;
        Ok(db)
    }

    /// The dialect.
    pub fn dialect(&self) -> Dialect {
        match self {
            Db::Postgres(_) => Dialect::Postgres,
            Db::Sqlite(_) => Dialect::Sqlite,
        }
    }

    /// `postgres` or `sqlite`.
    pub fn backend(&self) -> &'static str {
        match self {
            Db::Postgres(_) => "postgres",
            Db::Sqlite(_) => "sqlite",
        }
    }

    fn migrator(&self) -> Migrator {
        let migrations = MIGRATIONS
            .iter()
            .map(|(version, name, sql)| {
                let sql = migration_sql(self.dialect(), sql);
                Migration::new(*version, Cow::Borrowed(*name), MigrationType::Simple, AssertSqlSafe(sql).into_sql_str(), false)
            })
            .collect();
        Migrator::with_migrations(migrations)
    }

    /// Applies the migrations that have not run yet (a Postgres advisory lock keeps two
    /// starting instances from racing).
    pub async fn migrate(&self) -> Result<()> {
        let m = self.migrator();
        let r = match self {
            Db::Postgres(p) => m.run(p).await,
            Db::Sqlite(p) => m.run(p).await,
        };
        r.map_err(|source| SinkError::Migrate { context: format!("migrating the {} read model", self.backend()), source })
    }

    /// Closes the pool.
    pub async fn close(&self) {
        match self {
            Db::Postgres(p) => p.close().await,
            Db::Sqlite(p) => p.close().await,
        }
    }
}

/// A migration as `dialect` runs it.
pub fn migration_sql(dialect: Dialect, sql: &str) -> String {
    match dialect {
        Dialect::Postgres => sql.to_string(),
        Dialect::Sqlite => sql.replace("JSONB", "TEXT"),
    }
}

/// Type of a column an op writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Col {
    /// TEXT.
    Text,
    /// BIGINT / INTEGER.
    Int,
    /// DOUBLE PRECISION.
    Float,
    /// BOOLEAN.
    Bool,
    /// JSONB (Postgres) / TEXT (SQLite), written from JSON text.
    Json,
}

/// A value of one column of one row.
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    /// Text or JSON text.
    Text(Option<String>),
    /// Integer.
    Int(Option<i64>),
    /// Float.
    Float(Option<f64>),
    /// Boolean.
    Bool(Option<bool>),
}

impl Val {
    fn key_part(&self, out: &mut String) {
        use std::fmt::Write;
        match self {
            Val::Text(Some(v)) => out.push_str(v),
            Val::Int(Some(v)) => {
                let _ = write!(out, "{v}");
            }
            Val::Float(Some(v)) => {
                let _ = write!(out, "{v}");
            }
            Val::Bool(Some(v)) => out.push(if *v { 't' } else { 'f' }),
            _ => out.push('\u{0}'),
        }
        out.push('\u{1f}');
    }
}

/// One kind of upsert: the columns it writes and its `ON CONFLICT` tail (shared by both
/// dialects).
#[derive(Debug)]
pub struct Op {
    /// Name, for messages.
    pub name: &'static str,
    /// Target table.
    pub table: &'static str,
    /// Columns and their types, in bind order.
    pub cols: &'static [(&'static str, Col)],
    /// Indexes into `cols` of the conflict key (rows with equal keys go in separate rounds
    /// on Postgres, which refuses to update one row twice in one statement).
    pub key: &'static [usize],
    /// `ON CONFLICT …` clause.
    pub tail: &'static str,
}

/// A statement run once after the upserts (e.g. recomputing a product's rating).
#[derive(Debug, Clone)]
pub struct After {
    /// SQL with `$1…` parameters.
    pub sql: &'static str,
    /// Parameters.
    pub binds: Vec<Val>,
}

/// Rows per op of one batch, written in one transaction.
#[derive(Debug, Default)]
pub struct Plan {
    /// Rows of each op, in log order.
    pub rows: Vec<(&'static Op, Vec<Vec<Val>>)>,
    /// Statements after the upserts.
    pub after: Vec<After>,
}

impl Plan {
    /// Adds a row for `op`.
    pub fn push(&mut self, op: &'static Op, row: Vec<Val>) {
        debug_assert_eq!(row.len(), op.cols.len(), "{}: wrong number of values", op.name);
        match self.rows.iter_mut().find(|(o, _)| std::ptr::eq(*o, op)) {
            Some((_, rows)) => rows.push(row),
            None => self.rows.push((op, vec![row])),
        }
    }

    /// Rows in the plan.
    pub fn len(&self) -> usize {
        self.rows.iter().map(|(_, r)| r.len()).sum()
    }

    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.after.is_empty()
    }
}

/// Splits rows into rounds in which no conflict key repeats, keeping each key's rows in order.
fn rounds(op: &Op, rows: Vec<Vec<Val>>) -> Vec<Vec<Vec<Val>>> {
    let mut out: Vec<Vec<Vec<Val>>> = Vec::new();
    let mut last_round: HashMap<String, usize> = HashMap::with_capacity(rows.len());
    for row in rows {
        let mut key = String::new();
        for i in op.key {
            row[*i].key_part(&mut key);
        }
        let r = last_round.get(&key).map_or(0, |r| r + 1);
        last_round.insert(key, r);
        if out.len() <= r {
            out.push(Vec::new());
        }
        out[r].push(row);
    }
    out
}

fn pg_type(c: Col) -> &'static str {
    match c {
        Col::Text | Col::Json => "text",
        Col::Int => "int8",
        Col::Float => "float8",
        Col::Bool => "bool",
    }
}

fn pg_sql(op: &Op) -> String {
    let names: Vec<&str> = op.cols.iter().map(|(n, _)| *n).collect();
    let select: Vec<String> = op
        .cols
        .iter()
        .map(|(n, c)| if *c == Col::Json { format!("x.{n}::jsonb") } else { format!("x.{n}") })
        .collect();
    let arrays: Vec<String> = op.cols.iter().enumerate().map(|(i, (_, c))| format!("${}::{}[]", i + 1, pg_type(*c))).collect();
    format!(
        "INSERT INTO {t} ({cols}) SELECT {sel} FROM UNNEST({arr}) AS x({cols}) {tail}",
        t = op.table,
        cols = names.join(", "),
        sel = select.join(", "),
        arr = arrays.join(", "),
        tail = op.tail
    )
}

fn sqlite_sql(op: &Op) -> String {
    let names: Vec<&str> = op.cols.iter().map(|(n, _)| *n).collect();
    let params: Vec<String> = (1..=op.cols.len()).map(|i| format!("${i}")).collect();
    format!("INSERT INTO {} ({}) VALUES ({}) {}", op.table, names.join(", "), params.join(", "), op.tail)
}

/// The SQL `op` runs as on `dialect` (for tests and docs).
pub fn op_sql(dialect: Dialect, op: &Op) -> String {
    match dialect {
        Dialect::Postgres => pg_sql(op),
        Dialect::Sqlite => sqlite_sql(op),
    }
}

macro_rules! bind_val {
    ($q:expr, $v:expr) => {
        match $v {
            Val::Text(v) => $q.bind(v.clone()),
            Val::Int(v) => $q.bind(*v),
            Val::Float(v) => $q.bind(*v),
            Val::Bool(v) => $q.bind(*v),
        }
    };
}

impl Db {
    /// Writes `plan` in one transaction: durable when this returns.
    pub async fn write(&self, plan: Plan) -> Result<()> {
        match self {
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await.map_err(SinkError::sql("starting a Postgres transaction"))?;
                for (op, rows) in plan.rows {
                    let sql = pg_sql(op);
                    for round in rounds(op, rows) {
                        let n = round.len();
                        // Column arrays, moving the values out of the rows.
                        let mut cols: Vec<Vec<Val>> = (0..op.cols.len()).map(|_| Vec::with_capacity(n)).collect();
                        for row in round {
                            for (i, v) in row.into_iter().enumerate() {
                                cols[i].push(v);
                            }
                        }
                        let mut q = sqlx::query(AssertSqlSafe(sql.clone()));
                        for ((_, c), vals) in op.cols.iter().zip(cols) {
                            let vals = vals.into_iter();
                            q = match c {
                                Col::Text | Col::Json => q.bind(vals.map(|v| match v { Val::Text(v) => v, _ => None }).collect::<Vec<Option<String>>>()),
                                Col::Int => q.bind(vals.map(|v| match v { Val::Int(v) => v, _ => None }).collect::<Vec<Option<i64>>>()),
                                Col::Float => q.bind(vals.map(|v| match v { Val::Float(v) => v, _ => None }).collect::<Vec<Option<f64>>>()),
                                Col::Bool => q.bind(vals.map(|v| match v { Val::Bool(v) => v, _ => None }).collect::<Vec<Option<bool>>>()),
                            };
                        }
                        q.execute(&mut *tx).await.map_err(SinkError::sql(format!("{} ({n} rows) on postgres", op.name)))?;
                    }
                }
                for a in &plan.after {
                    let mut q = sqlx::query(a.sql);
                    for v in &a.binds {
                        q = bind_val!(q, v);
                    }
                    q.execute(&mut *tx).await.map_err(SinkError::sql("updating derived columns on postgres"))?;
                }
                tx.commit().await.map_err(SinkError::sql("committing to postgres"))?;
            }
            Db::Sqlite(pool) => {
                let mut tx = pool.begin().await.map_err(SinkError::sql("starting a SQLite transaction"))?;
                for (op, rows) in plan.rows {
                    let sql = sqlite_sql(op);
                    for row in rows {
                        let mut q = sqlx::query(AssertSqlSafe(sql.clone()));
                        for v in row {
                            q = match v {
                                Val::Text(v) => q.bind(v),
                                Val::Int(v) => q.bind(v),
                                Val::Float(v) => q.bind(v),
                                Val::Bool(v) => q.bind(v),
                            };
                        }
                        q.execute(&mut *tx).await.map_err(SinkError::sql(format!("{} on sqlite", op.name)))?;
                    }
                }
                for a in &plan.after {
                    let mut q = sqlx::query(a.sql);
                    for v in &a.binds {
                        q = bind_val!(q, v);
                    }
                    q.execute(&mut *tx).await.map_err(SinkError::sql("updating derived columns on sqlite"))?;
                }
                tx.commit().await.map_err(SinkError::sql("committing to sqlite"))?;
            }
        }
        Ok(())
    }
}

/// Reading a column the same way from a Postgres or a SQLite row.
pub trait RowLike {
    /// Text (NULL is an error).
    fn text(&self, col: &str) -> Result<String>;
    /// Nullable text.
    fn opt_text(&self, col: &str) -> Result<Option<String>>;
    /// Integer.
    fn int(&self, col: &str) -> Result<i64>;
    /// Nullable integer.
    fn opt_int(&self, col: &str) -> Result<Option<i64>>;
    /// Nullable float.
    fn opt_float(&self, col: &str) -> Result<Option<f64>>;
    /// Nullable boolean.
    fn opt_bool(&self, col: &str) -> Result<Option<bool>>;
    /// Nullable JSON.
    fn opt_json(&self, col: &str) -> Result<Option<serde_json::Value>>;
}

macro_rules! row_like {
    ($row:ty) => {
        impl RowLike for $row {
            fn text(&self, col: &str) -> Result<String> {
                self.try_get::<String, _>(col).map_err(SinkError::sql(format!("reading {col}")))
            }
            fn opt_text(&self, col: &str) -> Result<Option<String>> {
                self.try_get::<Option<String>, _>(col).map_err(SinkError::sql(format!("reading {col}")))
            }
            fn int(&self, col: &str) -> Result<i64> {
                self.try_get::<i64, _>(col).map_err(SinkError::sql(format!("reading {col}")))
            }
            fn opt_int(&self, col: &str) -> Result<Option<i64>> {
                self.try_get::<Option<i64>, _>(col).map_err(SinkError::sql(format!("reading {col}")))
            }
            fn opt_float(&self, col: &str) -> Result<Option<f64>> {
                self.try_get::<Option<f64>, _>(col).map_err(SinkError::sql(format!("reading {col}")))
            }
            fn opt_bool(&self, col: &str) -> Result<Option<bool>> {
                self.try_get::<Option<bool>, _>(col).map_err(SinkError::sql(format!("reading {col}")))
            }
            fn opt_json(&self, col: &str) -> Result<Option<serde_json::Value>> {
                self.try_get::<Option<sqlx::types::Json<serde_json::Value>>, _>(col)
                    .map(|v| v.map(|j| j.0))
                    .map_err(SinkError::sql(format!("reading {col}")))
            }
        }
    };
}

row_like!(PgRow);
row_like!(SqliteRow);

/// Runs a static query with binds on either dialect and maps every row with a generic
/// `fn(&impl RowLike) -> Result<T>`.
macro_rules! fetch_all {
    ($db:expr, $sql:expr, [$($bind:expr),* $(,)?], $map:path) => {
        match $db {
            $crate::read_model::dialect::Db::Postgres(p) => {
                let rows = sqlx::query($sql)$(.bind($bind))*.fetch_all(p).await
                    .map_err($crate::SinkError::sql("reading the postgres read model"))?;
                rows.iter().map(|r| $map(r)).collect::<$crate::Result<Vec<_>>>()
            }
            $crate::read_model::dialect::Db::Sqlite(p) => {
                let rows = sqlx::query($sql)$(.bind($bind))*.fetch_all(p).await
                    .map_err($crate::SinkError::sql("reading the sqlite read model"))?;
                rows.iter().map(|r| $map(r)).collect::<$crate::Result<Vec<_>>>()
            }
        }
    };
}
pub(crate) use fetch_all;

#[cfg(test)]
mod tests {
    use super::*;

    static OP: Op = Op {
        name: "t",
        table: "t",
        cols: &[("id", Col::Text), ("v", Col::Int), ("j", Col::Json)],
        key: &[0],
        tail: "ON CONFLICT (id) DO UPDATE SET v = excluded.v",
    };

    #[test]
    fn postgres_upserts_unnest_typed_arrays_and_cast_json() {
        let sql = op_sql(Dialect::Postgres, &OP);
        assert_eq!(
            sql,
            "INSERT INTO t (id, v, j) SELECT x.id, x.v, x.j::jsonb FROM UNNEST($1::text[], $2::int8[], $3::text[]) AS x(id, v, j) ON CONFLICT (id) DO UPDATE SET v = excluded.v"
        );
        assert_eq!(op_sql(Dialect::Sqlite, &OP), "INSERT INTO t (id, v, j) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET v = excluded.v");
    }

    #[test]
    fn rows_with_a_repeated_key_go_to_later_rounds_in_order() {
        let row = |id: &str, v: i64| vec![Val::Text(Some(id.into())), Val::Int(Some(v)), Val::Text(None)];
        let rows = vec![row("a", 1), row("b", 1), row("a", 2), row("a", 3), row("c", 1)];
        let r = rounds(&OP, rows);
        let vs: Vec<Vec<i64>> = r.iter().map(|round| round.iter().map(|row| match row[1] { Val::Int(Some(v)) => v, _ => 0 }).collect()).collect();
        assert_eq!(vs, vec![vec![1, 1, 1], vec![2], vec![3]]);
    }

    #[test]
    fn migrations_are_numbered_in_order_from_one() {
        let versions: Vec<i64> = MIGRATIONS.iter().map(|m| m.0).collect();
        assert_eq!(versions, (1..=MIGRATIONS.len() as i64).collect::<Vec<_>>());
    }

    #[test]
    fn sqlite_migrations_only_swap_jsonb_for_text() {
        let pg = MIGRATIONS[0].2;
        let lite = migration_sql(Dialect::Sqlite, pg);
        assert!(!lite.contains("JSONB"));
        let differing: Vec<(&str, &str)> = pg.lines().zip(lite.lines()).filter(|(a, b)| a != b).collect();
        assert!(!differing.is_empty());
        for (a, b) in differing {
            assert_eq!(a.replace("JSONB", "TEXT"), b);
        }
    }
}

//! Analytics: fact and dimension tables for every event family, materialized rollups, and
//! the dashboards' questions — on ClickHouse, or on Parquet files queried with DataFusion.
//!
//! - [`config`] — `[sinks.analytics]`.
//! - [`rows`] — the tables as Rust rows (ClickHouse rows and Arrow batches alike).
//! - [`sink`] — events → rows, with the per-partition high-water marks that make writes
//!   idempotent.
//! - [`clickhouse`], [`parquet`] — the two stores, and [`store`], the one type over both.
//! - [`questions`] — the dashboards' questions in both dialects (`sql/analytics/`).
//! - [`service`] — the retry-or-give-up decision.
//!
//! **Money.** Every amount is kept in its own currency *and* in the base currency (EUR by
//! default, `*_eur_minor` columns), converted when written with the rate in force at the
//! event's time ([`crate::money`]). Dashboards sum the base-currency columns.
//!
//! **The money flow** (`fact_vendor_money`: transfers, reversals, disputes) stays in the
//! order's currency, reported per currency ([`MoneyFlow`]): there captured − refunded =
//! transferred + commission holds to the minor unit, which a sum of separately rounded
//! conversions would not keep.

pub mod clickhouse;
pub mod config;
pub mod parquet;
pub mod questions;
pub mod rows;
pub mod service;
pub mod sink;
pub mod store;

use std::collections::BTreeMap;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;
use utoipa::ToSchema;

pub use self::clickhouse::Param;
pub use config::{AnalyticsConfig, ClickHouseConfig};
pub use questions::Question;
pub use sink::AnalyticsSink;
pub use store::Store;

use crate::registry::{Registered, SinkContext};
use crate::{Result, SinkError};

impl Registered for AnalyticsSink {
    const NAME: &'static str = "analytics";
    type Config = AnalyticsConfig;
    type Handle = Analytics;

    async fn open(config: &AnalyticsConfig, cx: &SinkContext) -> Result<Self> {
        AnalyticsSink::open(config, &cx.base_currency, &cx.data_dir).await
    }

    fn handle(&self, cx: &SinkContext) -> Analytics {
        Analytics::new(self.store().clone(), &cx.base_currency, cx.rt.clone())
    }
}

/// The time window of a dashboard, aligned to the hourly rollups: `1h` and `24h` are the
/// last 1 or 24 whole hours up to and including the current one; `7d` and `30d` the last 7
/// or 30 UTC days including today.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum DashboardRange {
    /// `1h`.
    #[serde(rename = "1h")]
    Hour,
    /// `24h`.
    #[serde(rename = "24h")]
    Day,
    /// `7d`.
    #[serde(rename = "7d")]
    Week,
    /// `30d`.
    #[serde(rename = "30d")]
    Month,
}

impl FromStr for DashboardRange {
    type Err = SinkError;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "1h" => DashboardRange::Hour,
            "24h" => DashboardRange::Day,
            "7d" => DashboardRange::Week,
            "30d" => DashboardRange::Month,
            other => return Err(SinkError::Config(format!("range `{other}`: expected 1h, 24h, 7d or 30d"))),
        })
    }
}

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

impl DashboardRange {
    /// The buckets of a series over the range: hours for `1h` and `24h`, days for `7d` and
    /// `30d`.
    pub fn granularity(self) -> Granularity {
        match self {
            DashboardRange::Hour | DashboardRange::Day => Granularity::Hour,
            DashboardRange::Week | DashboardRange::Month => Granularity::Day,
        }
    }

    /// `[from, to)` in milliseconds for a dashboard as of `as_of`.
    pub fn window(self, as_of: i64) -> (i64, i64) {
        match self {
            DashboardRange::Hour | DashboardRange::Day => {
                let to = as_of.div_euclid(HOUR) * HOUR + HOUR;
                (to - if self == DashboardRange::Hour { HOUR } else { 24 * HOUR }, to)
            }
            DashboardRange::Week | DashboardRange::Month => {
                let to = as_of.div_euclid(DAY) * DAY + DAY;
                (to - if self == DashboardRange::Week { 7 * DAY } else { 30 * DAY }, to)
            }
        }
    }
}

/// A product's sales in a window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TopProduct {
    /// Product.
    pub product_id: String,
    /// Its title, if known.
    pub title: Option<String>,
    /// Its category.
    pub category: Option<String>,
    /// Units sold.
    pub units: i64,
    /// GMV in base-currency minor units.
    pub gmv_eur_minor: i64,
}

/// A category's sales in a window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TopCategory {
    /// Category path.
    pub category: String,
    /// Units sold.
    pub units: i64,
    /// GMV in base-currency minor units.
    pub gmv_eur_minor: i64,
}

/// Sessions reaching each stage of the funnel.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Funnel {
    /// Sessions with any activity.
    pub sessions: i64,
    /// … that viewed a product.
    pub viewed: i64,
    /// … that added to a cart.
    pub carted: i64,
    /// … that started a checkout.
    pub checkout: i64,
    /// … that placed an order.
    pub ordered: i64,
}

#[derive(Deserialize)]
struct SalesRow {
    orders: Option<i64>,
    units: Option<i64>,
    gmv_eur_minor: Option<i64>,
}

#[derive(Deserialize)]
struct NewCustomersRow {
    new_customers: Option<i64>,
}

#[derive(Deserialize)]
struct ReturnsRow {
    returned_orders: Option<i64>,
    returned_units: Option<i64>,
}

#[derive(Deserialize)]
struct RatingRow {
    reviews: Option<i64>,
    rating_avg: Option<f64>,
}

#[derive(Deserialize)]
struct StockRow {
    on_hand: Option<i64>,
    available: Option<i64>,
}

#[derive(Deserialize)]
struct RefundsRow {
    refunds_eur_minor: Option<i64>,
}

/// Money that moved in one currency, in its minor units: what vendors' lines captured, what
/// was refunded of them, transferred to the vendors (net of reversals), kept as commission
/// (net of what refunds gave back) and disputed. `captured − refunded = transferred +
/// commission` exactly; disputes are apart (the platform's balance is debited).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MoneyFlow {
    /// ISO-4217 code of every amount.
    pub currency: String,
    /// The vendors' captured lines (transfers' gross).
    pub captured_minor: i64,
    /// Refunded of those lines.
    pub refunded_minor: i64,
    /// Transferred to the vendors, less reversals.
    pub transferred_minor: i64,
    /// Commission kept, less what refunds gave back.
    pub commission_minor: i64,
    /// Disputes opened (a vendor's share: in proportion to its gross in the order).
    pub disputed_minor: i64,
    /// Disputes closed as lost.
    pub dispute_lost_minor: i64,
}

impl MoneyFlow {
    fn add(&mut self, o: &MoneyFlow) {
        self.captured_minor += o.captured_minor;
        self.refunded_minor += o.refunded_minor;
        self.transferred_minor += o.transferred_minor;
        self.commission_minor += o.commission_minor;
        self.disputed_minor += o.disputed_minor;
        self.dispute_lost_minor += o.dispute_lost_minor;
    }
}

/// A vendor's money flow in one UTC day and currency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoneyDay {
    /// Start of the UTC day (ms).
    pub day: i64,
    /// The amounts (and their currency).
    #[serde(flatten)]
    pub flow: MoneyFlow,
}

/// The marketplace dashboard for one window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Dashboard {
    /// The window asked for.
    pub range: DashboardRange,
    /// Start (ms, inclusive).
    pub from: i64,
    /// End (ms, exclusive).
    pub to: i64,
    /// Currency of every `*_eur_minor` figure.
    pub base_currency: String,
    /// Gross merchandise value: order totals placed in the window.
    pub gmv_eur_minor: i64,
    /// Orders placed.
    pub orders: i64,
    /// Units ordered.
    pub units: i64,
    /// Average order value.
    pub aov_eur_minor: i64,
    /// Best products by GMV.
    pub top_products: Vec<TopProduct>,
    /// Best categories by GMV.
    pub top_categories: Vec<TopCategory>,
    /// The conversion funnel.
    pub funnel: Funnel,
    /// Sessions that ordered / sessions (0 when there were none).
    pub conversion_rate: f64,
    /// Customers registered.
    pub new_customers: i64,
    /// Orders with a return requested in the window.
    pub returned_orders: i64,
    /// Units asked back.
    pub returned_units: i64,
    /// Returned orders / orders placed in the window.
    pub return_rate: f64,
    /// The money flow in the window, per currency (all vendors; disputes of orders without
    /// transfers included).
    pub money: Vec<MoneyFlow>,
    /// Sales per hour (`1h`, `24h`) or UTC day (`7d`, `30d`) in the window, oldest first;
    /// buckets without sales are left out.
    pub series: Vec<SalesBucket>,
    /// The twenty vendors with the highest GMV in the window.
    pub vendors: Vec<VendorSales>,
    /// The ten customers with the highest lifetime value (all time).
    pub top_customers: Vec<CustomerValue>,
    /// Cohort acquisition (all time): per registration month and order month.
    pub cohorts: Vec<CohortMonth>,
}

/// One vendor's sales in a window (the dashboard's vendor performance panel).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VendorSales {
    /// Vendor.
    pub vendor_id: String,
    /// Its name (`None` before its onboarding reached analytics).
    pub name: Option<String>,
    /// Orders with at least one of its lines.
    pub orders: i64,
    /// Units of its lines.
    pub units: i64,
    /// GMV of its lines, base currency.
    pub gmv_eur_minor: i64,
}

/// Inventory health (`GET /v1/analytics/inventory`): stock now, and reservations in a window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InventoryHealth {
    /// The window of `reservations`.
    pub range: DashboardRange,
    /// Start (ms, inclusive).
    pub from: i64,
    /// End (ms, exclusive).
    pub to: i64,
    /// Sku-warehouses with 5 or fewer units available now, fewest first (at most 20).
    pub low_stock: Vec<LowStock>,
    /// Per warehouse, stock now.
    pub warehouses: Vec<WarehouseStock>,
    /// Orders that reserved stock and orders refused for want of it, per hour of the window.
    pub reservations: Vec<ReservationBucket>,
}

/// A sku in a warehouse with little left.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LowStock {
    /// Sku.
    pub sku: String,
    /// Warehouse.
    pub warehouse_id: String,
    /// Its product.
    pub product_id: Option<String>,
    /// Units on hand.
    pub on_hand: i64,
    /// Units reserved.
    pub reserved: i64,
    /// On hand − reserved.
    pub available: i64,
}

/// One warehouse's stock now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WarehouseStock {
    /// Warehouse.
    pub warehouse_id: String,
    /// Units on hand.
    pub on_hand: i64,
    /// Units reserved.
    pub reserved: i64,
    /// Units available.
    pub available: i64,
    /// Skus with none available there.
    pub skus_out_of_stock: i64,
}

/// Reservations in one hour.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReservationBucket {
    /// Start of the hour (ms).
    pub bucket: i64,
    /// Orders that reserved stock.
    pub reserved: i64,
    /// Orders refused for want of stock.
    pub rejected: i64,
}

/// Fraud (`GET /v1/analytics/fraud`): the verdicts of a window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FraudBoard {
    /// The window.
    pub range: DashboardRange,
    /// Start (ms, inclusive).
    pub from: i64,
    /// End (ms, exclusive).
    pub to: i64,
    /// Orders scored per decision.
    pub decisions: Vec<FraudDecision>,
    /// The twenty highest-scored verdicts other than `allow`.
    pub held: Vec<HeldOrder>,
    /// The ten signals that fired most often.
    pub signals: Vec<FraudSignal>,
}

/// Orders scored with one decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FraudDecision {
    /// `allow`, `review` or `hold`.
    pub decision: String,
    /// Orders.
    pub orders: i64,
    /// Their average score.
    pub avg_score: f64,
}

/// A verdict other than `allow`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HeldOrder {
    /// When it was scored (ms).
    pub at: i64,
    /// Order.
    pub order_id: String,
    /// Its customer.
    pub customer_id: String,
    /// Score, 0–100.
    pub score: i64,
    /// `review` or `hold`.
    pub decision: String,
    /// The signals that fired, comma-separated.
    pub reasons: String,
}

/// A fraud signal and how often it fired.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FraudSignal {
    /// The signal.
    pub reason: String,
    /// Verdicts it was among the reasons of.
    pub orders: i64,
}

/// One vendor's performance in a window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VendorPerformance {
    /// Vendor.
    pub vendor_id: String,
    /// Start (ms, inclusive).
    pub from: i64,
    /// End (ms, exclusive).
    pub to: i64,
    /// GMV of its lines.
    pub gmv_eur_minor: i64,
    /// Orders with at least one of its lines.
    pub orders: i64,
    /// Units sold.
    pub units: i64,
    /// GMV / orders.
    pub aov_eur_minor: i64,
    /// Refunds of its lines.
    pub refunds_eur_minor: i64,
    /// Average review rating, all time.
    pub rating_avg: Option<f64>,
    /// Reviews, all time.
    pub reviews: i64,
    /// Units on hand now over its skus and warehouses.
    pub on_hand: i64,
    /// Units available now.
    pub available: i64,
    /// Units sold in the window / units on hand now (`None` with nothing on hand).
    pub inventory_turnover: Option<f64>,
    /// Its best products.
    pub top_products: Vec<TopProduct>,
    /// Its money flow in the window, per currency (its transfers, reversals and its share of
    /// disputes, each on its own day).
    pub money: Vec<MoneyFlow>,
}

/// How finely a sales series is cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    /// Whole hours.
    Hour,
    /// Whole UTC days.
    Day,
}

impl Granularity {
    fn unit(self) -> &'static str {
        match self {
            Granularity::Hour => "hour",
            Granularity::Day => "day",
        }
    }
}

impl FromStr for Granularity {
    type Err = SinkError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "hour" => Ok(Granularity::Hour),
            "day" => Ok(Granularity::Day),
            other => Err(SinkError::Config(format!("granularity `{other}`: expected hour or day"))),
        }
    }
}

/// Sales in one hour or day: a vendor's (its lines) or the marketplace's. (Named
/// `AnalyticsSalesBucket` in the OpenAPI document: the API's live `SalesBucket` is another.)
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = AnalyticsSalesBucket)]
pub struct SalesBucket {
    /// Start of the hour or UTC day (ms).
    pub bucket: i64,
    /// Orders (a vendor's: with at least one of its lines).
    pub orders: i64,
    /// Units sold.
    pub units: i64,
    /// GMV (a vendor's: of its lines), base currency.
    pub gmv_eur_minor: i64,
}

/// A customer's lifetime value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CustomerValue {
    /// Customer.
    pub customer_id: String,
    /// Orders placed.
    pub orders: i64,
    /// GMV, base currency.
    pub gmv_eur_minor: i64,
    /// First order (ms).
    pub first_order: i64,
    /// Last order (ms).
    pub last_order: i64,
}

/// What `GET /v1/analytics/customers/{id}` answers: a customer's lifetime value, segment
/// and churn risk. The rules are [`CustomerInsight::of`]'s, the one place they live.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CustomerInsight {
    /// Customer.
    pub customer_id: String,
    /// Orders placed, all time.
    pub orders: i64,
    /// Lifetime value: GMV of its orders, base currency (`*_eur_minor` as everywhere).
    pub gmv_eur_minor: i64,
    /// Lifetime value / orders.
    pub aov_eur_minor: i64,
    /// First order (ms).
    pub first_order: i64,
    /// Last order (ms).
    pub last_order: i64,
    /// Whole days since the last order.
    pub days_since_last_order: i64,
    /// Mean days between orders (`None` with a single order).
    pub days_between_orders: Option<f64>,
    /// `new` (one order), `returning` (two), `loyal` (three or more), `vip` (ten or more, or
    /// a lifetime value of 1,000.00 or more).
    pub segment: String,
    /// `low`, `medium` or `high`: how far past its own rhythm the customer is.
    pub churn_risk: String,
}

impl CustomerInsight {
    /// Lifetime value from the facts; segment and churn risk from rules on them. Churn risk
    /// compares the days since the last order with the customer's own mean gap (at least 7
    /// days; 30 for a single order): `high` beyond 3 gaps or 90 days, `medium` beyond 1.5
    /// gaps, `low` otherwise.
    pub fn of(v: CustomerValue, now: i64) -> CustomerInsight {
        const DAY: f64 = 86_400_000.0;
        let since = ((now - v.last_order).max(0) as f64 / DAY).floor();
        let gap = (v.orders > 1).then(|| (v.last_order - v.first_order) as f64 / DAY / (v.orders - 1) as f64);
        let segment = match v.orders {
            n if n >= 10 || v.gmv_eur_minor >= 100_000 => "vip",
            n if n >= 3 => "loyal",
            2 => "returning",
            _ => "new",
        };
        let rhythm = gap.map_or(30.0, |g| g.max(7.0));
        let churn_risk = if since > 90.0 || since > 3.0 * rhythm {
            "high"
        } else if since > 1.5 * rhythm {
            "medium"
        } else {
            "low"
        };
        CustomerInsight {
            aov_eur_minor: if v.orders == 0 { 0 } else { v.gmv_eur_minor / v.orders },
            days_since_last_order: since as i64,
            days_between_orders: gap.map(|g| (g * 10.0).round() / 10.0),
            segment: segment.into(),
            churn_risk: churn_risk.into(),
            customer_id: v.customer_id,
            orders: v.orders,
            gmv_eur_minor: v.gmv_eur_minor,
            first_order: v.first_order,
            last_order: v.last_order,
        }
    }
}

/// A cohort's orders in one month.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CohortMonth {
    /// Month the customers registered (ms at its start).
    pub cohort_month: i64,
    /// Month of the orders (ms at its start).
    pub order_month: i64,
    /// Customers of the cohort who ordered that month.
    pub customers: i64,
    /// Their orders.
    pub orders: i64,
    /// Their GMV.
    pub gmv_eur_minor: i64,
}

/// Async analytics queries for the API. Cheap to clone, `Send + Sync`; queries run on the
/// sinks' own runtime.
#[derive(Clone, Debug)]
pub struct Analytics {
    store: Store,
    base_currency: String,
    rt: Handle,
}

fn first<T>(v: Vec<T>) -> Option<T> {
    v.into_iter().next()
}

fn ratio(a: i64, b: i64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Days summed per currency, in currency order.
fn per_currency(days: &[MoneyDay]) -> Vec<MoneyFlow> {
    let mut by: BTreeMap<&str, MoneyFlow> = BTreeMap::new();
    for d in days {
        by.entry(d.flow.currency.as_str()).or_insert_with(|| MoneyFlow { currency: d.flow.currency.clone(), ..MoneyFlow::default() }).add(&d.flow);
    }
    by.into_values().collect()
}

fn clean(mut v: Vec<TopProduct>) -> Vec<TopProduct> {
    for p in &mut v {
        p.title = p.title.take().filter(|t| !t.is_empty());
        p.category = p.category.take().filter(|t| !t.is_empty());
    }
    v
}

impl Analytics {
    /// A handle on `store`, running queries on `rt`.
    pub fn new(store: Store, base_currency: &str, rt: Handle) -> Self {
        Analytics { store, base_currency: base_currency.to_string(), rt }
    }

    /// `clickhouse` or `parquet`.
    pub fn backend(&self) -> &'static str {
        self.store.backend()
    }

    /// The store, for tools and tests.
    pub fn store(&self) -> &Store {
        &self.store
    }

    async fn on_rt<T: Send + 'static>(&self, f: impl std::future::Future<Output = Result<T>> + Send + 'static) -> Result<T> {
        self.rt.spawn(f).await.map_err(|_| SinkError::Stopped)?
    }

    /// The dashboard for `range` as of `as_of` (ms; default now).
    pub async fn dashboard(&self, range: DashboardRange, as_of: Option<i64>) -> Result<Dashboard> {
        let (from, to) = range.window(as_of.unwrap_or_else(|| chrono::Utc::now().timestamp_millis()));
        let store = self.store.clone();
        let base = self.base_currency.clone();
        self.on_rt(async move {
            let p = [("from", Param::Time(from)), ("to", Param::Time(to))];
            let sales: Option<SalesRow> = first(questions::run(&store, Question::Sales, &p).await?);
            let (orders, units, gmv) = sales.map_or((0, 0, 0), |s| (s.orders.unwrap_or(0), s.units.unwrap_or(0), s.gmv_eur_minor.unwrap_or(0)));
            let top_products = clean(questions::run(&store, Question::TopProducts, &p).await?);
            let top_categories = questions::run(&store, Question::TopCategories, &p).await?;
            let funnel: Funnel = first(questions::run(&store, Question::Funnel, &p).await?).unwrap_or_default();
            let new_customers = first(questions::run::<NewCustomersRow>(&store, Question::NewCustomers, &p).await?)
                .and_then(|r| r.new_customers)
                .unwrap_or(0);
            let returns: Option<ReturnsRow> = first(questions::run(&store, Question::Returns, &p).await?);
            let (returned_orders, returned_units) =
                returns.map_or((0, 0), |r| (r.returned_orders.unwrap_or(0), r.returned_units.unwrap_or(0)));
            let money = questions::run(&store, Question::Money, &p).await?;
            let unit = [("from", Param::Time(from)), ("to", Param::Time(to)), ("unit", Param::Text(range.granularity().unit().to_string()))];
            let series = questions::run(&store, Question::SalesSeries, &unit).await?;
            let vendors = questions::run(&store, Question::Vendors, &p).await?;
            let top_customers = questions::run(&store, Question::CustomerValue, &[]).await?;
            let cohorts = questions::run(&store, Question::Cohorts, &[]).await?;
            Ok(Dashboard {
                range,
                from,
                to,
                base_currency: base,
                gmv_eur_minor: gmv,
                orders,
                units,
                aov_eur_minor: if orders == 0 { 0 } else { gmv / orders },
                top_products,
                top_categories,
                conversion_rate: ratio(funnel.ordered, funnel.sessions),
                funnel,
                new_customers,
                returned_orders,
                returned_units,
                return_rate: ratio(returned_orders, orders),
                money,
                series,
                vendors,
                top_customers,
                cohorts,
            })
        })
        .await
    }

    /// Inventory health: stock now, reservations in `range` as of `as_of` (ms; default now).
    pub async fn inventory(&self, range: DashboardRange, as_of: Option<i64>) -> Result<InventoryHealth> {
        let (from, to) = range.window(as_of.unwrap_or_else(|| chrono::Utc::now().timestamp_millis()));
        let store = self.store.clone();
        self.on_rt(async move {
            let p = [("from", Param::Time(from)), ("to", Param::Time(to))];
            Ok(InventoryHealth {
                range,
                from,
                to,
                low_stock: questions::run(&store, Question::LowStock, &[]).await?,
                warehouses: questions::run(&store, Question::Warehouses, &[]).await?,
                reservations: questions::run(&store, Question::ReservationsSeries, &p).await?,
            })
        })
        .await
    }

    /// The fraud verdicts of `range` as of `as_of` (ms; default now).
    pub async fn fraud(&self, range: DashboardRange, as_of: Option<i64>) -> Result<FraudBoard> {
        let (from, to) = range.window(as_of.unwrap_or_else(|| chrono::Utc::now().timestamp_millis()));
        let store = self.store.clone();
        self.on_rt(async move {
            let p = [("from", Param::Time(from)), ("to", Param::Time(to))];
            let mut decisions: Vec<FraudDecision> = questions::run(&store, Question::FraudDecisions, &p).await?;
            for d in &mut decisions {
                d.avg_score = (d.avg_score * 10.0).round() / 10.0;
            }
            Ok(FraudBoard {
                range,
                from,
                to,
                decisions,
                held: questions::run(&store, Question::FraudHeld, &p).await?,
                signals: questions::run(&store, Question::FraudSignals, &p).await?,
            })
        })
        .await
    }

    /// One vendor's performance for `range` as of `as_of` (ms; default now).
    pub async fn vendor_performance(&self, vendor_id: &str, range: DashboardRange, as_of: Option<i64>) -> Result<VendorPerformance> {
        let (from, to) = range.window(as_of.unwrap_or_else(|| chrono::Utc::now().timestamp_millis()));
        let store = self.store.clone();
        let vendor = vendor_id.to_string();
        self.on_rt(async move {
            let p = [("from", Param::Time(from)), ("to", Param::Time(to)), ("vendor", Param::Text(vendor.clone()))];
            let v = [("vendor", Param::Text(vendor.clone()))];
            let sales: Option<SalesRow> = first(questions::run(&store, Question::VendorSales, &p).await?);
            let (orders, units, gmv) = sales.map_or((0, 0, 0), |s| (s.orders.unwrap_or(0), s.units.unwrap_or(0), s.gmv_eur_minor.unwrap_or(0)));
            let top_products = clean(questions::run(&store, Question::VendorTopProducts, &p).await?);
            let rating: Option<RatingRow> = first(questions::run(&store, Question::VendorRating, &v).await?);
            let stock: Option<StockRow> = first(questions::run(&store, Question::VendorStock, &v).await?);
            let refunds: Option<RefundsRow> = first(questions::run(&store, Question::VendorRefunds, &p).await?);
            let (on_hand, available) = stock.map_or((0, 0), |s| (s.on_hand.unwrap_or(0), s.available.unwrap_or(0)));
            let days: Vec<MoneyDay> = questions::run(&store, Question::VendorMoney, &p).await?;
            Ok(VendorPerformance {
                vendor_id: vendor,
                from,
                to,
                gmv_eur_minor: gmv,
                orders,
                units,
                aov_eur_minor: if orders == 0 { 0 } else { gmv / orders },
                refunds_eur_minor: refunds.and_then(|r| r.refunds_eur_minor).unwrap_or(0),
                rating_avg: rating.as_ref().and_then(|r| r.rating_avg),
                reviews: rating.and_then(|r| r.reviews).unwrap_or(0),
                on_hand,
                available,
                inventory_turnover: (on_hand > 0).then(|| units as f64 / on_hand as f64),
                top_products,
                money: per_currency(&days),
            })
        })
        .await
    }

    /// One vendor's money flow per UTC day and currency in `[from, to)` (ms), oldest first;
    /// days without a movement are left out.
    pub async fn vendor_money(&self, vendor_id: &str, from: i64, to: i64) -> Result<Vec<MoneyDay>> {
        let store = self.store.clone();
        let vendor = vendor_id.to_string();
        self.on_rt(async move {
            let p = [("from", Param::Time(from)), ("to", Param::Time(to)), ("vendor", Param::Text(vendor))];
            questions::run(&store, Question::VendorMoney, &p).await
        })
        .await
    }

    /// One vendor's sales per hour or UTC day in `[from, to)` (ms), oldest first; buckets
    /// without sales are left out. `from`/`to` are best given on bucket boundaries.
    pub async fn vendor_sales(&self, vendor_id: &str, from: i64, to: i64, granularity: Granularity) -> Result<Vec<SalesBucket>> {
        let store = self.store.clone();
        let vendor = vendor_id.to_string();
        self.on_rt(async move {
            let p = [
                ("from", Param::Time(from)),
                ("to", Param::Time(to)),
                ("vendor", Param::Text(vendor)),
                ("unit", Param::Text(granularity.unit().to_string())),
            ];
            questions::run(&store, Question::VendorSalesSeries, &p).await
        })
        .await
    }

    /// The ten customers with the highest lifetime value.
    pub async fn customer_value(&self) -> Result<Vec<CustomerValue>> {
        let store = self.store.clone();
        self.on_rt(async move { questions::run(&store, Question::CustomerValue, &[]).await }).await
    }

    /// One customer's insights as of `now` (ms): lifetime value, segment, churn risk.
    /// `None` when the customer has placed no order.
    pub async fn customer(&self, customer_id: &str, now: i64) -> Result<Option<CustomerInsight>> {
        let store = self.store.clone();
        let customer = customer_id.to_string();
        self.on_rt(async move {
            let row: Option<CustomerValue> = first(questions::run(&store, Question::Customer, &[("customer", Param::Text(customer))]).await?);
            Ok(row.filter(|r| r.orders > 0).map(|r| CustomerInsight::of(r, now)))
        })
        .await
    }

    /// Cohort acquisition: per registration month and order month.
    pub async fn cohorts(&self) -> Result<Vec<CohortMonth>> {
        let store = self.store.clone();
        self.on_rt(async move { questions::run(&store, Question::Cohorts, &[]).await }).await
    }

    /// Rows per table (facts and dimensions).
    pub async fn row_counts(&self) -> Result<BTreeMap<String, u64>> {
        let store = self.store.clone();
        self.on_rt(async move {
            match &store {
                Store::ClickHouse(c) => {
                    let mut out = BTreeMap::new();
                    for t in rows::Rows::TABLES {
                        let n: u64 = c
                            .client()
                            .query(&format!("SELECT count() FROM `{t}`"))
                            .fetch_one()
                            .await
                            .map_err(SinkError::ch(format!("counting {t}")))?;
                        out.insert(t.to_string(), n);
                    }
                    Ok(out)
                }
                Store::Parquet(p) => parquet::count_rows(p.dir()),
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_aligned_to_whole_hours_and_days() {
        let t = 1_764_096_684_000; // 2025-11-25T18:51:24Z
        let (f, to) = DashboardRange::Hour.window(t);
        assert_eq!((to - f, to % HOUR), (HOUR, 0));
        assert!(f <= t && t < to);
        let (f, to) = DashboardRange::Week.window(t);
        assert_eq!((to - f, to % DAY), (7 * DAY, 0));
        assert!(t < to);
        assert_eq!("30d".parse::<DashboardRange>().unwrap(), DashboardRange::Month);
        assert!("2w".parse::<DashboardRange>().is_err());
    }

    #[test]
    fn a_customer_is_segmented_by_orders_and_value_and_at_risk_when_past_its_own_rhythm() {
        const DAY: i64 = 86_400_000;
        let v = |orders, gmv, first, last| CustomerValue { customer_id: "c".into(), orders, gmv_eur_minor: gmv, first_order: first, last_order: last };
        let now = 400 * DAY;
        // One order 10 days ago: new, low risk; 50 days ago: medium (the rhythm of one order is 30 days); 100: high.
        let one = |since| CustomerInsight::of(v(1, 5_000, now - since * DAY, now - since * DAY), now);
        assert_eq!((one(10).segment.as_str(), one(10).churn_risk.as_str()), ("new", "low"));
        assert_eq!(one(50).churn_risk, "medium");
        assert_eq!(one(100).churn_risk, "high");
        // Five orders 10 days apart, the last 12 days ago: loyal, low; 20 days ago: medium; 31: high (3 gaps).
        let five = |since| CustomerInsight::of(v(5, 40_000, now - (40 + since) * DAY, now - since * DAY), now);
        assert_eq!((five(12).segment.as_str(), five(12).churn_risk.as_str(), five(12).days_between_orders), ("loyal", "low", Some(10.0)));
        assert_eq!(five(20).churn_risk, "medium");
        assert_eq!(five(31).churn_risk, "high");
        assert_eq!(five(12).aov_eur_minor, 8_000);
        // Two big orders make a VIP; ten small ones too.
        assert_eq!(CustomerInsight::of(v(2, 150_000, now - 20 * DAY, now - DAY), now).segment, "vip");
        assert_eq!(CustomerInsight::of(v(10, 9_000, now - 90 * DAY, now - DAY), now).segment, "vip");
        assert_eq!(CustomerInsight::of(v(2, 9_000, now - 20 * DAY, now - DAY), now).segment, "returning");
    }
}

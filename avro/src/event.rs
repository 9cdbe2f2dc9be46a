//! The `Event` enum over every event type, the topics of the contract, and the table that
//! ties each type to its topic, its key and its schema file.
//!
//! Adding an event type: write `avro/schemas/<Name>.avsc`, add the struct to `events.rs`
//! and one line to the `contract!` list below (see `docs/SCHEMA-EVOLUTION.md`).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::events::*;

/// A topic of the contract. Several event types share a topic when they are keyed on the
/// same entity, so their order per key is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Topic {
    /// Browsing, search and cart activity; key: session id.
    Sessions,
    /// Account lifecycle; key: customer id.
    Customers,
    /// Order requests from the storefront; key: order id.
    Orders,
    /// Payment provider outcomes; key: order id.
    Payments,
    /// Warehouse and carrier events; key: order id.
    Fulfillment,
    /// Stock movements; key: sku.
    Inventory,
    /// Products, prices, vendors and reviews; key: product or vendor id.
    Catalog,
    /// Currency exchange rates; key: `BASE/QUOTE`. One partition: every instance reads it all.
    ExchangeRates,
    /// Derived by the inventory processor; key: order id (alerts: sku).
    Reservations,
    /// Derived by the orders processor; key: order id.
    Lifecycle,
    /// Derived by the fraud processor; key: order id.
    FraudScores,
    /// Derived by the recommendations processor; key: product id.
    Recommendations,
    /// Derived by the sales processor; key: vendor id.
    VendorSales,
    /// Internal: the order saga's instructions to inventory; key: sku.
    InventoryCommands,
    /// Internal: inventory's answers to the order saga; key: order id.
    InventoryReplies,
    /// Derived by the inventory processor: stock levels after each change; key: sku.
    StockLevels,
    /// Internal to fraud: order facts by customer or by IP; key: customer id or IP.
    FraudChecks,
    /// Internal to fraud: per-stage findings; key: order id.
    FraudSignals,
    /// Internal to recommendations: learning signals; key: product id (category for trend).
    RecoSignals,
    /// Internal to sales: vendor shares of sales and refunds; key: vendor id.
    SalesEvents,
    /// Internal: the order saga's requests to the payments worker; key: order id (plan
    /// requests: vendor id).
    PaymentCommands,
}

impl Topic {
    /// Every topic of the contract, inputs first.
    pub const ALL: [Topic; 21] = [
        Topic::Sessions,
        Topic::Customers,
        Topic::Orders,
        Topic::Payments,
        Topic::Fulfillment,
        Topic::Inventory,
        Topic::Catalog,
        Topic::ExchangeRates,
        Topic::Reservations,
        Topic::Lifecycle,
        Topic::FraudScores,
        Topic::Recommendations,
        Topic::VendorSales,
        Topic::InventoryCommands,
        Topic::InventoryReplies,
        Topic::StockLevels,
        Topic::FraudChecks,
        Topic::FraudSignals,
        Topic::RecoSignals,
        Topic::SalesEvents,
        Topic::PaymentCommands,
    ];

    /// The topic's name on the log.
    pub const fn name(self) -> &'static str {
        match self {
            Topic::Sessions => "storefront.sessions",
            Topic::Customers => "storefront.customers",
            Topic::Orders => "storefront.orders",
            Topic::Payments => "storefront.payments",
            Topic::Fulfillment => "storefront.fulfillment",
            Topic::Inventory => "storefront.inventory",
            Topic::Catalog => "storefront.catalog",
            Topic::ExchangeRates => "storefront.exchange_rates",
            Topic::Reservations => "inventory.reservations",
            Topic::Lifecycle => "orders.lifecycle",
            Topic::FraudScores => "fraud.scores",
            Topic::Recommendations => "recommendations.updates",
            Topic::VendorSales => "sales.vendor_minute",
            Topic::InventoryCommands => "inventory.commands",
            Topic::InventoryReplies => "inventory.replies",
            Topic::StockLevels => "inventory.levels",
            Topic::FraudChecks => "fraud.checks",
            Topic::FraudSignals => "fraud.signals",
            Topic::RecoSignals => "recommendations.signals",
            Topic::SalesEvents => "sales.events",
            Topic::PaymentCommands => "payments.commands",
        }
    }

    /// The topic named `name`, if it is one of the contract's.
    pub fn from_name(name: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|t| t.name() == name)
    }

    /// What the topic's records are keyed by.
    pub const fn key_description(self) -> &'static str {
        match self {
            Topic::Sessions => "session_id",
            Topic::Customers => "customer_id",
            Topic::Orders | Topic::Payments | Topic::Fulfillment => "order_id",
            Topic::Inventory => "sku",
            Topic::Catalog => "product_id or vendor_id",
            Topic::ExchangeRates => "base_currency/quote_currency",
            Topic::Reservations => "order_id (low-stock alerts: sku)",
            Topic::Lifecycle | Topic::FraudScores => "order_id",
            Topic::Recommendations => "product_id (category for trending, session_id for for_session)",
            Topic::VendorSales => "vendor_id",
            Topic::InventoryCommands => "sku",
            Topic::InventoryReplies => "order_id",
            Topic::StockLevels => "sku",
            Topic::FraudChecks => "customer_id or client_ip",
            Topic::FraudSignals => "order_id",
            Topic::RecoSignals => "product_id (category for trend)",
            Topic::SalesEvents => "vendor_id",
            Topic::PaymentCommands => "order_id",
        }
    }

    /// Partitions the topic is created with, unless configured otherwise.
    pub const fn default_partitions(self) -> u32 {
        match self {
            Topic::ExchangeRates => 1,
            _ => 4,
        }
    }

    /// True for topics written from outside (apps, the API, the simulator); false for the
    /// topics processors derive.
    pub const fn is_input(self) -> bool {
        matches!(
            self,
            Topic::Sessions
                | Topic::Customers
                | Topic::Orders
                | Topic::Payments
                | Topic::Fulfillment
                | Topic::Inventory
                | Topic::Catalog
                | Topic::ExchangeRates
        )
    }

    /// The dead-letter topic for records of this topic that can never be processed.
    pub fn dlq_name(self) -> String {
        dlq_topic(self.name())
    }
}

/// The dead-letter topic of any topic: `<topic>.dlq`.
pub fn dlq_topic(topic: &str) -> String {
    format!("{topic}.dlq")
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Static facts about one event type.
#[derive(Debug)]
pub struct EventType {
    /// Record name, e.g. `OrderPlaced`; the full name is `storeflow.v1.<name>`.
    pub name: &'static str,
    /// The topic events of this type go to.
    pub topic: Topic,
    /// The `.avsc` source, compiled into the binary.
    pub schema: &'static str,
}

impl EventType {
    /// `storeflow.v1.<name>`.
    pub fn full_name(&self) -> String {
        format!("{}.{}", crate::NAMESPACE, self.name)
    }

    /// The schema registry subject (TopicRecordNameStrategy): `<topic>-<full name>`.
    pub fn subject(&self) -> String {
        format!("{}-{}", self.topic.name(), self.full_name())
    }

    /// The event type named `name` (`OrderPlaced` or `storeflow.v1.OrderPlaced`).
    pub fn by_name(name: &str) -> Option<&'static EventType> {
        let short = name.strip_prefix("storeflow.v1.").unwrap_or(name);
        EVENT_TYPES.iter().find(|t| t.name == short)
    }

    /// Position of this type in [`EVENT_TYPES`].
    pub fn index(&self) -> usize {
        EVENT_TYPES
            .iter()
            .position(|t| t.name == self.name)
            .expect("an EventType is always an element of EVENT_TYPES")
    }
}

macro_rules! contract {
    ($( $name:ident => $topic:ident, |$e:ident| $key:expr; )*) => {
        /// Any event of the contract.
        #[derive(Clone, Debug, PartialEq)]
        #[allow(clippy::large_enum_variant)]
        pub enum Event {
            $( #[doc = concat!("See [`", stringify!($name), "`].")] $name($name), )*
        }

        /// The type of an [`Event`], without its data. `kind as usize` indexes [`EVENT_TYPES`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(usize)]
        pub enum EventKind {
            $( #[doc = concat!("[`", stringify!($name), "`]")] $name, )*
        }

        impl EventKind {
            /// Every kind, in [`EVENT_TYPES`] order.
            pub const ALL: &'static [EventKind] = &[ $( EventKind::$name, )* ];
        }

        /// Every event type, in a fixed order (the `type_index` of an [`Event`]).
        pub static EVENT_TYPES: &[EventType] = &[
            $( EventType {
                name: stringify!($name),
                topic: Topic::$topic,
                schema: include_str!(concat!("../schemas/", stringify!($name), ".avsc")),
            }, )*
        ];

        impl Event {
            /// Record name, e.g. `OrderPlaced`.
            pub fn name(&self) -> &'static str {
                match self { $( Event::$name(_) => stringify!($name), )* }
            }

            /// The topic this event is published to.
            pub fn topic(&self) -> Topic {
                match self { $( Event::$name(_) => Topic::$topic, )* }
            }

            /// The partitioning key of this event on its topic.
            pub fn key(&self) -> String {
                match self { $( Event::$name($e) => $key, )* }
            }

            /// The event's unique id (for deduplication).
            pub fn event_id(&self) -> &str {
                match self { $( Event::$name(e) => &e.event_id, )* }
            }

            /// When the event happened.
            pub fn occurred_at(&self) -> Timestamp {
                match self { $( Event::$name(e) => e.occurred_at, )* }
            }

            /// This event's type.
            pub fn kind(&self) -> EventKind {
                match self { $( Event::$name(_) => EventKind::$name, )* }
            }

            /// Position of this event's type in [`EVENT_TYPES`].
            pub fn type_index(&self) -> usize {
                self.kind() as usize
            }

            /// Static facts about this event's type.
            pub fn event_type(&self) -> &'static EventType {
                &EVENT_TYPES[self.type_index()]
            }

            /// Serializes the inner struct as an Avro datum with `schema`.
            pub(crate) fn write_datum<W: std::io::Write>(
                &self,
                out: W,
                schema: &serde_avro_fast::Schema,
            ) -> Result<W, serde_avro_fast::ser::SerError> {
                let mut config = serde_avro_fast::ser::SerializerConfig::new(schema);
                match self { $( Event::$name(e) => serde_avro_fast::to_datum(e, out, &mut config), )* }
            }

            /// Decodes an Avro datum of the type at `type_index`, written with `schema`.
            pub(crate) fn read_datum(
                type_index: usize,
                datum: &[u8],
                schema: &serde_avro_fast::Schema,
            ) -> Result<Event, serde_avro_fast::de::DeError> {
                let Some(kind) = EventKind::ALL.get(type_index) else {
                    return Err(<serde_avro_fast::de::DeError as serde::de::Error>::custom(
                        format!("no event type at index {type_index}")));
                };
                match kind {
                    $( EventKind::$name => serde_avro_fast::from_datum_slice::<$name>(datum, schema).map(Event::$name), )*
                }
            }

            /// Builds the event of type `type_index` from JSON, naming the failing field.
            pub(crate) fn from_json_typed(
                type_index: usize,
                value: serde_json::Value,
            ) -> Result<Event, serde_path_to_error::Error<serde_json::Error>> {
                match EventKind::ALL[type_index] {
                    $( EventKind::$name => serde_path_to_error::deserialize::<_, $name>(value).map(Event::$name), )*
                }
            }

            /// The event as JSON: its fields plus `"type": "<Name>"`.
            pub fn to_json(&self) -> serde_json::Value {
                let mut v = match self {
                    $( Event::$name(e) => serde_json::to_value(e), )*
                }
                .expect("events contain only JSON-representable values");
                if let serde_json::Value::Object(map) = &mut v {
                    map.insert("type".into(), serde_json::Value::String(self.name().into()));
                }
                v
            }
        }

        $(
            impl From<$name> for Event {
                fn from(e: $name) -> Event { Event::$name(e) }
            }
        )*
    };
}

contract! {
    PageViewed => Sessions, |e| e.session_id.clone();
    ProductViewed => Sessions, |e| e.session_id.clone();
    SearchPerformed => Sessions, |e| e.session_id.clone();
    CartItemAdded => Sessions, |e| e.session_id.clone();
    CartItemRemoved => Sessions, |e| e.session_id.clone();
    CheckoutStarted => Sessions, |e| e.session_id.clone();
    CustomerRegistered => Customers, |e| e.customer_id.clone();
    CustomerErased => Customers, |e| e.customer_id.clone();
    OrderPlaced => Orders, |e| e.order_id.clone();
    OrderCancelRequested => Orders, |e| e.order_id.clone();
    ReturnRequested => Orders, |e| e.order_id.clone();
    PaymentAuthorized => Payments, |e| e.order_id.clone();
    PaymentCaptured => Payments, |e| e.order_id.clone();
    PaymentFailed => Payments, |e| e.order_id.clone();
    RefundIssued => Payments, |e| e.order_id.clone();
    ShipmentCreated => Fulfillment, |e| e.order_id.clone();
    ShipmentShipped => Fulfillment, |e| e.order_id.clone();
    ShipmentDelivered => Fulfillment, |e| e.order_id.clone();
    ReturnReceived => Fulfillment, |e| e.order_id.clone();
    StockReceived => Inventory, |e| e.sku.clone();
    StockAdjusted => Inventory, |e| e.sku.clone();
    StockTransferred => Inventory, |e| e.sku.clone();
    ProductCreated => Catalog, |e| e.product_id.clone();
    ProductUpdated => Catalog, |e| e.product_id.clone();
    PriceChanged => Catalog, |e| e.product_id.clone();
    VendorOnboarded => Catalog, |e| e.vendor_id.clone();
    ReviewSubmitted => Catalog, |e| e.product_id.clone();
    ExchangeRateUpdated => ExchangeRates, |e| format!("{}/{}", e.base_currency, e.quote_currency);
    ReservationMade => Reservations, |e| e.order_id.clone();
    ReservationRejected => Reservations, |e| e.order_id.clone();
    ReservationReleased => Reservations, |e| e.order_id.clone();
    ReservationCommitted => Reservations, |e| e.order_id.clone();
    LowStockAlert => Reservations, |e| e.sku.clone();
    OrderStatusChanged => Lifecycle, |e| e.order_id.clone();
    FraudScored => FraudScores, |e| e.order_id.clone();
    RecommendationsUpdated => Recommendations, |e| e.category.clone().or_else(|| e.session_id.clone()).unwrap_or_else(|| e.product_id.clone());
    VendorSalesMinute => VendorSales, |e| e.vendor_id.clone();
    InventoryCommand => InventoryCommands, |e| e.sku.clone();
    InventoryReply => InventoryReplies, |e| e.order_id.clone();
    StockLevelChanged => StockLevels, |e| e.sku.clone();
    FraudCheck => FraudChecks, |e| e.dimension_key.clone();
    FraudSignal => FraudSignals, |e| e.order_id.clone();
    RecoSignal => RecoSignals, |e| if e.kind == "trend" { e.category.clone().unwrap_or_default() } else { e.product_id.clone() };
    VendorSaleRecorded => SalesEvents, |e| e.vendor_id.clone();
    PaymentRequested => PaymentCommands, |e| e.order_id.clone();
    CaptureRequested => PaymentCommands, |e| e.order_id.clone();
    RefundRequested => PaymentCommands, |e| e.order_id.clone();
    VendorTransferCreated => Payments, |e| e.order_id.clone();
    VendorTransferReversed => Payments, |e| e.order_id.clone();
    DisputeOpened => Payments, |e| e.order_id.clone();
    DisputeClosed => Payments, |e| e.order_id.clone();
    VendorAccountUpdated => Catalog, |e| e.vendor_id.clone();
    VendorPlanChanged => Catalog, |e| e.vendor_id.clone();
    PlanChangeRequested => PaymentCommands, |e| e.vendor_id.clone();
}

impl Event {
    /// The order this event is about, for every type that names one: the one place the
    /// saga, the read model's order history and the API ask it.
    pub fn order_id(&self) -> Option<&str> {
        use crate::events as e;
        let id = match self {
            Event::OrderPlaced(e::OrderPlaced { order_id, .. })
            | Event::OrderCancelRequested(e::OrderCancelRequested { order_id, .. })
            | Event::ReturnRequested(e::ReturnRequested { order_id, .. })
            | Event::PaymentAuthorized(e::PaymentAuthorized { order_id, .. })
            | Event::PaymentCaptured(e::PaymentCaptured { order_id, .. })
            | Event::PaymentFailed(e::PaymentFailed { order_id, .. })
            | Event::RefundIssued(e::RefundIssued { order_id, .. })
            | Event::VendorTransferCreated(e::VendorTransferCreated { order_id, .. })
            | Event::VendorTransferReversed(e::VendorTransferReversed { order_id, .. })
            | Event::DisputeOpened(e::DisputeOpened { order_id, .. })
            | Event::DisputeClosed(e::DisputeClosed { order_id, .. })
            | Event::PaymentRequested(e::PaymentRequested { order_id, .. })
            | Event::CaptureRequested(e::CaptureRequested { order_id, .. })
            | Event::RefundRequested(e::RefundRequested { order_id, .. })
            | Event::ShipmentCreated(e::ShipmentCreated { order_id, .. })
            | Event::ShipmentShipped(e::ShipmentShipped { order_id, .. })
            | Event::ShipmentDelivered(e::ShipmentDelivered { order_id, .. })
            | Event::ReturnReceived(e::ReturnReceived { order_id, .. })
            | Event::ReservationMade(e::ReservationMade { order_id, .. })
            | Event::ReservationRejected(e::ReservationRejected { order_id, .. })
            | Event::ReservationReleased(e::ReservationReleased { order_id, .. })
            | Event::ReservationCommitted(e::ReservationCommitted { order_id, .. })
            | Event::OrderStatusChanged(e::OrderStatusChanged { order_id, .. })
            | Event::FraudScored(e::FraudScored { order_id, .. })
            | Event::FraudCheck(e::FraudCheck { order_id, .. })
            | Event::FraudSignal(e::FraudSignal { order_id, .. })
            | Event::InventoryCommand(e::InventoryCommand { order_id, .. })
            | Event::InventoryReply(e::InventoryReply { order_id, .. })
            | Event::VendorSaleRecorded(e::VendorSaleRecorded { order_id, .. }) => order_id,
            _ => return None,
        };
        Some(id)
    }

    /// The event types published to `topic`.
    pub fn types_of(topic: Topic) -> impl Iterator<Item = &'static EventType> {
        EVENT_TYPES.iter().filter(move |t| t.topic == topic)
    }

    /// Whether the event can be processed at all, beyond its schema: the contract's rules
    /// on values (an order's lines and amounts, [`crate::OrderPlaced::check_amounts`]). The
    /// error names the field. Processors and sinks refuse what fails it (to the DLQ), so
    /// no store holds what the pipeline refused.
    ///
    /// Avro's doubles may be NaN or infinite on the wire (JSON cannot say either, so only a
    /// producer writing Avro can send one): a score or weight that is not a number would
    /// poison every sum and ordering it joins, so it is refused here, naming the field.
    pub fn check(&self) -> Result<(), String> {
        let finite = |field: &str, x: f64| if x.is_finite() { Ok(()) } else { Err(format!("{field}: {x} is not a finite number")) };
        match self {
            Event::OrderPlaced(o) => o.check_amounts(),
            Event::RecoSignal(s) => finite("weight", s.weight).and_then(|()| finite("count", s.count)),
            Event::RecommendationsUpdated(u) => {
                u.items.iter().enumerate().try_for_each(|(i, p)| finite(&format!("items[{i}].score"), p.score))
            }
            _ => Ok(()),
        }
    }
}

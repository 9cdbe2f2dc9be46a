//! inventory — stock per (sku, warehouse) that never goes below zero, and reservations for
//! orders.
//!
//! Reads `storefront.inventory` (stock received, adjusted, transferred) and
//! `inventory.commands` (the order saga's reserve / release / commit / ship / restock
//! instructions), both keyed by sku, so one task owns every fact about a sku. Writes
//! `inventory.replies` (answers to the saga, keyed by order), `inventory.reservations`
//! (low-stock alerts, keyed by sku) and `inventory.levels` (the level of a sku in a
//! warehouse after every change, for read models). The design across partitions is in
//! `docs/RESERVATIONS.md`.
//!
//! Invariant, after every record: 0 ≤ reserved ≤ on_hand per (sku, warehouse); available =
//! on_hand − reserved. A stock event that would break it is refused to the DLQ, unchanged.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use storeflow_avro::{
    Event, InventoryCommand, InventoryReply, LowStockAlert, ReservedLine, Timestamp, Topic, WarehouseStock,
};

use crate::geo::distance;
use crate::{Ctx, Flow, Input, ProcessError, Processor, Store, Timer};

/// `[processors.inventory]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InventoryConfig {
    /// Warehouse id → ISO-3166-1 alpha-2 country it ships from (nearest first when
    /// reserving). Unknown warehouses count as far from everything.
    pub warehouses: BTreeMap<String, String>,
    /// Alert when a sku's available units (over all warehouses) fall below this.
    pub low_stock_threshold: i32,
    /// Per-sku thresholds that override the default.
    pub thresholds: BTreeMap<String, i32>,
    /// A hold not committed by its `expires_at` is released by inventory itself this long
    /// after — a safety net: the saga releases unpaid holds at its payment timeout. Long by
    /// default, because inventory's stream time runs ahead of the saga's when a backlog is
    /// replayed (stock events need no round trip).
    pub expiry_grace_ms: i64,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        InventoryConfig {
            warehouses: crate::geo::default_warehouses(),
            low_stock_threshold: 5,
            thresholds: BTreeMap::new(),
            expiry_grace_ms: 24 * 3_600_000,
        }
    }
}

/// Units of one sku in one warehouse.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stock {
    /// Physically there.
    pub on_hand: i64,
    /// Promised to orders not yet shipped.
    pub reserved: i64,
    /// One more per change (what `StockLevelChanged.version` carries).
    #[serde(default)]
    pub version: i64,
}

impl Stock {
    /// Units that can still be promised.
    pub fn available(&self) -> i64 {
        self.on_hand - self.reserved
    }
}

/// What one order holds of one sku.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// Units per warehouse.
    pub lines: Vec<(String, i64)>,
    /// The order is paid for (`commit` command): the hold no longer expires.
    pub committed: bool,
    /// When it lapses unless committed (ms).
    pub expires_at: i64,
}

/// Units per `<sku>|<warehouse>`.
pub const STOCK: Store<Stock> = Store::new("stock");
/// What each order holds of each sku, per `<order>|<sku>`.
pub const HOLDS: Store<Hold> = Store::new("holds");
/// The skus a low-stock alert is out for (until their stock recovers).
pub const ALERTED: Store<bool> = Store::new("alerted");

/// The inventory processor.
pub struct Inventory(InventoryConfig);

fn key(sku: &str, warehouse: &str) -> String {
    format!("{sku}|{warehouse}")
}

fn new_id(ctx_time: i64, parts: &[&str]) -> String {
    crate::ids::derived_event_id(0xcbf2_9ce4_8422_2325, 17, ctx_time, parts)
}

impl Inventory {
    fn country_of(&self, warehouse: &str) -> &str {
        self.0.warehouses.get(warehouse).map(String::as_str).unwrap_or("")
    }

    fn threshold(&self, sku: &str) -> i32 {
        self.0.thresholds.get(sku).copied().unwrap_or(self.0.low_stock_threshold)
    }

    /// Every warehouse's stock of `sku`.
    fn stocks(ctx: &mut Ctx<'_, Event>, sku: &str) -> Result<Vec<(String, Stock)>, ProcessError> {
        Ok(ctx
            .scan_prefix(STOCK, &format!("{sku}|"))?
            .into_iter()
            .map(|(k, s)| (k.split_once('|').map(|(_, w)| w.to_string()).unwrap_or_default(), s))
            .collect())
    }

    fn availability(ctx: &mut Ctx<'_, Event>, sku: &str) -> Result<Vec<WarehouseStock>, ProcessError> {
        Ok(Self::stocks(ctx, sku)?
            .into_iter()
            .map(|(w, s)| WarehouseStock { warehouse_id: w, available: s.available().clamp(0, i32::MAX as i64) as i32 })
            .collect())
    }

    /// Emits a low-stock alert when `sku`'s total available crossed below its threshold;
    /// re-arms when it is back above.
    fn check_low_stock(&self, ctx: &mut Ctx<'_, Event>, sku: &str) -> Result<(), ProcessError> {
        let available: i64 = Self::stocks(ctx, sku)?.iter().map(|(_, s)| s.available()).sum();
        let threshold = self.threshold(sku);
        let alerted = ctx.get(ALERTED, sku)?.unwrap_or(false);
        if available < i64::from(threshold) && !alerted {
            ctx.put(ALERTED, sku, &true)?;
            let t = ctx.time();
            ctx.emit(Event::LowStockAlert(LowStockAlert {
                event_id: new_id(t, &["low", sku, &available.to_string()]),
                occurred_at: Timestamp(t),
                sku: sku.to_string(),
                warehouse_id: None,
                available: available.clamp(0, i32::MAX as i64) as i32,
                threshold,
            }));
        } else if available >= i64::from(threshold) && alerted {
            ctx.delete(ALERTED, sku)?;
        }
        Ok(())
    }

    /// Applies `f` to the stock of `sku` at `warehouse`, refusing a result that breaks the
    /// invariant, and publishes the new level (`inventory.levels`) for read models.
    fn change_because(ctx: &mut Ctx<'_, Event>, sku: &str, warehouse: &str, cause: &str, f: impl FnOnce(&mut Stock)) -> Result<Stock, ProcessError> {
        let k = key(sku, warehouse);
        let before = ctx.get(STOCK, &k)?.unwrap_or_default();
        let mut s = before;
        f(&mut s);
        if s.reserved < 0 || s.reserved > s.on_hand {
            // Never write a state that breaks 0 ≤ reserved ≤ on_hand: refuse the record.
            return Err(ProcessError::permanent(format!(
                "{k}: {before:?} would become {s:?}, breaking 0 ≤ reserved ≤ on_hand"
            )));
        }
        s.version = before.version + 1;
        ctx.put(STOCK, &k, &s)?;
        let t = ctx.time();
        let clamp = |v: i64| v.clamp(0, i64::from(i32::MAX)) as i32;
        ctx.emit(Event::StockLevelChanged(storeflow_avro::StockLevelChanged {
            event_id: new_id(t, &["level", &k, &s.on_hand.to_string(), &s.reserved.to_string(), cause]),
            occurred_at: Timestamp(t),
            sku: sku.to_string(),
            warehouse_id: warehouse.to_string(),
            on_hand: clamp(s.on_hand),
            reserved: clamp(s.reserved),
            available: clamp(s.available()),
            cause: cause.to_string(),
            version: s.version,
        }));
        Ok(s)
    }

    /// Chooses where to hold `qty` units: one warehouse that has them all, nearest to the
    /// customer first; else split over warehouses nearest first; else nothing.
    fn allocate(&self, stocks: &[(String, Stock)], qty: i64, country: &str, only: Option<&str>) -> Option<Vec<(String, i64)>> {
        let mut ranked: Vec<&(String, Stock)> = stocks
            .iter()
            .filter(|(w, s)| s.available() > 0 && only.is_none_or(|o| o == w))
            .collect();
        ranked.sort_by_key(|(w, s)| (distance(self.country_of(w), country), -s.available(), w.clone()));
        if let Some((w, _)) = ranked.iter().find(|(_, s)| s.available() >= qty) {
            return Some(vec![(w.clone(), qty)]);
        }
        if only.is_some() {
            return None;
        }
        let mut left = qty;
        let mut lines = Vec::new();
        for (w, s) in ranked {
            let take = s.available().min(left);
            lines.push((w.clone(), take));
            left -= take;
            if left == 0 {
                return Some(lines);
            }
        }
        None
    }

    fn reply(ctx: &mut Ctx<'_, Event>, cmd: &InventoryCommand, action: &str, ok: bool, lines: &[(String, i64)], reason: &str) -> Result<(), ProcessError> {
        let availability = Self::availability(ctx, &cmd.sku)?;
        let t = ctx.time();
        ctx.emit(Event::InventoryReply(InventoryReply {
            event_id: new_id(t, &["reply", &cmd.event_id, action]),
            occurred_at: Timestamp(t),
            order_id: cmd.order_id.clone(),
            sku: cmd.sku.clone(),
            action: action.to_string(),
            ok,
            requested: cmd.quantity,
            lines: lines
                .iter()
                .map(|(w, q)| ReservedLine { sku: cmd.sku.clone(), warehouse_id: w.clone(), quantity: *q as i32 })
                .collect(),
            availability,
            reason: reason.to_string(),
        }));
        Ok(())
    }

    fn hold_key(order: &str, sku: &str) -> String {
        format!("{sku}|{order}")
    }

    fn take_hold(ctx: &mut Ctx<'_, Event>, sku: &str, order: &str) -> Result<Option<Hold>, ProcessError> {
        let k = Self::hold_key(order, sku);
        let hold = ctx.get(HOLDS, &k)?;
        if let Some(h) = &hold {
            for (w, q) in &h.lines {
                Self::change_because(ctx, sku, w, "released", |s| s.reserved -= q)?;
            }
            ctx.delete(HOLDS, &k)?;
            ctx.cancel_timer(h.expires_at, &format!("expire|{k}"));
        }
        Ok(hold)
    }

    fn put_hold(&self, ctx: &mut Ctx<'_, Event>, sku: &str, order: &str, hold: &Hold) -> Result<(), ProcessError> {
        for (w, q) in &hold.lines {
            Self::change_because(ctx, sku, w, "reserved", |s| s.reserved += q)?;
        }
        let k = Self::hold_key(order, sku);
        ctx.put(HOLDS, &k, hold)?;
        if !hold.committed {
            ctx.set_timer(hold.expires_at, &format!("expire|{k}"));
        }
        Ok(())
    }

    fn command(&mut self, cmd: &InventoryCommand, ctx: &mut Ctx<'_, Event>) -> Result<(), ProcessError> {
        if cmd.quantity <= 0 && matches!(cmd.action.as_str(), "reserve" | "ship" | "restock") {
            return Err(ProcessError::permanent(format!("{} of {} units of {}", cmd.action, cmd.quantity, cmd.sku)));
        }
        let qty = i64::from(cmd.quantity);
        let (sku, order) = (cmd.sku.as_str(), cmd.order_id.as_str());
        match cmd.action.as_str() {
            "reserve" => {
                let existing = ctx.get(HOLDS, &Self::hold_key(order, sku))?;
                let only = cmd.warehouse_id.as_deref();
                match (existing, only) {
                    // The same request again (a redelivery): answer what is held.
                    (Some(h), None) => Self::reply(ctx, cmd, "reserve", true, &h.lines, "already held")?,
                    // A move to one warehouse: give the hold back, try there, else keep it.
                    (Some(h), Some(w)) => {
                        Self::take_hold(ctx, sku, order)?;
                        let stocks = Self::stocks(ctx, sku)?;
                        let moved = self.allocate(&stocks, qty, cmd.ship_country.as_deref().unwrap_or(""), Some(w));
                        let new = Hold { lines: moved.clone().unwrap_or_else(|| h.lines.clone()), ..h };
                        self.put_hold(ctx, sku, order, &new)?;
                        let reason = if moved.is_some() { format!("moved to {w}") } else { format!("{w} cannot hold {qty}; kept where it was") };
                        Self::reply(ctx, cmd, "reserve", moved.is_some(), &new.lines, &reason)?;
                    }
                    (None, only) => {
                        let stocks = Self::stocks(ctx, sku)?;
                        match self.allocate(&stocks, qty, cmd.ship_country.as_deref().unwrap_or(""), only) {
                            Some(lines) => {
                                let expires_at = cmd.expires_at.map(|t| t.millis()).unwrap_or(ctx.time() + 900_000) + self.0.expiry_grace_ms;
                                let hold = Hold { lines: lines.clone(), committed: false, expires_at };
                                self.put_hold(ctx, sku, order, &hold)?;
                                Self::reply(ctx, cmd, "reserve", true, &lines, "held")?;
                            }
                            None => {
                                let total: i64 = stocks.iter().map(|(_, s)| s.available().max(0)).sum();
                                Self::reply(ctx, cmd, "reserve", false, &[], &format!("{total} of {qty} units available"))?;
                            }
                        }
                    }
                }
            }
            "release" => {
                let held = ctx.get(HOLDS, &Self::hold_key(order, sku))?;
                match held {
                    Some(h) => {
                        Self::take_hold(ctx, sku, order)?;
                        Self::reply(ctx, cmd, "release", true, &h.lines, &cmd.reason)?;
                    }
                    // Nothing held (already released, expired or never made): nothing to do.
                    None => Self::reply(ctx, cmd, "release", false, &[], "nothing held")?,
                }
            }
            "commit" => {
                let k = Self::hold_key(order, sku);
                match ctx.get(HOLDS, &k)? {
                    Some(mut h) if !h.committed => {
                        ctx.cancel_timer(h.expires_at, &format!("expire|{k}"));
                        h.committed = true;
                        ctx.put(HOLDS, &k, &h)?;
                    }
                    Some(_) => {}
                    None => return Err(ProcessError::permanent(format!("commit of {sku} for order {order}: nothing is held"))),
                }
            }
            "ship" => {
                let k = Self::hold_key(order, sku);
                let Some(mut h) = ctx.get(HOLDS, &k)? else {
                    return Err(ProcessError::permanent(format!("shipping {qty} of {sku} for order {order}, which holds none")));
                };
                // Ship from the held lines (the named warehouse first), up to the quantity.
                h.lines.sort_by_key(|(w, _)| Some(w.as_str()) != cmd.warehouse_id.as_deref());
                let mut left = qty;
                for (w, q) in h.lines.iter_mut() {
                    let take = (*q).min(left);
                    if take == 0 {
                        continue;
                    }
                    Self::change_because(ctx, sku, w, "shipped", |s| {
                        s.reserved -= take;
                        s.on_hand -= take;
                    })?;
                    *q -= take;
                    left -= take;
                }
                if left > 0 {
                    return Err(ProcessError::permanent(format!("shipping {qty} of {sku} for order {order}, which holds {}", qty - left)));
                }
                h.lines.retain(|(_, q)| *q > 0);
                if h.lines.is_empty() {
                    ctx.delete(HOLDS, &k)?;
                    ctx.cancel_timer(h.expires_at, &format!("expire|{k}"));
                } else {
                    ctx.put(HOLDS, &k, &h)?;
                }
            }
            "restock" => {
                if cmd.restockable {
                    let w = cmd.warehouse_id.as_deref().unwrap_or("");
                    if w.is_empty() {
                        return Err(ProcessError::permanent(format!("restock of {sku} names no warehouse")));
                    }
                    Self::change_because(ctx, sku, w, "restocked", |s| s.on_hand += qty)?;
                }
            }
            other => return Err(ProcessError::permanent(format!("unknown inventory action `{other}`"))),
        }
        self.check_low_stock(ctx, sku)
    }
}

impl Processor for Inventory {
    const NAME: &'static str = "inventory";
    type Config = InventoryConfig;
    type In = Event;
    type Out = Event;

    fn new(config: InventoryConfig) -> Self {
        Inventory(config)
    }

    fn flow(&self) -> Flow {
        let outputs = [Topic::Reservations.name(), Topic::StockLevels.name()];
        // Stock moves and the saga's commands change the same stock: one order. The answers
        // to the saga close the orders ⇄ inventory cycle: a feedback edge (the saga hears of
        // a reservation `lookahead` after inventory made it).
        Flow::new()
            .group(&[Topic::Inventory.name(), Topic::InventoryCommands.name()])
            .emits(&outputs)
            .feeds_back(&[Topic::InventoryReplies.name()])
            .timers()
            .emits(&outputs)
            .feeds_back(&[Topic::InventoryReplies.name()])
            .build()
    }

    fn stores(&self) -> &'static [&'static str] {
        &[STOCK.name, HOLDS.name, ALERTED.name]
    }

    fn process(&mut self, input: &Input<Event>, ctx: &mut Ctx<'_, Event>) -> Result<(), ProcessError> {
        match &input.value {
            Event::StockReceived(e) => {
                if e.quantity <= 0 {
                    return Err(ProcessError::permanent(format!("received {} units", e.quantity)));
                }
                Self::change_because(ctx, &e.sku, &e.warehouse_id, "received", |s| s.on_hand += i64::from(e.quantity))?;
                self.check_low_stock(ctx, &e.sku)
            }
            Event::StockAdjusted(e) => {
                let s = ctx.get(STOCK, &key(&e.sku, &e.warehouse_id))?.unwrap_or_default();
                let on_hand = s.on_hand + i64::from(e.delta);
                if on_hand < s.reserved {
                    return Err(ProcessError::permanent(format!(
                        "adjusting {} by {} would leave {on_hand} on hand at {}, below the {} units reserved",
                        e.sku, e.delta, e.warehouse_id, s.reserved
                    )));
                }
                Self::change_because(ctx, &e.sku, &e.warehouse_id, "adjusted", |s| s.on_hand = on_hand)?;
                self.check_low_stock(ctx, &e.sku)
            }
            Event::StockTransferred(e) => {
                let q = i64::from(e.quantity);
                let from = ctx.get(STOCK, &key(&e.sku, &e.from_warehouse_id))?.unwrap_or_default();
                if q <= 0 || from.available() < q {
                    return Err(ProcessError::permanent(format!(
                        "transferring {q} of {} from {}, which has {} available",
                        e.sku,
                        e.from_warehouse_id,
                        from.available()
                    )));
                }
                Self::change_because(ctx, &e.sku, &e.from_warehouse_id, "transferred", |s| s.on_hand -= q)?;
                Self::change_because(ctx, &e.sku, &e.to_warehouse_id, "transferred", |s| s.on_hand += q)?;
                Ok(())
            }
            Event::InventoryCommand(cmd) => self.command(cmd, ctx),
            other => Err(ProcessError::permanent(format!("inventory does not handle {}", other.name()))),
        }
    }

    fn on_timer(&mut self, timer: &Timer, ctx: &mut Ctx<'_, Event>) -> Result<(), ProcessError> {
        let Some(hold_key) = timer.key.strip_prefix("expire|") else { return Ok(()) };
        let Some((sku, order)) = hold_key.split_once('|') else { return Ok(()) };
        let Some(h) = ctx.get(HOLDS, hold_key)? else { return Ok(()) };
        if h.committed || h.expires_at > timer.at {
            return Ok(());
        }
        Self::take_hold(ctx, sku, order)?;
        let cmd = InventoryCommand {
            event_id: format!("expire-{hold_key}"),
            occurred_at: Timestamp(timer.at),
            order_id: order.to_string(),
            sku: sku.to_string(),
            action: "release".into(),
            quantity: h.lines.iter().map(|(_, q)| *q).sum::<i64>() as i32,
            warehouse_id: None,
            ship_country: None,
            expires_at: None,
            reason: "expired".into(),
            restockable: true,
        };
        Self::reply(ctx, &cmd, "expire", true, &h.lines, "the hold expired before payment was captured")?;
        self.check_low_stock(ctx, sku)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestDriver;

    const T0: i64 = 1_764_000_000_000;

    struct Run {
        d: TestDriver,
        n: u128,
    }

    impl Run {
        fn new() -> Run {
            Run { d: TestDriver::new(Inventory::new(InventoryConfig::default())), n: 0 }
        }
        fn next(&mut self) -> (String, Timestamp) {
            self.n += 1;
            (uuid::Uuid::from_u128(self.n).to_string(), Timestamp(T0 + self.n as i64 * 1000))
        }
        fn receive(&mut self, sku: &str, wh: &str, q: i32) {
            let (event_id, occurred_at) = self.next();
            self.d.pipe(Event::StockReceived(storeflow_avro::StockReceived { event_id, occurred_at, sku: sku.into(), warehouse_id: wh.into(), quantity: q, reference: None }));
        }
        fn cmd(&mut self, order: &str, sku: &str, action: &str, q: i32, wh: Option<&str>, country: &str) {
            let (event_id, occurred_at) = self.next();
            self.d.pipe(Event::InventoryCommand(InventoryCommand {
                event_id,
                occurred_at,
                order_id: order.into(),
                sku: sku.into(),
                action: action.into(),
                quantity: q,
                warehouse_id: wh.map(str::to_string),
                ship_country: Some(country.into()),
                expires_at: Some(Timestamp(occurred_at.millis() + 60_000)),
                reason: "test".into(),
                restockable: true,
            }));
        }
        fn stock(&mut self, sku: &str, wh: &str) -> Stock {
            let s = self.d.store("inventory", STOCK, &key(sku, wh)).unwrap_or_default();
            Stock { version: 0, ..s }
        }
        fn replies(&self) -> Vec<InventoryReply> {
            self.d
                .outputs::<Event>(Topic::InventoryReplies.name())
                .into_iter()
                .filter_map(|e| if let Event::InventoryReply(r) = e { Some(r) } else { None })
                .collect()
        }
    }

    #[test]
    fn a_reservation_takes_the_nearest_warehouse_that_has_it_all() {
        let mut r = Run::new();
        r.receive("S", "wh-us-newark", 10);
        r.receive("S", "wh-de-berlin", 10);
        r.cmd("o1", "S", "reserve", 4, None, "FR");
        let rep = &r.replies()[0];
        assert!(rep.ok);
        assert_eq!(rep.lines, vec![ReservedLine { sku: "S".into(), warehouse_id: "wh-de-berlin".into(), quantity: 4 }]);
        assert_eq!(r.stock("S", "wh-de-berlin"), Stock { on_hand: 10, reserved: 4, version: 0 });
        assert_eq!(r.stock("S", "wh-us-newark").reserved, 0);
    }

    #[test]
    fn a_reservation_splits_only_when_no_warehouse_has_enough_and_is_refused_when_all_lack() {
        let mut r = Run::new();
        r.receive("S", "wh-us-newark", 3);
        r.receive("S", "wh-de-berlin", 2);
        r.cmd("o1", "S", "reserve", 4, None, "DE");
        let rep = &r.replies()[0];
        assert!(rep.ok);
        assert_eq!(rep.lines.iter().map(|l| (l.warehouse_id.as_str(), l.quantity)).collect::<Vec<_>>(), vec![("wh-de-berlin", 2), ("wh-us-newark", 2)]);
        r.cmd("o2", "S", "reserve", 2, None, "DE");
        let rep = &r.replies()[1];
        assert!(!rep.ok, "only 1 unit is left");
        assert_eq!(rep.reason, "1 of 2 units available");
        assert_eq!(r.stock("S", "wh-us-newark"), Stock { on_hand: 3, reserved: 2, version: 0 }, "a refused reservation holds nothing");
    }

    #[test]
    fn release_ship_and_restock_move_stock_and_release_is_idempotent() {
        let mut r = Run::new();
        r.receive("S", "wh-de-berlin", 5);
        r.cmd("o1", "S", "reserve", 3, None, "DE");
        r.cmd("o1", "S", "release", 3, None, "DE");
        r.cmd("o1", "S", "release", 3, None, "DE");
        assert_eq!(r.stock("S", "wh-de-berlin"), Stock { on_hand: 5, reserved: 0, version: 0 });
        assert_eq!(r.replies().iter().filter(|x| x.action == "release" && x.ok).count(), 1);
        r.cmd("o2", "S", "reserve", 2, None, "DE");
        r.cmd("o2", "S", "commit", 2, None, "DE");
        r.cmd("o2", "S", "ship", 2, Some("wh-de-berlin"), "DE");
        assert_eq!(r.stock("S", "wh-de-berlin"), Stock { on_hand: 3, reserved: 0, version: 0 });
        r.cmd("o2", "S", "restock", 1, Some("wh-de-berlin"), "DE");
        assert_eq!(r.stock("S", "wh-de-berlin").on_hand, 4);
        r.cmd("o3", "S", "ship", 1, Some("wh-de-berlin"), "DE");
        assert_eq!(r.d.dlq(Topic::InventoryCommands.name()).len(), 1, "shipping unreserved stock is refused");
    }

    #[test]
    fn an_adjustment_below_the_reserved_units_is_refused_and_changes_nothing() {
        let mut r = Run::new();
        r.receive("S", "wh-de-berlin", 5);
        r.cmd("o1", "S", "reserve", 4, None, "DE");
        let (event_id, occurred_at) = r.next();
        r.d.pipe(Event::StockAdjusted(storeflow_avro::StockAdjusted { event_id, occurred_at, sku: "S".into(), warehouse_id: "wh-de-berlin".into(), delta: -2, reason: "damaged".into() }));
        let dlq = r.d.dlq(Topic::Inventory.name());
        assert_eq!(dlq.len(), 1);
        assert!(dlq[0].reason.contains("below the 4 units reserved"), "{}", dlq[0].reason);
        assert_eq!(r.stock("S", "wh-de-berlin"), Stock { on_hand: 5, reserved: 4, version: 0 });
        let (event_id, occurred_at) = r.next();
        r.d.pipe(Event::StockAdjusted(storeflow_avro::StockAdjusted { event_id, occurred_at, sku: "S".into(), warehouse_id: "wh-de-berlin".into(), delta: -1, reason: "damaged".into() }));
        assert_eq!(r.stock("S", "wh-de-berlin"), Stock { on_hand: 4, reserved: 4, version: 0 });
    }

    #[test]
    fn a_transfer_needs_available_units_at_the_source() {
        let mut r = Run::new();
        r.receive("S", "wh-de-berlin", 5);
        r.cmd("o1", "S", "reserve", 4, None, "DE");
        for (q, refused) in [(2, 1), (1, 1)] {
            let (event_id, occurred_at) = r.next();
            r.d.pipe(Event::StockTransferred(storeflow_avro::StockTransferred { event_id, occurred_at, sku: "S".into(), from_warehouse_id: "wh-de-berlin".into(), to_warehouse_id: "wh-nl-venlo".into(), quantity: q }));
            assert_eq!(r.d.dlq(Topic::Inventory.name()).len(), refused, "after the transfer of {q}");
        }
        assert_eq!(r.stock("S", "wh-de-berlin"), Stock { on_hand: 4, reserved: 4, version: 0 });
        assert_eq!(r.stock("S", "wh-nl-venlo").on_hand, 1);
    }

    #[test]
    fn an_uncommitted_hold_expires_and_a_committed_one_does_not() {
        let mut r = Run::new();
        r.receive("S", "wh-de-berlin", 5);
        r.cmd("o1", "S", "reserve", 2, None, "DE");
        r.cmd("o2", "S", "reserve", 2, None, "DE");
        r.cmd("o2", "S", "commit", 2, None, "DE");
        r.d.advance_time(T0 + 3_600_000);
        assert_eq!(r.stock("S", "wh-de-berlin").reserved, 4, "within the grace period nothing expires");
        r.d.advance_time(T0 + 26 * 3_600_000);
        assert_eq!(r.stock("S", "wh-de-berlin").reserved, 2, "only the uncommitted hold expired");
        let expired: Vec<String> = r.replies().into_iter().filter(|x| x.action == "expire").map(|x| x.order_id).collect();
        assert_eq!(expired, vec!["o1"]);
    }

    #[test]
    fn a_low_stock_alert_fires_once_per_crossing() {
        let mut r = Run::new();
        r.receive("S", "wh-de-berlin", 7);
        r.cmd("o1", "S", "reserve", 3, None, "DE"); // 4 left: below 5
        r.cmd("o2", "S", "reserve", 1, None, "DE"); // 3 left: still below, no new alert
        r.receive("S", "wh-de-berlin", 10); // 13: back above
        r.cmd("o3", "S", "reserve", 9, None, "DE"); // 4: below again
        let alerts: Vec<i32> = r
            .d
            .outputs::<Event>(Topic::Reservations.name())
            .into_iter()
            .filter_map(|e| if let Event::LowStockAlert(a) = e { Some(a.available) } else { None })
            .collect();
        assert_eq!(alerts, vec![4, 4]);
    }

    #[test]
    fn a_move_request_moves_the_hold_when_the_warehouse_can_take_it_and_keeps_it_otherwise() {
        let mut r = Run::new();
        r.receive("S", "wh-de-berlin", 2);
        r.receive("S", "wh-nl-venlo", 5);
        r.cmd("o1", "S", "reserve", 2, None, "DE");
        r.cmd("o1", "S", "reserve", 2, Some("wh-nl-venlo"), "DE");
        assert_eq!(r.stock("S", "wh-de-berlin").reserved, 0);
        assert_eq!(r.stock("S", "wh-nl-venlo").reserved, 2);
        r.cmd("o1", "S", "reserve", 2, Some("wh-us-reno"), "DE");
        assert_eq!(r.stock("S", "wh-nl-venlo").reserved, 2, "a failed move keeps the hold where it was");
        assert!(!r.replies().last().unwrap().ok);
    }
}

//! recommendations — what to show next to a product, in a category, to a session.
//!
//! Learns, with time decay:
//! - **similar** (co-view): products viewed in the same session — each session counts a
//!   pair once per half hour, carts count double, very active sessions stop counting (bots,
//!   crawlers);
//! - **bought_together** (co-purchase): products in the same order;
//! - **trending** per category: product views with exponential decay (half-life 1 h);
//! - **for_session**: a session's recent interest (recently viewed, most recent first).
//!
//! Pairs are scored by cosine similarity, co(a,b) / √(n(a)·n(b)), not raw counts, so a
//! best-seller that appears with everything does not crowd out real affinity. Three keys in
//! one processor (all its topics share the partition count): sessions and orders produce
//! signals, re-keyed to `recommendations.signals` by product (seen, pair, popularity) and by
//! category (trend); the product stage keeps its own counts and its top partners, and tells
//! those partners its count when it changes by 10 % (so each side can compute the cosine);
//! the category stage keeps the trending list. State is bounded: sessions expire after 30
//! minutes without activity, a product keeps its 50 strongest partners, a category its 50
//! hottest products.
//!
//! Emits `RecommendationsUpdated` to `recommendations.updates` when a list's order changes.
//! Out-of-stock products are filtered when the lists are served (the API knows stock from
//! the read model); they still learn here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use storeflow_avro::{Event, RecoSignal, RecommendationsUpdated, ScoredProduct, Timestamp, Topic};

use crate::{Ctx, Flow, Input, ProcessError, Processor, Store};

/// `[processors.recommendations]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecommendationsConfig {
    /// Half-life of view signals (co-view, item views), hours.
    pub view_half_life_hours: f64,
    /// Half-life of purchase signals, hours.
    pub purchase_half_life_hours: f64,
    /// Half-life of trending scores, hours.
    pub trending_half_life_hours: f64,
    /// Items in each list.
    pub top_k: usize,
    /// Partners remembered per product.
    pub max_partners: usize,
    /// A session with more views than this stops contributing pairs.
    pub session_view_cap: u32,
}

impl Default for RecommendationsConfig {
    fn default() -> Self {
        RecommendationsConfig {
            view_half_life_hours: 24.0 * 7.0,
            purchase_half_life_hours: 24.0 * 30.0,
            trending_half_life_hours: 1.0,
            top_k: 10,
            max_partners: 50,
            session_view_cap: 200,
        }
    }
}

/// A count that halves every half-life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Decayed {
    pub value: f64,
    pub at: i64,
}

impl Decayed {
    /// The value at time `t`.
    pub fn at(&self, t: i64, half_life_ms: f64) -> f64 {
        if t <= self.at {
            return self.value;
        }
        self.value * 0.5f64.powf((t - self.at) as f64 / half_life_ms)
    }

    /// Adds `w` at time `t`.
    pub fn add(&mut self, w: f64, t: i64, half_life_ms: f64) {
        let t = t.max(self.at);
        self.value = self.at(t, half_life_ms) + w;
        self.at = t;
    }
}

/// A session's recent views.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// (product, category, time), most recent last, distinct products.
    pub recent: Vec<(String, String, i64)>,
    pub views: u32,
}

/// What the product stage keeps per product and source (view or purchase).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Affinity {
    pub n: Decayed,
    /// Count last told to the partners.
    pub told: f64,
    pub co: BTreeMap<String, Decayed>,
    /// Partners' counts, as they told them.
    pub partner_n: BTreeMap<String, f64>,
    /// The list last emitted.
    pub emitted: Vec<String>,
    /// One more per list emitted.
    #[serde(default)]
    pub version: i64,
}

/// A category's trending products.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Trending {
    pub scores: BTreeMap<String, Decayed>,
    pub emitted: Vec<String>,
    /// One more per list emitted.
    #[serde(default)]
    pub version: i64,
}

/// A session's recent interest, by session id.
pub const SESSIONS: Store<Session> = Store::new("sessions");
/// Co-view and co-purchase scores per `<product>|<source>`.
pub const AFFINITY: Store<Affinity> = Store::new("affinity");
/// Trending scores per category.
pub const TRENDING: Store<Trending> = Store::new("trending");

/// The recommendations processor.
pub struct Recommendations(RecommendationsConfig);

const HOUR_MS: f64 = 3_600_000.0;

fn fresh_id(t: i64, parts: &[&str]) -> String {
    crate::ids::derived_event_id(0x2325_cbf2_9ce4_8422, 23, t, parts)
}

impl Recommendations {
    fn half_life(&self, source: &str) -> f64 {
        HOUR_MS * if source == "purchase" { self.0.purchase_half_life_hours } else { self.0.view_half_life_hours }
    }

    fn signal(ctx: &mut Ctx<'_, Event>, kind: &str, product: &str, other: Option<&str>, category: Option<&str>, source: &str, weight: f64, count: f64, t: i64) {
        ctx.emit(Event::RecoSignal(RecoSignal {
            event_id: fresh_id(t, &[kind, product, other.unwrap_or(""), category.unwrap_or(""), source, &weight.to_string(), &count.to_string()]),
            occurred_at: Timestamp(t),
            kind: kind.into(),
            product_id: product.into(),
            other_product_id: other.map(str::to_string),
            category: category.map(str::to_string),
            source: source.into(),
            weight,
            count,
        }));
    }

    fn on_view(&self, session: &str, product: &str, category: &str, weight: f64, t: i64, ctx: &mut Ctx<'_, Event>) -> Result<(), ProcessError> {
        let mut s = ctx.get(SESSIONS, session)?.unwrap_or_default();
        s.views += 1;
        s.recent.retain(|(_, _, at)| t - at < 30 * 60_000);
        if s.views <= self.0.session_view_cap {
            let already = s.recent.iter().any(|(p, _, _)| p == product);
            if !already {
                for (other, _, _) in &s.recent {
                    Self::signal(ctx, "pair", product, Some(other), None, "view", weight, 0.0, t);
                    Self::signal(ctx, "pair", other, Some(product), None, "view", weight, 0.0, t);
                }
                Self::signal(ctx, "seen", product, None, None, "view", weight, 0.0, t);
            }
            Self::signal(ctx, "trend", product, None, Some(category), "view", weight, 0.0, t);
        }
        s.recent.retain(|(p, _, _)| p != product);
        s.recent.push((product.to_string(), category.to_string(), t));
        if s.recent.len() > 20 {
            s.recent.remove(0);
        }
        let items: Vec<ScoredProduct> = s
            .recent
            .iter()
            .rev()
            .take(self.0.top_k)
            .enumerate()
            .map(|(i, (p, _, _))| ScoredProduct { product_id: p.clone(), score: 1.0 / (1.0 + i as f64) })
            .collect();
        ctx.emit(Event::RecommendationsUpdated(RecommendationsUpdated {
            event_id: fresh_id(t, &["session", session, &s.views.to_string()]),
            occurred_at: Timestamp(t),
            product_id: String::new(),
            kind: "for_session".into(),
            items,
            session_id: Some(session.to_string()),
            category: None,
            version: i64::from(s.views),
        }));
        ctx.put_until(SESSIONS, session, &s, t + 30 * 60_000)
    }

    /// Recomputes `product`'s list for `source` and emits it when its order changed.
    fn publish(&self, product: &str, source: &str, a: &mut Affinity, t: i64, ctx: &mut Ctx<'_, Event>) {
        let hl = self.half_life(source);
        let n = a.n.at(t, hl).max(1e-9);
        let mut scored: Vec<(String, f64)> = a
            .co
            .iter()
            .map(|(other, co)| {
                let co = co.at(t, hl);
                // Until a partner told its count, assume it is as small as it can be (= the
                // pair's own count): that never ranks an unknown partner above a known one.
                let m = a.partner_n.get(other).copied().unwrap_or(co).max(co).max(1e-9);
                (other.clone(), co / (n * m).sqrt())
            })
            .collect();
        scored.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
        scored.truncate(self.0.top_k);
        let order: Vec<String> = scored.iter().map(|s| s.0.clone()).collect();
        if order == a.emitted {
            return;
        }
        a.emitted = order;
        a.version += 1;
        ctx.emit(Event::RecommendationsUpdated(RecommendationsUpdated {
            event_id: fresh_id(t, &["list", product, source, &a.emitted.join(",")]),
            occurred_at: Timestamp(t),
            product_id: product.to_string(),
            kind: if source == "purchase" { "bought_together" } else { "similar" }.into(),
            items: scored.into_iter().map(|(product_id, score)| ScoredProduct { product_id, score }).collect(),
            session_id: None,
            category: None,
            version: a.version,
        }));
    }

    fn on_signal(&self, s: &RecoSignal, ctx: &mut Ctx<'_, Event>) -> Result<(), ProcessError> {
        let t = s.occurred_at.millis();
        if s.kind == "trend" {
            let Some(cat) = &s.category else { return Ok(()) };
            let hl = HOUR_MS * self.0.trending_half_life_hours;
            let mut tr = ctx.get(TRENDING, cat)?.unwrap_or_default();
            tr.scores.entry(s.product_id.clone()).or_default().add(s.weight, t, hl);
            if tr.scores.len() > self.0.max_partners {
                let weakest = tr.scores.iter().min_by(|a, b| a.1.at(t, hl).total_cmp(&b.1.at(t, hl))).map(|(k, _)| k.clone());
                if let Some(k) = weakest {
                    tr.scores.remove(&k);
                }
            }
            let mut top: Vec<(String, f64)> = tr.scores.iter().map(|(p, d)| (p.clone(), d.at(t, hl))).collect();
            top.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
            top.truncate(self.0.top_k);
            let order: Vec<String> = top.iter().map(|x| x.0.clone()).collect();
            if order != tr.emitted {
                tr.emitted = order;
                tr.version += 1;
                ctx.emit(Event::RecommendationsUpdated(RecommendationsUpdated {
                    event_id: fresh_id(t, &["trend", cat, &tr.emitted.join(",")]),
                    occurred_at: Timestamp(t),
                    product_id: String::new(),
                    kind: "trending".into(),
                    items: top.into_iter().map(|(product_id, score)| ScoredProduct { product_id, score }).collect(),
                    session_id: None,
                    category: Some(cat.clone()),
                    version: tr.version,
                }));
            }
            return ctx.put(TRENDING, cat, &tr);
        }
        let key = format!("{}|{}", s.product_id, s.source);
        let hl = self.half_life(&s.source);
        let mut a = ctx.get(AFFINITY, &key)?.unwrap_or_default();
        match s.kind.as_str() {
            "seen" => {
                a.n.add(s.weight, t, hl);
                let now = a.n.at(t, hl);
                if a.told == 0.0 || (now - a.told).abs() / a.told >= 0.1 {
                    a.told = now;
                    let mut partners: Vec<(&String, f64)> = a.co.iter().map(|(k, d)| (k, d.at(t, hl))).collect();
                    partners.sort_by(|x, y| y.1.total_cmp(&x.1));
                    for (p, _) in partners.into_iter().take(self.0.top_k * 2) {
                        Self::signal(ctx, "popularity", p, Some(&s.product_id), None, &s.source, 0.0, now, t);
                    }
                }
            }
            "pair" => {
                let Some(other) = &s.other_product_id else { return Ok(()) };
                a.co.entry(other.clone()).or_default().add(s.weight, t, hl);
                if a.co.len() > self.0.max_partners {
                    let weakest = a.co.iter().min_by(|x, y| x.1.at(t, hl).total_cmp(&y.1.at(t, hl))).map(|(k, _)| k.clone());
                    if let Some(k) = weakest {
                        a.co.remove(&k);
                        a.partner_n.remove(&k);
                    }
                }
            }
            "popularity" => {
                let Some(other) = &s.other_product_id else { return Ok(()) };
                if a.co.contains_key(other) {
                    a.partner_n.insert(other.clone(), s.count);
                }
            }
            _ => return Ok(()),
        }
        self.publish(&s.product_id, &s.source, &mut a, t, ctx);
        ctx.put(AFFINITY, &key, &a)
    }
}

impl Processor for Recommendations {
    const NAME: &'static str = "recommendations";
    type Config = RecommendationsConfig;
    type In = Event;
    type Out = Event;

    fn new(config: RecommendationsConfig) -> Self {
        Recommendations(config)
    }

    fn flow(&self) -> Flow {
        let (signals, updates) = (Topic::RecoSignals.name(), Topic::Recommendations.name());
        // Sessions and orders → signals re-keyed by product and category → lists. A product's
        // stage tells its partners its popularity through the same topic: a feedback edge.
        Flow::new()
            .group(&[Topic::Sessions.name(), Topic::Orders.name()])
            .emits(&[signals, updates])
            .group(&[signals])
            .emits(&[updates])
            .feeds_back(&[signals])
            .build()
    }

    fn stores(&self) -> &'static [&'static str] {
        &[SESSIONS.name, AFFINITY.name, TRENDING.name]
    }

    fn process(&mut self, input: &Input<Event>, ctx: &mut Ctx<'_, Event>) -> Result<(), ProcessError> {
        match &input.value {
            Event::ProductViewed(v) => self.on_view(&v.session_id, &v.product_id, &v.category, 1.0, v.occurred_at.millis(), ctx),
            Event::CartItemAdded(c) => {
                // A cart add counts as a strong view; the category is not on the event.
                let category = ctx
                    .get(SESSIONS, &c.session_id)?
                    .and_then(|s| s.recent.iter().find(|(p, _, _)| *p == c.product_id).map(|x| x.1.clone()))
                    .unwrap_or_else(|| "uncategorised".into());
                self.on_view(&c.session_id, &c.product_id, &category, 2.0, c.occurred_at.millis(), ctx)
            }
            Event::OrderPlaced(o) => {
                o.check_amounts().map_err(ProcessError::permanent)?;
                let t = o.occurred_at.millis();
                let mut products: Vec<&str> = o.items.iter().map(|i| i.product_id.as_str()).collect();
                products.sort();
                products.dedup();
                for a in &products {
                    Self::signal(ctx, "seen", a, None, None, "purchase", 1.0, 0.0, t);
                    for b in &products {
                        if a != b {
                            Self::signal(ctx, "pair", a, Some(b), None, "purchase", 1.0, 0.0, t);
                        }
                    }
                }
                Ok(())
            }
            Event::RecoSignal(s) => {
                input.value.check().map_err(ProcessError::permanent)?;
                self.on_signal(s, ctx)
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestDriver;
    use storeflow_avro::*;

    const T0: i64 = 1_764_000_000_000;

    fn view(n: u128, session: &str, product: &str, t: i64) -> Event {
        Event::ProductViewed(ProductViewed { event_id: uuid::Uuid::from_u128(n).to_string(), occurred_at: Timestamp(T0 + t), session_id: session.into(), customer_id: None, product_id: product.into(), vendor_id: "v".into(), category: "audio".into() })
    }

    fn order(n: u128, products: &[&str], t: i64) -> Event {
        let a = Address { name: "A".into(), line1: "1".into(), line2: None, city: "X".into(), postal_code: "1".into(), region: None, country: "DE".into() };
        Event::OrderPlaced(OrderPlaced {
            event_id: uuid::Uuid::from_u128(n).to_string(),
            occurred_at: Timestamp(T0 + t),
            order_id: format!("o{n}"),
            customer_id: "c".into(),
            session_id: None,
            customer_since: None,
            items: products.iter().map(|p| OrderItem { sku: format!("s-{p}"), product_id: p.to_string(), vendor_id: "v".into(), quantity: 1, unit_price_minor: 100 }).collect(),
            currency: "EUR".into(),
            shipping_address: a.clone(),
            billing_address: a,
            shipping_minor: 0,
            tax_minor: 0,
            discount_minor: 0,
            payment_method_token: "pm".into(),
            client_ip: "203.0.113.1".into(),
        })
    }

    fn latest(d: &TestDriver, kind: &str, key: &str) -> Vec<String> {
        d.outputs::<Event>(Topic::Recommendations.name())
            .into_iter()
            .filter_map(|e| match e {
                Event::RecommendationsUpdated(r) if r.kind == kind && (r.product_id == key || r.category.as_deref() == Some(key) || r.session_id.as_deref() == Some(key)) => Some(r),
                _ => None,
            })
            .last()
            .map(|r| r.items.into_iter().map(|i| i.product_id).collect())
            .unwrap_or_default()
    }

    #[test]
    fn cosine_ranks_real_affinity_above_a_best_seller_that_goes_with_everything() {
        let mut d = TestDriver::new(Recommendations::new(RecommendationsConfig::default()));
        let mut n = 0;
        let mut next = || {
            n += 1;
            n
        };
        // The best seller goes with everything; the pair (a, b) only with each other.
        for i in 0..40 {
            let k = next();
            d.pipe(order(k, &["best", &format!("x{i}")], i64::from(i) * 1000));
        }
        for i in 0..8 {
            let k = next();
            d.pipe(order(k, &["a", "b"], 50_000 + i64::from(i) * 1000));
            let k = next();
            d.pipe(order(k, &["a", "best"], 60_000 + i64::from(i) * 1000));
        }
        let list = latest(&d, "bought_together", "a");
        assert_eq!(list.first().map(String::as_str), Some("b"), "{list:?}");
    }

    #[test]
    fn a_signal_whose_weight_is_not_a_number_goes_to_the_dlq_and_leaves_the_scores_alone() {
        let mut d = TestDriver::new(Recommendations::new(RecommendationsConfig::default()));
        for (i, p) in ["p1", "p2"].iter().enumerate() {
            d.pipe(view(i as u128 + 1, "s1", p, i as i64 * 1000));
        }
        let before = latest(&d, "similar", "p1");
        let signal = |weight: f64| {
            Event::RecoSignal(RecoSignal {
                event_id: uuid::Uuid::from_u128(99).to_string(),
                occurred_at: Timestamp(T0 + 5_000),
                kind: "pair".into(),
                product_id: "p1".into(),
                other_product_id: Some("p2".into()),
                category: None,
                source: "view".into(),
                weight,
                count: 0.0,
            })
        };
        d.pipe(signal(f64::NAN));
        d.pipe(signal(f64::INFINITY));
        let dead = d.dlq(Topic::RecoSignals.name());
        assert_eq!(dead.len(), 2, "{dead:?}");
        assert!(dead.iter().all(|x| x.reason.contains("weight")), "{dead:?}");
        assert_eq!(latest(&d, "similar", "p1"), before);
    }

    #[test]
    fn co_views_in_one_session_make_products_similar_and_sessions_keep_recent_interest() {
        let mut d = TestDriver::new(Recommendations::new(RecommendationsConfig::default()));
        for (i, p) in ["p1", "p2", "p3"].iter().enumerate() {
            d.pipe(view(i as u128 + 1, "s1", p, i as i64 * 1000));
        }
        let mut similar = latest(&d, "similar", "p1");
        similar.sort();
        assert_eq!(similar, vec!["p2", "p3"]);
        assert_eq!(latest(&d, "for_session", "s1"), vec!["p3", "p2", "p1"]);
    }

    #[test]
    fn a_very_active_session_stops_counting_pairs() {
        let cfg = RecommendationsConfig { session_view_cap: 3, ..Default::default() };
        let mut d = TestDriver::new(Recommendations::new(cfg));
        for i in 0..6u128 {
            d.pipe(view(i + 1, "bot", &format!("p{i}"), i as i64 * 100));
        }
        assert!(latest(&d, "similar", "p5").is_empty(), "views past the cap made pairs");
        assert!(!latest(&d, "similar", "p0").is_empty());
    }

    #[test]
    fn trending_decays_so_recent_views_beat_old_ones() {
        let mut d = TestDriver::new(Recommendations::new(RecommendationsConfig::default()));
        for i in 0..10u128 {
            d.pipe(view(i + 1, &format!("s{i}"), "old", i as i64 * 1000));
        }
        for i in 0..4u128 {
            d.pipe(view(100 + i, &format!("t{i}"), "new", 6 * 3_600_000 + i as i64 * 1000));
        }
        assert_eq!(latest(&d, "trending", "audio").first().map(String::as_str), Some("new"), "10 views 6 half-lives ago weigh less than 4 now");
        let mut v = Decayed::default();
        v.add(8.0, 0, 1000.0);
        assert!((v.at(2000, 1000.0) - 2.0).abs() < 1e-9);
    }

    #[test]
    fn partner_lists_stay_bounded() {
        let cfg = RecommendationsConfig { max_partners: 5, ..Default::default() };
        let mut d = TestDriver::new(Recommendations::new(cfg));
        for i in 0..30u128 {
            d.pipe(order(i + 1, &["hub", &format!("x{i}")], i as i64 * 1000));
        }
        let a: Affinity = d.store("recommendations", AFFINITY, "hub|purchase").unwrap();
        assert!(a.co.len() <= 5, "{} partners kept", a.co.len());
    }
}

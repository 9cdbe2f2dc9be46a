// The analysts' page, over a chosen range: the marketplace dashboard of
// GET /v1/analytics/dashboard — total sales, orders, average order value, units, conversion,
// new customers, return rate, sales over time, the funnel, top categories and products, vendor
// performance, customers by lifetime value, cohorts, the money per currency — then inventory
// health (GET /v1/analytics/inventory) and fraud (GET /v1/analytics/fraud). Needs common.js.
"use strict";

let funnel = null;

let series = null;
let seriesWindow = [0, 1];

async function load() {
  const range = encodeURIComponent($("range").value);
  let d, inv, fraud;
  try {
    [d, inv, fraud] = await Promise.all(["dashboard", "inventory", "fraud"].map((b) => json("/v1/analytics/" + b + "?range=" + range)));
  } catch (e) {
    if (refused(e, "read the marketplace dashboard")) return;
    status("Analytics are not available right now: " + e.message, true);
    return;
  }
  $("login").hidden = true;
  $("board").hidden = false;
  const base = d.base_currency;
  $("window").textContent = new Date(d.from).toLocaleString() + " – " + new Date(d.to).toLocaleString();
  $("gmv").textContent = money(d.gmv_eur_minor, base);
  $("gmv").dataset.minor = String(d.gmv_eur_minor);
  $("orders").textContent = count(d.orders);
  $("aov").textContent = money(d.aov_eur_minor, base);
  $("units").textContent = count(d.units);
  $("conversion").textContent = percent(d.conversion_rate);
  $("new-customers").textContent = count(d.new_customers);
  $("return-rate").textContent = percent(d.return_rate);
  rows($("categories"), d.top_categories.map((c) => [c.category, count(c.units), money(c.gmv_eur_minor, base)]), "No sales in this range.");
  rows($("products"), d.top_products.map((p) => [p.title || p.product_id, count(p.units), money(p.gmv_eur_minor, base)]), "No sales in this range.");
  rows($("money"), d.money.map((m) => [m.currency, money(m.captured_minor, m.currency), money(m.refunded_minor, m.currency),
    money(m.transferred_minor, m.currency), money(m.commission_minor, m.currency), money(m.disputed_minor, m.currency)]), "No money captured in this range.");
  drawFunnel(d.funnel);
  const daily = range === "7d" || range === "30d";
  const when = (ms) => daily ? new Date(ms).toLocaleDateString(undefined, { timeZone: "UTC" }) : new Date(ms).toLocaleString();
  $("series-unit").textContent = daily ? "(per UTC day)" : "(per hour)";
  rows($("series-rows"), d.series.map((b) => [when(b.bucket), count(b.orders), count(b.units), money(b.gmv_eur_minor, base)]), "No sales in this range.");
  drawSeries(d.series, base, [d.from / 1000, d.to / 1000]);
  rows($("vendors"), d.vendors.map((v) => [v.name || v.vendor_id, count(v.orders), count(v.units), money(v.gmv_eur_minor, base),
    money(v.orders ? Math.round(v.gmv_eur_minor / v.orders) : 0, base)]), "No sales in this range.");
  rows($("customers"), d.top_customers.map((c) => [c.customer_id, count(c.orders), money(c.gmv_eur_minor, base), new Date(c.last_order).toLocaleDateString()]), "No orders yet.");
  const month = (ms) => new Date(ms).toLocaleDateString(undefined, { year: "numeric", month: "short", timeZone: "UTC" });
  rows($("cohorts"), d.cohorts.map((c) => [month(c.cohort_month), month(c.order_month), count(c.customers), count(c.orders), money(c.gmv_eur_minor, base)]), "No orders yet.");
  rows($("low-stock"), inv.low_stock.map((l) => [l.sku, l.warehouse_id, count(l.on_hand), count(l.reserved), count(l.available)]), "Every sku has more than 5 available.");
  rows($("warehouses"), inv.warehouses.map((w) => [w.warehouse_id, count(w.on_hand), count(w.reserved), count(w.available), count(w.skus_out_of_stock)]), "No stock recorded yet.");
  rows($("reservations"), inv.reservations.map((r) => [new Date(r.bucket).toLocaleString(), count(r.reserved), count(r.rejected)]), "No reservations in this range.");
  rows($("fraud-decisions"), fraud.decisions.map((f) => [f.decision, count(f.orders), f.avg_score.toFixed(1)]), "No orders scored in this range.");
  rows($("held-orders"), fraud.held.map((h) => [new Date(h.at).toLocaleString(), h.order_id, h.customer_id, String(h.score), h.decision, h.reasons.split(",").join(", ")]), "No order held or sent to review in this range.");
  rows($("fraud-signals"), fraud.signals.map((f) => [f.reason, count(f.orders)]), "No fraud signal fired in this range.");
  status("Updated " + new Date().toLocaleTimeString() + " (every 30 s).");
}

function drawSeries(buckets, base, span) {
  // The x axis spans the chosen range, however few buckets had sales.
  seriesWindow = span;
  const data = [buckets.map((b) => b.bucket / 1000), buckets.map((b) => b.gmv_eur_minor / 10 ** digits(base)), buckets.map((b) => b.orders)];
  const el = $("series");
  if (!series) {
    series = new uPlot({
      width: Math.max(280, el.clientWidth),
      height: 220,
      scales: { x: { time: true, range: () => seriesWindow }, orders: {} },
      series: [{}, { label: "sales (" + base + ")", stroke: "#2563eb", fill: "rgba(37,99,235,0.15)", width: 2 },
        { label: "orders", scale: "orders", stroke: "#16a34a", width: 2 }],
      axes: [{}, { size: 60 }, { scale: "orders", side: 1, grid: { show: false } }],
    }, data, el);
    window.addEventListener("resize", () => series.setSize({ width: Math.max(280, el.clientWidth), height: 220 }));
  } else {
    series.setData(data);
  }
}

function drawFunnel(f) {
  const steps = ["sessions", "viewed", "carted", "checkout", "ordered"];
  const data = [steps.map((_, i) => i), steps.map((s) => f[s])];
  const el = $("funnel");
  if (!funnel) {
    funnel = new uPlot({
      width: Math.max(280, el.clientWidth),
      height: 220,
      scales: { x: { time: false, range: [-0.5, steps.length - 0.5] } },
      series: [{}, { label: "sessions", stroke: "#2563eb", fill: "rgba(37,99,235,0.35)", paths: uPlot.paths.bars({ size: [0.6] }), points: { show: false } }],
      axes: [{ values: (_, ticks) => ticks.map((t) => steps[t] || "") , splits: () => steps.map((_, i) => i) }, { size: 60 }],
    }, data, el);
    window.addEventListener("resize", () => funnel.setSize({ width: Math.max(280, el.clientWidth), height: 220 }));
  } else {
    funnel.setData(data);
  }
}

$("range").addEventListener("change", load);
let timer = null;
signIn(() => {
  load();
  if (!timer) timer = setInterval(load, 30000);
});

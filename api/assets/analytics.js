// The analysts' page: the marketplace dashboard of GET /v1/analytics/dashboard over a chosen
// range — total sales, orders, average order value, units, conversion, new customers, return
// rate, the funnel, top categories and products, the money per currency. Needs common.js.
"use strict";

let funnel = null;

async function load() {
  const range = $("range").value;
  let d;
  try {
    d = await json("/v1/analytics/dashboard?range=" + encodeURIComponent(range));
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
  status("Updated " + new Date().toLocaleTimeString() + " (every 30 s).");
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

// The vendors' live page: today's sales from GET /v1/vendors/{id}/sales, updated from the
// SSE stream /v1/vendors/{id}/sales/stream without a reload; top products, stock and
// transfers from GET /v1/analytics/vendors/{id}; recent orders and the skus running out from
// GET /v1/vendors/{id}/orders and /low-stock (the read model), read again as sales come in.
// Needs common.js.
"use strict";

const vendorId = decodeURIComponent(location.pathname.replace(/^\/vendors\//, "").replace(/\/$/, ""));
const vendorPath = "/v1/vendors/" + encodeURIComponent(vendorId);

/** Buckets of today by `start|currency`. */
let buckets = new Map();
let day = startOfToday();
let chart = null;
let stream = null;
let timers = false;

function startOfToday() {
  const d = new Date();
  d.setHours(0, 0, 0, 0);
  return d.getTime();
}

function deny(e) {
  if (!refused(e, "read the sales of vendor " + vendorId)) return false;
  stop();
  return true;
}

function upsert(b) {
  if (b.start < day) return;
  buckets.set(b.start + "|" + b.currency, b);
}

function render() {
  const all = [...buckets.values()];
  const base = all.length ? all[0].base_currency : null;
  const sum = (f) => all.reduce((n, b) => n + (b[f] || 0), 0);
  const gmv = sum("gmv_base_minor");
  $("gmv").textContent = money(gmv, base);
  $("gmv").dataset.minor = String(gmv);
  $("orders").textContent = count(sum("orders"));
  $("units").textContent = count(sum("units"));
  $("commission").textContent = money(sum("commission_base_minor"), base);
  $("payout").textContent = money(sum("net_payout_base_minor"), base);
  $("refunds").textContent = money(sum("refunds_base_minor"), base);
  const per = new Map();
  for (const b of all) per.set(b.currency, (per.get(b.currency) || 0) + b.gmv_minor);
  $("currencies").textContent = per.size > 1 || (per.size === 1 && !per.has(base))
    ? "In the currencies paid: " + [...per].map(([c, m]) => money(m, c)).join(" · ") + (base ? " (totals above in " + base + ")" : "")
    : "";
  drawChart(base);
}

function drawChart(base) {
  const now = Date.now();
  const xs = [];
  const ys = [];
  const perMinute = new Map();
  for (const b of buckets.values()) perMinute.set(b.start, (perMinute.get(b.start) || 0) + b.gmv_base_minor);
  const scale = 10 ** digits(base || "EUR");
  for (let t = day; t <= now; t += 60000) {
    xs.push(t / 1000);
    ys.push((perMinute.get(t) || 0) / scale);
  }
  const el = $("chart");
  const width = Math.max(280, el.clientWidth);
  if (!chart) {
    chart = new uPlot({
      width,
      height: 240,
      scales: { x: { time: true } },
      series: [{}, { label: "GMV" + (base ? " (" + base + ")" : ""), stroke: "#2563eb", fill: "rgba(37,99,235,0.15)", width: 2, points: { show: false } }],
      axes: [{}, { size: 60 }],
    }, [xs, ys], el);
    window.addEventListener("resize", () => chart.setSize({ width: Math.max(280, el.clientWidth), height: 240 }));
  } else {
    chart.setData([xs, ys]);
  }
}

async function loadSales() {
  day = startOfToday();
  const r = await json(vendorPath + "/sales?granularity=minute&from=" + day);
  buckets = new Map();
  for (const b of r.buckets) upsert(b);
  render();
}

async function loadAnalytics() {
  try {
    const p = await json("/v1/analytics/vendors/" + encodeURIComponent(vendorId) + "?range=24h");
    const top = p.top_products || [];
    rows($("top"), top.map((t) => [t.title || t.product_id, count(t.units), money(t.gmv_eur_minor, "EUR")]));
    $("top-status").textContent = top.length ? "" : "No sales in the last 24 hours yet.";
    $("stock").textContent = count(p.available) + " units available of " + count(p.on_hand) + " on hand";
    const moved = (p.money || []).filter((m) => m.transferred_minor !== 0);
    $("transferred").textContent = moved.length ? moved.map((m) => money(m.transferred_minor, m.currency)).join(" · ") : money(0, p.money && p.money[0] ? p.money[0].currency : "EUR");
  } catch (e) {
    if (deny(e)) return;
    $("top-status").textContent = "Analytics are not available right now (" + e.message + ").";
  }
}

/** Recent orders and the skus running out; at most one read in flight. */
let ordersPending = false;
async function loadOrders() {
  if (ordersPending) return;
  ordersPending = true;
  try {
    const [orders, low] = await Promise.all([json(vendorPath + "/orders?limit=10"), json(vendorPath + "/low-stock")]);
    rows($("recent"), orders.map((o) => [o.order_id, o.placed_at ? new Date(o.placed_at).toLocaleTimeString() : "–", o.status,
      o.payment_status, o.fulfillment_status, count(o.units), money(o.lines_minor, o.currency)]), "No orders yet.");
    rows($("low-stock"), low.map((l) => [l.title || l.product_id, l.sku, l.warehouse_id, count(l.available), count(l.reserved)]), "Nothing is running out.");
  } catch (e) {
    if (deny(e)) return;
    rows($("recent"), [], "Orders are not available right now (" + e.message + ").");
  } finally {
    ordersPending = false;
  }
}

/** Reads the SSE stream over fetch (EventSource cannot send the key as a header). */
async function follow() {
  let wait = 1000;
  while (stream) {
    const ctl = new AbortController();
    stream.abort = () => ctl.abort();
    try {
      const r = await api(vendorPath + "/sales/stream", { headers: { Authorization: "Bearer " + key(), Accept: "text/event-stream" }, signal: ctl.signal });
      status("Live: updates as orders come in.");
      wait = 1000;
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          message(buf.slice(0, i));
          buf = buf.slice(i + 2);
        }
      }
    } catch (e) {
      if (!stream || deny(e) || e.name === "AbortError") return;
    }
    if (!stream) return;
    status("Reconnecting…");
    await new Promise((r) => setTimeout(r, wait));
    wait = Math.min(wait * 2, 30000);
    await loadSales().catch(() => {});
  }
}

function message(block) {
  let event = "message";
  let data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data += line.slice(5).trim();
  }
  if (event === "sales" && data) {
    if (startOfToday() !== day) {
      loadSales().catch(() => {});
      return;
    }
    upsert(JSON.parse(data));
    render();
    loadOrders();
  } else if (event === "lagged") {
    loadSales().catch(() => {});
  }
}

function stop() {
  if (stream && stream.abort) stream.abort();
  stream = null;
}

async function start() {
  $("login").hidden = true;
  // Shown before the first render, so that the chart takes the page's width.
  $("board").hidden = false;
  try {
    await loadSales();
  } catch (e) {
    $("board").hidden = true;
    if (!deny(e)) status("Could not load the sales: " + e.message, true);
    return;
  }
  status("Connecting to live updates…");
  stream = {};
  follow();
  loadAnalytics();
  loadOrders();
  if (!timers) {
    timers = true;
    setInterval(() => stream && loadAnalytics(), 30000);
    setInterval(() => stream && loadOrders(), 30000);
    setInterval(() => stream && render(), 60000);
  }
}

$("vendor").textContent = vendorId ? "· " + vendorId : "";
signIn(start);

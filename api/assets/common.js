// What the pages share: error capture, the key (session storage or a `#key=` fragment),
// calls to the JSON API with it, and money and number formatting. Everything shown goes
// through textContent (never HTML).
"use strict";

// What went wrong on the page, for the browser tests (and a curious user's console).
window.__errors = [];
window.addEventListener("error", (e) => window.__errors.push("error: " + (e.message || e.type)));
window.addEventListener("unhandledrejection", (e) => window.__errors.push("rejection: " + String(e.reason)));
document.addEventListener("securitypolicyviolation", (e) => window.__errors.push("csp: " + e.violatedDirective + " " + e.blockedURI));

const $ = (id) => document.getElementById(id);
const KEY = "storeflow.key";

function status(text, error) {
  const s = $("status");
  s.textContent = text;
  s.classList.toggle("error", !!error);
}

/** The key: a `#key=` fragment (taken out of the address at once) or the tab's storage. */
function key() {
  const m = location.hash.match(/(?:^#|&)key=([^&]+)/);
  if (m) {
    sessionStorage.setItem(KEY, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem(KEY);
}

function digits(currency) {
  try {
    return new Intl.NumberFormat(undefined, { style: "currency", currency }).resolvedOptions().maximumFractionDigits;
  } catch (_) {
    return 2;
  }
}

function money(minor, currency) {
  if (!currency) return new Intl.NumberFormat().format(minor);
  try {
    return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(minor / 10 ** digits(currency));
  } catch (_) {
    return (minor / 100).toFixed(2) + " " + currency;
  }
}

const count = (n) => new Intl.NumberFormat().format(n);
const percent = (x) => new Intl.NumberFormat(undefined, { style: "percent", maximumFractionDigits: 1 }).format(x);

class HttpError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

async function api(path, options) {
  const r = await fetch(path, Object.assign({ headers: { Authorization: "Bearer " + key() }, cache: "no-store" }, options || {}));
  if (!r.ok) {
    let message = r.status + " " + r.statusText;
    try {
      const b = await r.json();
      if (b && b.message) message = b.message;
    } catch (_) { /* not JSON */ }
    throw new HttpError(r.status, message);
  }
  return r;
}

const json = async (path) => (await api(path)).json();

/** A 401 or 403: forget the key, show the form and why. Returns whether it was one. */
function refused(e, what) {
  if (e instanceof HttpError && (e.code === 401 || e.code === 403)) {
    sessionStorage.removeItem(KEY);
    $("board").hidden = true;
    $("login").hidden = false;
    status("This key cannot " + what + ": " + e.message, true);
    return true;
  }
  return false;
}

/** A table body of rows of texts; `empty` is said in one row when there is none. */
function rows(tbody, list, empty) {
  tbody.replaceChildren();
  if (!list.length && empty) {
    const tr = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = 99;
    td.className = "muted";
    td.textContent = empty;
    tr.appendChild(td);
    tbody.appendChild(tr);
    return;
  }
  for (const cells of list) {
    const tr = document.createElement("tr");
    for (const text of cells) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.appendChild(td);
    }
    tbody.appendChild(tr);
  }
}

/** The sign-in form and the "another key" button, around `start`. */
function signIn(start) {
  $("login").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(KEY, $("key").value.trim());
    $("key").value = "";
    start();
  });
  $("logout").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    location.reload();
  });
  if (!key()) {
    $("login").hidden = false;
    status("Enter your key to continue.");
    return;
  }
  start();
}

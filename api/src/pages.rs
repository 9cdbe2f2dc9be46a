//! The pages people open in a browser, served from the binary: the vendors' live page
//! `GET /vendors/{id}`, the analysts' dashboard `GET /analytics`, and their static assets
//! under `/assets/` (uPlot vendored from npm, `api/assets/vendor/README.md`; no CDN).
//!
//! Each page is a shell with no data in it: its script reads the vendor id from the address
//! and the user's key from the tab's session storage (or a `#key=` fragment, which never
//! reaches a server), and calls the JSON API with it — so the page follows the API's rules
//! to the letter: another vendor's key gets 403 from the API and the page shows nothing. A
//! strict Content-Security-Policy allows scripts, styles and connections to this origin
//! only, and no inline script or style.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::state::ApiState;

/// The page's policy: this origin only, no inline code, no framing, no plugins.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; \
                       font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const VENDOR_HTML: &str = include_str!("../assets/vendor.html");
const ANALYTICS_HTML: &str = include_str!("../assets/analytics.html");

/// `(path under /assets/, content type, bytes)` of every asset served.
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("common.js", "text/javascript; charset=utf-8", include_bytes!("../assets/common.js")),
    ("vendor.js", "text/javascript; charset=utf-8", include_bytes!("../assets/vendor.js")),
    ("analytics.js", "text/javascript; charset=utf-8", include_bytes!("../assets/analytics.js")),
    ("vendor.css", "text/css; charset=utf-8", include_bytes!("../assets/vendor.css")),
    ("uplot-1.6.32/uPlot.iife.min.js", "text/javascript; charset=utf-8", include_bytes!("../assets/vendor/uplot-1.6.32/uPlot.iife.min.js")),
    ("uplot-1.6.32/uPlot.min.css", "text/css; charset=utf-8", include_bytes!("../assets/vendor/uplot-1.6.32/uPlot.min.css")),
];

/// The routes: `/vendors/{id}`, `/analytics` and `/assets/{*path}`.
pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/vendors/{id}", get(vendor_page))
        .route("/analytics", get(|| async { hardened(ANALYTICS_HTML.into_response(), "text/html; charset=utf-8", "no-store") }))
        .route("/assets/{*path}", get(asset))
}

/// Headers every page and asset carries.
fn hardened(mut r: Response, content_type: &str, cache: &'static str) -> Response {
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("application/octet-stream")));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(HeaderName::from_static("cross-origin-opener-policy"), HeaderValue::from_static("same-origin"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    r
}

/// A vendor's live page (the shell; its data comes from the API with the vendor's key). A
/// malformed id is refused with the API's own vendor-id rule, before anything is served.
async fn vendor_page(Path(id): Path<String>) -> Response {
    if let Err(e) = crate::vendors::vendor_id(&id) {
        return e.into_response();
    }
    hardened(VENDOR_HTML.into_response(), "text/html; charset=utf-8", "no-store")
}

async fn asset(Path(path): Path<String>) -> Response {
    match ASSETS.iter().find(|(p, _, _)| *p == path) {
        Some((_, ty, bytes)) => hardened(bytes.to_vec().into_response(), ty, "public, max-age=300"),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pages_load_only_assets_that_are_served_and_have_no_inline_script_or_style() {
        for page in [VENDOR_HTML, ANALYTICS_HTML] {
            inline_free(page);
        }
        for (name, _, bytes) in ASSETS.iter().filter(|(n, _, _)| !n.starts_with("uplot")) {
            assert!(!String::from_utf8_lossy(bytes).contains("innerHTML"), "{name} writes HTML");
        }
    }

    fn inline_free(page: &str) {
        for src in page.split(['"', '\'']).filter(|s| s.starts_with("/assets/")) {
            let path = &src["/assets/".len()..];
            assert!(ASSETS.iter().any(|(p, _, _)| *p == path), "{src} is not served");
        }
        let lower = page.to_lowercase();
        assert!(!lower.contains("<script>") && !lower.contains("<style") && !lower.contains(" style="), "inline code in the page");
        // No event-handler attribute (` onclick=`, …).
        let handler = lower.match_indices(" on").any(|(i, _)| {
            let rest = &lower[i + 3..];
            let name = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_lowercase()).len();
            name > 0 && rest[name..].starts_with('=')
        });
        assert!(!handler, "an inline event handler in the page");
    }

    #[test]
    fn a_vendor_id_with_markup_or_slashes_is_refused() {
        use crate::vendors::vendor_id;
        assert!(vendor_id("V-A").is_ok() && vendor_id("vendor_12-x").is_ok());
        for bad in ["", "<script>", "a/b", "a b", "a.b", "é", &"x".repeat(65)] {
            assert!(vendor_id(bad).is_err(), "{bad:?}");
        }
    }
}

//! API keys, roles and the per-key rate limit.
//!
//! A key is `sf_` + 32 random bytes in hex. Only its SHA-256 is stored, in
//! `<data-dir>/api-keys.json` (a plain digest is right for long random keys: guessing is
//! hopeless either way, and a password hash like argon2 would cost milliseconds on every
//! request). On a data dir without keys, [`KeyStore::open`] creates one admin key and
//! writes it to `<data-dir>/admin.key` with mode 0600.
//!
//! Roles: `app` (storefront and mobile apps: shoppers' behaviour events, orders placed with
//! the same key, inventory, search, recommendations), `service` (trusted backends: what an
//! app may, plus payments, fulfillment, stock, exchange rates, every vendor's catalog,
//! erasure and every order), `vendor:<id>` (that vendor's catalog events, sales, analytics
//! and products only), `analyst` (analytics), `admin` (everything, key management). Which
//! role may publish which event type, and who sees an order's personal data, is decided in
//! [`crate::roles`]. Customers are not keys: they come with a token of the marketplace's
//! identity provider ([`crate::customers`]) and are a [`Caller::Customer`] without a role.

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use parking_lot::RwLock;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// What a key may do.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Storefront and mobile apps: untrusted clients in shoppers' hands.
    App,
    /// Trusted backends (payment provider hooks, warehouse and carrier systems, the catalog
    /// importer, the exchange-rate feed): everything an app may and the facts they own.
    Service,
    /// One vendor.
    Vendor(String),
    /// Analysts.
    Analyst,
    /// Operators.
    Admin,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::App => f.write_str("app"),
            Role::Service => f.write_str("service"),
            Role::Vendor(v) => write!(f, "vendor:{v}"),
            Role::Analyst => f.write_str("analyst"),
            Role::Admin => f.write_str("admin"),
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "app" => Ok(Role::App),
            "service" => Ok(Role::Service),
            "analyst" => Ok(Role::Analyst),
            "admin" => Ok(Role::Admin),
            other => match other.strip_prefix("vendor:") {
                Some(v) if !v.trim().is_empty() => Ok(Role::Vendor(v.to_string())),
                _ => Err(format!("unknown role `{other}`: expected app, service, analyst, admin or vendor:<vendor_id>")),
            },
        }
    }
}

/// Who is calling: the role of a valid key, a signed-in customer, or nobody (public
/// endpoints only).
#[derive(Clone, Debug)]
pub enum Caller {
    /// No `Authorization` header.
    Anonymous,
    /// A valid key.
    Key {
        /// The key's id (not the secret), for logs and rate limits.
        id: String,
        /// Its role.
        role: Role,
    },
    /// A shopper with a valid token of the marketplace's identity provider
    /// ([`crate::customers`]). Not a key and no role: it reaches only what
    /// [`crate::roles`] grants customers (its own orders, placing orders for itself, its
    /// own behaviour events) and public reads; everything else is 403.
    Customer {
        /// The token's `sub`.
        id: String,
    },
}

impl Caller {
    /// The caller's role: 401 without a key, 403 for a customer (customers have no role;
    /// the endpoints that serve them say so before asking for one).
    pub fn role(&self) -> Result<&Role, ApiError> {
        match self {
            Caller::Anonymous => Err(ApiError::Unauthorized(
                "this endpoint needs an API key: send `Authorization: Bearer <key>`".into(),
            )),
            Caller::Key { role, .. } => Ok(role),
            Caller::Customer { .. } => Err(ApiError::Forbidden(
                "a customer may not use this endpoint: customers reach their own orders, POST /v1/orders and shoppers' events".into(),
            )),
        }
    }

    /// The key's id, `None` for anonymous callers and customers.
    pub fn key_id(&self) -> Option<&str> {
        match self {
            Caller::Key { id, .. } => Some(id),
            Caller::Anonymous | Caller::Customer { .. } => None,
        }
    }

    /// The customer id of a customer, `None` for everyone else.
    pub fn customer_id(&self) -> Option<&str> {
        match self {
            Caller::Customer { id } => Some(id),
            Caller::Anonymous | Caller::Key { .. } => None,
        }
    }

    /// Passes when the caller is admin or one of `roles` (service wherever app is allowed);
    /// 401 without a key, 403 otherwise (and always for a customer).
    pub fn require(&self, what: &str, allowed: &[&Role]) -> Result<&Role, ApiError> {
        if let Caller::Customer { id } = self {
            return Err(ApiError::Forbidden(format!("customer {id} may not {what}")));
        }
        let role = self.role()?;
        let as_app = *role == Role::Service && allowed.contains(&&Role::App);
        if *role == Role::Admin || as_app || allowed.contains(&role) {
            Ok(role)
        } else {
            Err(ApiError::Forbidden(format!("the role {role} may not {what}")))
        }
    }

    /// Passes for admin, analyst (when `analyst_ok`), apps and services (when `app_ok`) and
    /// the vendor itself; 403 for every other vendor and for customers.
    pub fn require_vendor(&self, vendor_id: &str, what: &str, app_ok: bool, analyst_ok: bool) -> Result<(), ApiError> {
        if let Caller::Customer { id } = self {
            return Err(ApiError::Forbidden(format!("customer {id} may not {what} of vendor {vendor_id}")));
        }
        match self.role()? {
            Role::Admin => Ok(()),
            Role::Vendor(v) if v == vendor_id => Ok(()),
            Role::App | Role::Service if app_ok => Ok(()),
            Role::Analyst if analyst_ok => Ok(()),
            role => Err(ApiError::Forbidden(format!("the role {role} may not {what} of vendor {vendor_id}"))),
        }
    }
}

/// A key as `GET /v1/admin/keys` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeyInfo {
    /// `k_` + 12 hex digits of the secret's SHA-256.
    pub id: String,
    /// app, service, analyst, admin or vendor:<vendor_id>.
    pub role: String,
    /// Milliseconds since the epoch.
    pub created_at: i64,
}

/// Why a key was not revoked.
#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    #[error("no such key")]
    Unknown,
    #[error("the last admin key cannot be revoked: create another admin key first")]
    LastAdmin,
    #[error("storing the keys: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct StoredKey {
    id: String,
    role: String,
    sha256: String,
    created_at: i64,
}

/// The API keys, hashed, persisted in `<data-dir>/api-keys.json` (or in memory only).
pub struct KeyStore {
    path: Option<PathBuf>,
    keys: RwLock<HashMap<[u8; 32], (String, Role)>>,
    stored: RwLock<Vec<StoredKey>>,
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyStore").field("path", &self.path).field("keys", &self.keys.read().len()).finish()
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("sf_{}", hex::encode(bytes))
}

/// The file the admin key is written to on a fresh data dir.
pub fn admin_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.key")
}

impl KeyStore {
    /// Keys kept in memory only (tests, `storeflow api --ephemeral`).
    pub fn in_memory() -> KeyStore {
        KeyStore { path: None, keys: RwLock::new(HashMap::new()), stored: RwLock::new(Vec::new()) }
    }

    /// Opens the keys of `data_dir`. When there are none, creates an admin key, writes it
    /// to `<data-dir>/admin.key` (mode 0600) and returns it so the caller can print it
    /// once. An existing `api-keys.json` or `admin.key` readable by others (copied, restored
    /// from a backup, made by an older version) is set back to 0600, with a warning.
    pub fn open(data_dir: &Path) -> std::io::Result<(KeyStore, Option<String>)> {
        std::fs::create_dir_all(data_dir)?;
        let path = data_dir.join("api-keys.json");
        for file in [&path, &admin_key_path(data_dir)] {
            if let Some(old) = restrict_to_owner(file)? {
                tracing::warn!(file = %file.display(), old_mode = %format!("{old:o}"), "a key file was readable by others; set it to 0600");
            }
        }
        let stored: Vec<StoredKey> = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut keys = HashMap::new();
        for k in &stored {
            let role = k.role.parse::<Role>().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            let mut d = [0u8; 32];
            hex::decode_to_slice(&k.sha256, &mut d)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("key {}: {e}", k.id)))?;
            keys.insert(d, (k.id.clone(), role));
        }
        let store = KeyStore { path: Some(path), keys: RwLock::new(keys), stored: RwLock::new(stored) };
        if !store.stored.read().is_empty() {
            return Ok((store, None));
        }
        let admin = store.create(Role::Admin)?;
        write_secret_file(&admin_key_path(data_dir), &admin)?;
        Ok((store, Some(admin)))
    }

    /// Creates a key with `role` and returns the secret (shown once, never stored).
    pub fn create(&self, role: Role) -> std::io::Result<String> {
        let secret = new_secret();
        let d = digest(&secret);
        let id = format!("k_{}", &hex::encode(d)[..12]);
        let entry = StoredKey {
            id: id.clone(),
            role: role.to_string(),
            sha256: hex::encode(d),
            created_at: storeflow_avro::Timestamp::now().millis(),
        };
        {
            let mut stored = self.stored.write();
            stored.push(entry);
            if let Some(path) = &self.path {
                let tmp = path.with_extension("json.tmp");
                write_secret_file(&tmp, &serde_json::to_string_pretty(&*stored).map_err(std::io::Error::other)?)?;
                std::fs::rename(&tmp, path)?;
            }
        }
        self.keys.write().insert(d, (id, role));
        Ok(secret)
    }

    /// Every key's id, role and creation time (never a secret or its digest), oldest first.
    pub fn list(&self) -> Vec<KeyInfo> {
        self.stored
            .read()
            .iter()
            .map(|k| KeyInfo { id: k.id.clone(), role: k.role.clone(), created_at: k.created_at })
            .collect()
    }

    /// Revokes key `id`: it answers 401 from the next request on. The last admin key
    /// cannot be revoked (nobody could manage keys any more).
    pub fn revoke(&self, id: &str) -> Result<(), RevokeError> {
        let mut stored = self.stored.write();
        let Some(at) = stored.iter().position(|k| k.id == id) else {
            return Err(RevokeError::Unknown);
        };
        let admins = stored.iter().filter(|k| k.role == "admin").count();
        if stored[at].role == "admin" && admins == 1 {
            return Err(RevokeError::LastAdmin);
        }
        let mut kept = stored.clone();
        let gone = kept.remove(at);
        if let Some(path) = &self.path {
            let tmp = path.with_extension("json.tmp");
            write_secret_file(&tmp, &serde_json::to_string_pretty(&kept).map_err(std::io::Error::other)?)?;
            std::fs::rename(&tmp, path)?;
        }
        *stored = kept;
        self.keys.write().retain(|_, (kid, _)| *kid != gone.id);
        Ok(())
    }

    /// The id and role of `secret`, if it is a key.
    pub fn lookup(&self, secret: &str) -> Option<(String, Role)> {
        self.keys.read().get(&digest(secret)).cloned()
    }

    /// True while key `id` exists (not revoked).
    pub fn is_live(&self, id: &str) -> bool {
        self.keys.read().values().any(|(kid, _)| kid == id)
    }
}

/// Writes `content` to `path` readable by its owner only: created 0600, and an existing file
/// (a `.tmp` left by a crash) set to 0600 before anything is written into it.
fn write_secret_file(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(content.as_bytes())?;
    f.sync_all()
}

/// Sets `path` to 0600 when group or others have any access to it, and returns the mode it
/// had then; `None` when it is missing or already private (and always off Unix).
fn restrict_to_owner(path: &Path) -> std::io::Result<Option<u32>> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = match std::fs::metadata(path) {
            Ok(m) => m.permissions().mode() & 0o7777,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if mode & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            return Ok(Some(mode));
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(None)
}

/// Requests per second per key (or per client address for anonymous calls), GCRA via
/// `governor`.
pub struct RateLimits {
    limiter: DefaultKeyedRateLimiter<String>,
}

impl fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RateLimits")
    }
}

impl RateLimits {
    /// `per_second` sustained, bursts of `burst`.
    pub fn new(per_second: u32, burst: u32) -> Arc<RateLimits> {
        let rate = NonZeroU32::new(per_second.max(1)).expect("at least 1");
        let burst = NonZeroU32::new(burst.max(1)).expect("at least 1");
        Arc::new(RateLimits { limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)) })
    }

    /// Ok, or 429 with the seconds to wait.
    pub fn check(&self, who: String) -> Result<(), ApiError> {
        match self.limiter.check_key(&who) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Err(ApiError::RateLimited { retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0) })
            }
        }
    }

    /// Forgets keys that are back to a full bucket (call now and then).
    pub fn prune(&self) {
        self.limiter.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revoked_key_stops_working_and_stays_revoked_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (store, admin) = KeyStore::open(dir.path()).unwrap();
        let admin = admin.unwrap();
        let app = store.create(Role::App).unwrap();
        let (app_id, _) = store.lookup(&app).unwrap();
        assert_eq!(store.list().len(), 2);
        store.revoke(&app_id).unwrap();
        assert!(store.lookup(&app).is_none());
        assert!(matches!(store.revoke(&app_id), Err(RevokeError::Unknown)));
        let (admin_id, _) = store.lookup(&admin).unwrap();
        assert!(matches!(store.revoke(&admin_id), Err(RevokeError::LastAdmin)));
        drop(store);
        let (store, fresh) = KeyStore::open(dir.path()).unwrap();
        assert!(fresh.is_none(), "keys exist: no new admin key");
        assert!(store.lookup(&app).is_none() && store.lookup(&admin).is_some());
        assert_eq!(store.list().iter().map(|k| k.role.as_str()).collect::<Vec<_>>(), ["admin"]);
    }

    #[test]
    fn roles_parse_and_print_the_same() {
        for r in ["app", "service", "analyst", "admin", "vendor:v-1"] {
            assert_eq!(r.parse::<Role>().unwrap().to_string(), r);
        }
        assert!("vendor:".parse::<Role>().is_err());
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn a_service_key_is_stored_as_service_and_is_one_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = KeyStore::open(dir.path()).unwrap();
        let service = store.create(Role::Service).unwrap();
        assert!(std::fs::read_to_string(dir.path().join("api-keys.json")).unwrap().contains("\"role\": \"service\""));
        drop(store);
        let (again, _) = KeyStore::open(dir.path()).unwrap();
        assert_eq!(again.lookup(&service).unwrap().1, Role::Service);
    }

    #[test]
    fn a_service_passes_wherever_an_app_does_and_nowhere_else() {
        let service = Caller::Key { id: "k_1".into(), role: Role::Service };
        assert!(service.require("place orders", &[&Role::App]).is_ok());
        assert!(service.require("read the dashboard", &[&Role::Analyst]).is_err());
        assert!(service.require("manage keys", &[]).is_err());
        assert!(service.require_vendor("V-A", "read the products", true, false).is_ok());
        assert!(service.require_vendor("V-A", "read the sales", false, true).is_err());
    }

    #[test]
    fn a_fresh_data_dir_gets_one_admin_key_readable_only_by_its_owner() {
        let dir = tempfile::tempdir().unwrap();
        let (store, admin) = KeyStore::open(dir.path()).unwrap();
        let admin = admin.expect("a fresh dir creates an admin key");
        assert_eq!(store.lookup(&admin).unwrap().1, Role::Admin);
        let on_disk = std::fs::read_to_string(admin_key_path(dir.path())).unwrap();
        assert_eq!(on_disk, admin);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(admin_key_path(dir.path())).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let keys_file = std::fs::read_to_string(dir.path().join("api-keys.json")).unwrap();
        assert!(!keys_file.contains(&admin), "the secret itself is never stored");
        let app = store.create(Role::App).unwrap();
        drop(store);
        let (again, none) = KeyStore::open(dir.path()).unwrap();
        assert!(none.is_none(), "a second open creates no new admin key");
        assert_eq!(again.lookup(&app).unwrap().1, Role::App);
        assert!(again.lookup("sf_nope").is_none());
    }

    #[cfg(unix)]
    #[test]
    fn key_files_made_readable_by_others_are_0600_again_after_open() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (store, admin) = KeyStore::open(dir.path()).unwrap();
        drop(store);
        let keys = dir.path().join("api-keys.json");
        let admin_file = admin_key_path(dir.path());
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(&admin_file, std::fs::Permissions::from_mode(0o640)).unwrap();
        let (again, none) = KeyStore::open(dir.path()).unwrap();
        assert!(none.is_none());
        assert_eq!(again.lookup(&admin.unwrap()).unwrap().1, Role::Admin, "the keys are still read");
        for f in [&keys, &admin_file] {
            assert_eq!(std::fs::metadata(f).unwrap().permissions().mode() & 0o777, 0o600, "{}", f.display());
        }
        // What the warning names: the old mode, once; a private file is left alone.
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o604)).unwrap();
        assert_eq!(restrict_to_owner(&keys).unwrap(), Some(0o604));
        assert_eq!(restrict_to_owner(&keys).unwrap(), None);
        assert_eq!(restrict_to_owner(&dir.path().join("missing")).unwrap(), None);
    }

    #[cfg(unix)]
    #[test]
    fn a_new_key_written_over_a_stale_world_readable_temp_file_is_still_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = KeyStore::open(dir.path()).unwrap();
        let tmp = dir.path().join("api-keys.json.tmp");
        std::fs::write(&tmp, "left by a crash").unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
        store.create(Role::App).unwrap();
        let mode = std::fs::metadata(dir.path().join("api-keys.json")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn the_rate_limit_answers_with_a_wait_after_the_burst() {
        let limits = RateLimits::new(1, 2);
        assert!(limits.check("k".into()).is_ok());
        assert!(limits.check("k".into()).is_ok());
        match limits.check("k".into()) {
            Err(ApiError::RateLimited { retry_after_secs }) => assert!(retry_after_secs >= 1),
            other => panic!("expected 429, got {other:?}"),
        }
        assert!(limits.check("other".into()).is_ok(), "limits are per key");
    }
}

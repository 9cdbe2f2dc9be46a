//! Personal data sealed per customer before it reaches the log, so that erasing a customer
//! is deleting one key (crypto-shredding, GDPR Art. 17).
//!
//! The contract's personal fields ([`PERSONAL_FIELDS`]: names, emails, street addresses,
//! payment tokens, client IPs) travel as **sealed strings**:
//!
//! ```text
//! pii1.<key id>.<pseudonym>.<nonce ‖ ciphertext ‖ tag>     (base64url, no padding)
//! ```
//!
//! - The ciphertext is AES-256-GCM-SIV under the customer's own data key, with the key id
//!   and pseudonym as associated data. The nonce derives from the key and the value, so the
//!   same value sealed twice is the same string: a replay, a retry or a second run over the
//!   same input publishes the same bytes (GCM-SIV stays safe with such a nonce; it reveals
//!   only that two sealed values of one customer are equal).
//! - The key id is a hash of the customer id: whoever holds the keys can open the value
//!   without knowing whose it is; nobody else learns more than the record's own
//!   `customer_id` already says.
//! - The pseudonym is a keyed hash (HMAC-SHA-256 under one secret of the installation, never
//!   erased) of the value alone, the same for every customer: the fraud checks compare IPs,
//!   addresses and payment methods across customers by pseudonym and never open anything, so
//!   their verdicts do not depend on whether, or when, a key was erased. It is pseudonymous,
//!   not anonymous data: with the installation secret, a guessed value can be confirmed.
//!
//! A producer calls [`Vault::prepare`] on every event before encoding it (the API's writer and
//! the simulator both do, through `storeflow_ingest::publish`): it seals the personal fields
//! of `CustomerRegistered` and `OrderPlaced`, and for `CustomerErased` shreds the customer's
//! key. From then on every copy of that customer's personal data — on the log, in a dead
//! letter, in processor state, in a store's freed pages or a backup — is unreadable. Readers
//! that must show personal data (the API, to admins, services and the customer) open it with
//! [`Vault::open_json`]; an erased customer's fields read as `null`.
//!
//! The key store is a directory (`<data-dir>/keys`): one 0600 file per customer, named by key
//! id, overwritten with zeros, synced and unlinked on erasure; and `pseudonym.key`. Several
//! processes on one machine share it (a key is created with `O_EXCL`; every seal and open
//! checks the file against the cached one, so an erasure in one process is seen by the
//! others at once).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_lc_rs::aead::{AES_256_GCM_SIV, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::{digest, hmac, rand};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use parking_lot::RwLock;

use crate::{Address, Event};

/// The prefix of a sealed value.
pub const SEALED_PREFIX: &str = "pii1.";

/// The personal fields of the contract, as `Event.field` (`*` = both addresses' parts).
/// Countries stay in the clear: analytics and the fraud rules read them, and a country alone
/// names nobody. Free text (review bodies, search queries) is not sealed; see
/// docs/SECURITY.md.
pub const PERSONAL_FIELDS: &[&str] = &[
    "CustomerRegistered.email",
    "CustomerRegistered.name",
    "OrderPlaced.*_address.name",
    "OrderPlaced.*_address.line1",
    "OrderPlaced.*_address.line2",
    "OrderPlaced.*_address.city",
    "OrderPlaced.*_address.postal_code",
    "OrderPlaced.*_address.region",
    "OrderPlaced.payment_method_token",
    "OrderPlaced.client_ip",
];

const KEY_LEN: usize = 32;
const KID_LEN: usize = 16;
const PSEUDONYM_LEN: usize = 9;

/// Whether `value` is a sealed value.
pub fn is_sealed(value: &str) -> bool {
    value.starts_with(SEALED_PREFIX)
}

/// What the fraud checks compare: the pseudonym of a sealed value, or the value itself when
/// a producer published it in the clear (a record written straight to Kafka).
pub fn pseudonym(value: &str) -> &str {
    parse(value).map_or(value, |s| s.pseudonym)
}

/// A sealed value's parts (still base64url).
struct Sealed<'a> {
    kid: &'a str,
    pseudonym: &'a str,
    body: &'a str,
}

fn parse(value: &str) -> Option<Sealed<'_>> {
    let rest = value.strip_prefix(SEALED_PREFIX)?;
    let mut parts = rest.splitn(3, '.');
    let (kid, pseudonym, body) = (parts.next()?, parts.next()?, parts.next()?);
    (!kid.is_empty() && !pseudonym.is_empty() && !body.is_empty()).then_some(Sealed { kid, pseudonym, body })
}

/// A customer's data key, ready to use.
struct DataKey {
    aead: LessSafeKey,
    nonce: hmac::Key,
}

impl DataKey {
    fn new(bytes: &[u8; KEY_LEN]) -> DataKey {
        // Two subkeys, so that the cipher key never doubles as a MAC key.
        let root = hmac::Key::new(hmac::HMAC_SHA256, bytes);
        let sub = |label: &[u8]| hmac::sign(&root, label);
        let aead = sub(b"storeflow pii aead");
        let nonce = sub(b"storeflow pii nonce");
        DataKey {
            aead: LessSafeKey::new(UnboundKey::new(&AES_256_GCM_SIV, aead.as_ref()).expect("32-byte key")),
            nonce: hmac::Key::new(hmac::HMAC_SHA256, nonce.as_ref()),
        }
    }
}

/// A key in memory and the identity of the file it was read from (inode and modification
/// time, to the nanosecond — a file system may give a new file a freed inode at once): a
/// key erased and made anew by another process is another file, so it is read again.
struct Cached {
    key: Arc<DataKey>,
    file: Option<(u64, u128)>,
}

/// The identity of the file at `path`, or `None` when there is none.
fn identity(path: &Path) -> io::Result<Option<(u64, u128)>> {
    match fs::metadata(path) {
        Ok(m) => {
            #[cfg(unix)]
            let ino = std::os::unix::fs::MetadataExt::ino(&m);
            #[cfg(not(unix))]
            let ino = 0;
            let mtime = m.modified()?.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
            Ok(Some((ino, mtime)))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// What opening a value gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened<'a> {
    /// Not sealed: the value as it was published.
    Plain(&'a str),
    /// The sealed value's plaintext.
    Clear(String),
    /// The customer's key is gone (erased), or the value does not open with it.
    Erased,
}

/// The key store: customers' data keys and the installation's pseudonym secret.
pub struct Vault {
    /// `None`: kept in memory only (tests, tools that publish nothing lasting).
    dir: Option<PathBuf>,
    keys: RwLock<HashMap<String, Cached>>,
    pseudonyms: hmac::Key,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault").field("dir", &self.dir).finish_non_exhaustive()
    }
}

fn random_key() -> [u8; KEY_LEN] {
    let mut k = [0u8; KEY_LEN];
    rand::fill(&mut k).expect("the system's random source");
    k
}

/// Writes `bytes` to a new file at `path` (0600), or reads the file another writer made first.
fn create_or_read(path: &Path, bytes: &[u8; KEY_LEN]) -> io::Result<[u8; KEY_LEN]> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    match opts.open(path) {
        Ok(mut f) => {
            f.write_all(bytes)?;
            f.sync_all()?;
            sync_dir(path)?;
            Ok(*bytes)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read_key(path)?.ok_or(e),
        Err(e) => Err(e),
    }
}

fn read_key(path: &Path) -> io::Result<Option<[u8; KEY_LEN]>> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut k = [0u8; KEY_LEN];
    match f.read_exact(&mut k) {
        // A file cut short (a crash between create and write) or zeroed (an erasure under
        // way) holds no key.
        Ok(()) if k != [0u8; KEY_LEN] => Ok(Some(k)),
        Ok(()) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

fn sync_dir(path: &Path) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The key id of `customer_id`: base64url of the first 16 bytes of its SHA-256.
pub fn key_id(customer_id: &str) -> String {
    let d = digest::digest(&digest::SHA256, format!("storeflow customer\0{customer_id}").as_bytes());
    B64.encode(&d.as_ref()[..KID_LEN])
}

impl Vault {
    /// The key store in `dir` (created 0700 if missing, with its pseudonym secret).
    pub fn load(dir: &Path) -> io::Result<Vault> {
        fs::create_dir_all(dir)?;
        #[cfg(unix)]
        fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        let secret = create_or_read(&dir.join("pseudonym.key"), &random_key())?;
        Ok(Vault { dir: Some(dir.to_path_buf()), keys: RwLock::default(), pseudonyms: hmac::Key::new(hmac::HMAC_SHA256, &secret) })
    }

    /// A key store kept in memory only: what it seals is unreadable once it is dropped.
    pub fn in_memory() -> Vault {
        Vault { dir: None, keys: RwLock::default(), pseudonyms: hmac::Key::new(hmac::HMAC_SHA256, &random_key()) }
    }

    fn path(&self, kid: &str) -> Option<PathBuf> {
        // Key ids are base64url: no separator can reach the path.
        self.dir.as_ref().map(|d| d.join(format!("{kid}.key")))
    }

    /// Whether the store holds a key for `customer_id`.
    pub fn has_key(&self, customer_id: &str) -> io::Result<bool> {
        Ok(self.find(&key_id(customer_id))?.is_some())
    }

    /// The key of `kid` as it is now — made first when `create` — checked against the file
    /// on every call (one `stat`), so that an erasure by another process counts at once, for
    /// opening and for sealing alike.
    fn current(&self, kid: &str, create: bool) -> io::Result<Option<Arc<DataKey>>> {
        let Some(path) = self.path(kid) else {
            if let Some(c) = self.keys.read().get(kid) {
                return Ok(Some(c.key.clone()));
            }
            if !create {
                return Ok(None);
            }
            let mut keys = self.keys.write();
            let c = keys.entry(kid.to_string()).or_insert_with(|| Cached { key: Arc::new(DataKey::new(&random_key())), file: None });
            return Ok(Some(c.key.clone()));
        };
        let mut file = identity(&path)?;
        if let Some(c) = self.keys.read().get(kid)
            && file.is_some()
            && c.file == file
        {
            return Ok(Some(c.key.clone()));
        }
        let bytes = match file {
            Some(_) => read_key(&path)?,
            None if create => {
                let bytes = create_or_read(&path, &random_key())?;
                file = identity(&path)?;
                Some(bytes)
            }
            None => None,
        };
        let mut keys = self.keys.write();
        match bytes {
            Some(b) => {
                let key = Arc::new(DataKey::new(&b));
                keys.insert(kid.to_string(), Cached { key: key.clone(), file });
                Ok(Some(key))
            }
            None => {
                keys.remove(kid);
                Ok(None)
            }
        }
    }

    /// The key of `kid`, if it exists.
    fn find(&self, kid: &str) -> io::Result<Option<Arc<DataKey>>> {
        self.current(kid, false)
    }

    /// The key of `kid`, made on first use.
    fn key_for(&self, kid: &str) -> io::Result<Arc<DataKey>> {
        self.current(kid, true)?.ok_or_else(|| io::Error::other(format!("the key file of {kid} is being erased")))
    }

    /// Seals `value` under `customer_id`'s key (made on first use). An empty value is
    /// returned as it is; an already sealed one is refused (`InvalidInput`).
    pub fn seal(&self, customer_id: &str, value: &str) -> io::Result<String> {
        Sealer::of(self, customer_id)?.seal(value)
    }

    /// Opens `value`: its plaintext, `Plain` when it was never sealed, `Erased` when its key
    /// is gone or it does not open (tampered).
    pub fn open<'a>(&self, value: &'a str) -> io::Result<Opened<'a>> {
        let Some(s) = parse(value) else { return Ok(Opened::Plain(value)) };
        let Some(key) = self.find(s.kid)? else { return Ok(Opened::Erased) };
        let Ok(mut body) = B64.decode(s.body) else { return Ok(Opened::Erased) };
        if body.len() < NONCE_LEN {
            return Ok(Opened::Erased);
        }
        let ct = body.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&body).expect("12 bytes");
        let mut ct = ct;
        let aad = format!("{}.{}", s.kid, s.pseudonym);
        Ok(match key.aead.open_in_place(nonce, Aad::from(aad.as_bytes()), &mut ct) {
            Ok(clear) => String::from_utf8(clear.to_vec()).map_or(Opened::Erased, Opened::Clear),
            Err(_) => Opened::Erased,
        })
    }

    /// Opens every sealed string inside `v` in place (at any depth); an erased one becomes
    /// `null`.
    pub fn open_json(&self, v: &mut serde_json::Value) -> io::Result<()> {
        use serde_json::Value;
        match v {
            Value::String(s) if is_sealed(s) => {
                *v = match self.open(s)? {
                    Opened::Clear(c) => Value::String(c),
                    Opened::Plain(_) => return Ok(()),
                    Opened::Erased => Value::Null,
                }
            }
            Value::Array(a) => a.iter_mut().try_for_each(|x| self.open_json(x))?,
            Value::Object(m) => m.values_mut().try_for_each(|x| self.open_json(x))?,
            _ => {}
        }
        Ok(())
    }

    /// Shreds `customer_id`'s key: the file is overwritten with zeros, synced and removed.
    /// Returns whether there was one.
    pub fn erase(&self, customer_id: &str) -> io::Result<bool> {
        let kid = key_id(customer_id);
        let cached = self.keys.write().remove(&kid).is_some();
        let Some(path) = self.path(&kid) else { return Ok(cached) };
        match OpenOptions::new().write(true).open(&path) {
            Ok(mut f) => {
                f.write_all(&[0u8; KEY_LEN])?;
                f.sync_all()?;
                drop(f);
                fs::remove_file(&path)?;
                sync_dir(&path)?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(cached),
            Err(e) => Err(e),
        }
    }

    /// What a producer does with an event before it reaches the log: its personal fields
    /// sealed under its customer's key (a copy, when there are any), or, for
    /// `CustomerErased`, the customer's key shredded first.
    ///
    /// An event whose personal field already holds a sealed value is refused
    /// (`InvalidInput`, naming the field): whoever sends one would choose the pseudonym the
    /// fraud checks compare. Producers refuse it before this ([`sealed_field`]), with the
    /// field named to their caller.
    pub fn prepare<'e>(&self, event: &'e Event) -> io::Result<Cow<'e, Event>> {
        if let Event::CustomerErased(e) = event {
            self.erase(&e.customer_id)?;
            return Ok(Cow::Borrowed(event));
        }
        let Some(customer_id) = personal_owner(event) else { return Ok(Cow::Borrowed(event)) };
        let s = Sealer::of(self, customer_id)?;
        let mut copy = event.clone();
        for_each_personal(&mut copy, &mut |field, value| {
            if is_sealed(value) {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, already_sealed(field)));
            }
            *value = s.seal(value)?;
            Ok(())
        })?;
        Ok(Cow::Owned(copy))
    }
}

/// `event` as a store that keeps events may hold it: every personal field still sealed as
/// it travels, and any that is not (a producer that did not seal) emptied — a store never
/// holds personal data in the clear, and erasing the customer's key erases what it holds.
pub fn sealed_only(event: &Event) -> Cow<'_, Event> {
    let mut clear = false;
    let mut probe = event.clone();
    let _ = for_each_personal(&mut probe, &mut |_, value| {
        clear |= !is_sealed(value);
        Ok(())
    });
    if !clear {
        return Cow::Borrowed(event);
    }
    let _ = for_each_personal(&mut probe, &mut |_, value| {
        if !is_sealed(value) {
            value.clear();
        }
        Ok(())
    });
    Cow::Owned(probe)
}

/// The first personal field of `event` that already holds a sealed value (`pii1.…`), named
/// as in the event's JSON (`shipping_address.line1`). Producers refuse such an event with a
/// 400 naming the field: a value is sealed here, by storeflow, never by whoever sends it.
pub fn sealed_field(event: &Event) -> Option<&'static str> {
    personal_owner(event)?;
    let mut copy = event.clone();
    let mut found = None;
    let _ = for_each_personal(&mut copy, &mut |field, value| {
        if is_sealed(value) {
            found = Some(field);
            return Err(io::Error::other("stop"));
        }
        Ok(())
    });
    found
}

/// Why an event with a sealed `field` is refused.
pub fn already_sealed(field: &str) -> String {
    format!("`{field}` holds a value in storeflow's sealed form (`{SEALED_PREFIX}…`); send the value itself: personal data is sealed when storeflow logs it")
}

/// The customer whose key seals `event`'s personal fields, when it has any.
fn personal_owner(event: &Event) -> Option<&str> {
    match event {
        Event::CustomerRegistered(c) => Some(&c.customer_id),
        Event::OrderPlaced(o) => Some(&o.customer_id),
        _ => None,
    }
}

/// Calls `f` on every personal field of `event` that holds a value, with its JSON path:
/// the one list of what [`PERSONAL_FIELDS`] names.
fn for_each_personal(event: &mut Event, f: &mut dyn FnMut(&'static str, &mut String) -> io::Result<()>) -> io::Result<()> {
    let mut field = |name: &'static str, value: &mut String| if value.is_empty() { Ok(()) } else { f(name, value) };
    match event {
        Event::CustomerRegistered(c) => {
            field("email", &mut c.email)?;
            field("name", &mut c.name)?;
        }
        Event::OrderPlaced(o) => {
            const SHIPPING: [&str; 6] = ["shipping_address.name", "shipping_address.line1", "shipping_address.city",
                "shipping_address.postal_code", "shipping_address.line2", "shipping_address.region"];
            const BILLING: [&str; 6] = ["billing_address.name", "billing_address.line1", "billing_address.city",
                "billing_address.postal_code", "billing_address.line2", "billing_address.region"];
            for (names, a) in [(SHIPPING, &mut o.shipping_address), (BILLING, &mut o.billing_address)] {
                let Address { name, line1, city, postal_code, line2, region, .. } = a;
                for (n, v) in names[..4].iter().zip([name, line1, city, postal_code]) {
                    field(n, v)?;
                }
                for (n, v) in names[4..].iter().zip([line2, region]) {
                    if let Some(v) = v {
                        field(n, v)?;
                    }
                }
            }
            field("payment_method_token", &mut o.payment_method_token)?;
            field("client_ip", &mut o.client_ip)?;
        }
        _ => {}
    }
    Ok(())
}

/// One customer's key, looked up once for every field of an event.
struct Sealer<'v> {
    vault: &'v Vault,
    kid: String,
    key: Arc<DataKey>,
}

impl<'v> Sealer<'v> {
    fn of(vault: &'v Vault, customer_id: &str) -> io::Result<Sealer<'v>> {
        let kid = key_id(customer_id);
        let key = vault.key_for(&kid)?;
        Ok(Sealer { vault, kid, key })
    }

    /// `value` sealed (an empty one as it is; an already sealed one refused).
    fn seal(&self, value: &str) -> io::Result<String> {
        if value.is_empty() {
            return Ok(String::new());
        }
        if is_sealed(value) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "the value is already sealed"));
        }
        let (kid, key) = (&self.kid, &self.key);
        let pseudonym = B64.encode(&hmac::sign(&self.vault.pseudonyms, value.as_bytes()).as_ref()[..PSEUDONYM_LEN]);
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&hmac::sign(&key.nonce, value.as_bytes()).as_ref()[..NONCE_LEN]);
        let mut body = value.as_bytes().to_vec();
        let aad = format!("{kid}.{pseudonym}");
        key.aead
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad.as_bytes()), &mut body)
            .map_err(|_| io::Error::other("sealing failed"))?;
        let mut out = Vec::with_capacity(NONCE_LEN + body.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        Ok(format!("{SEALED_PREFIX}{aad}.{}", B64.encode(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn store() -> (tempfile::TempDir, Vault) {
        let dir = tempfile::tempdir().unwrap();
        let keys = Vault::load(&dir.path().join("keys")).unwrap();
        (dir, keys)
    }

    proptest! {
        #[test]
        fn a_sealed_value_opens_to_itself_and_hides_it(customer in "[a-z0-9_]{1,20}", value in "\\PC{1,200}") {
            prop_assume!(!is_sealed(&value));
            let (_d, keys) = store();
            let sealed = keys.seal(&customer, &value).unwrap();
            prop_assert!(is_sealed(&sealed));
            prop_assert!(!sealed.contains(&value) || value.len() < 4);
            prop_assert_eq!(keys.open(&sealed).unwrap(), Opened::Clear(value.clone()));
            // Deterministic: a replay publishes the same bytes.
            prop_assert_eq!(keys.seal(&customer, &value).unwrap(), sealed.clone());
            // A sealed value is never sealed again: whoever sent it would choose its pseudonym.
            prop_assert_eq!(keys.seal(&customer, &sealed).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        }

        #[test]
        fn the_pseudonym_is_the_same_for_every_customer_and_differs_between_values(
            a in "[a-z]{1,10}", b in "[a-z]{1,10}", v in "[0-9.]{7,15}", w in "[0-9.]{7,15}",
        ) {
            let (_d, keys) = store();
            let (va, vb) = (keys.seal(&a, &v).unwrap(), keys.seal(&b, &v).unwrap());
            prop_assert_eq!(pseudonym(&va), pseudonym(&vb));
            if v != w {
                let vw = keys.seal(&a, &w).unwrap();
                prop_assert_ne!(pseudonym(&va), pseudonym(&vw));
            }
        }
    }

    #[test]
    fn an_erased_customers_values_no_longer_open_and_another_customers_still_do() {
        let (_d, keys) = store();
        let a = keys.seal("c1", "ada@example.org").unwrap();
        let b = keys.seal("c2", "bob@example.org").unwrap();
        assert!(keys.erase("c1").unwrap());
        assert_eq!(keys.open(&a).unwrap(), Opened::Erased);
        assert_eq!(keys.open(&b).unwrap(), Opened::Clear("bob@example.org".into()));
        assert!(!keys.has_key("c1").unwrap());
        // A new value for the same customer gets a new key, which does not open the old one.
        let again = keys.seal("c1", "ada@example.org").unwrap();
        assert_ne!(again, a);
        assert_eq!(keys.open(&a).unwrap(), Opened::Erased);
    }

    #[test]
    fn an_erasure_in_another_process_counts_at_once() {
        let (d, keys) = store();
        let other = Vault::load(&d.path().join("keys")).unwrap();
        let a = keys.seal("c1", "ada").unwrap();
        assert_eq!(other.open(&a).unwrap(), Opened::Clear("ada".into()));
        other.erase("c1").unwrap();
        assert_eq!(keys.open(&a).unwrap(), Opened::Erased);
    }

    #[test]
    fn a_key_erased_and_made_anew_by_another_process_is_the_one_both_seal_and_open_with() {
        let (d, keys) = store();
        let other = Vault::load(&d.path().join("keys")).unwrap();
        let old = keys.seal("c1", "ada").unwrap();
        other.erase("c1").unwrap();
        let new = other.seal("c1", "ada the second").unwrap();
        // This process had the old key cached: it must not seal with it any more.
        let mine = keys.seal("c1", "ada the second").unwrap();
        assert_eq!(mine, new, "both seal with the key that exists now");
        assert_eq!(other.open(&mine).unwrap(), Opened::Clear("ada the second".into()));
        assert_eq!(keys.open(&old).unwrap(), Opened::Erased);
    }

    #[test]
    fn a_tampered_value_does_not_open() {
        let (_d, keys) = store();
        let sealed = keys.seal("c1", "203.0.113.9").unwrap();
        let s = parse(&sealed).unwrap();
        // Another pseudonym (the associated data) with the same ciphertext.
        let forged = format!("{SEALED_PREFIX}{}.{}.{}", s.kid, "AAAAAAAAAAAA", s.body);
        assert_eq!(keys.open(&forged).unwrap(), Opened::Erased);
        assert_eq!(keys.open("pii1.x.y.!!").unwrap(), Opened::Erased);
        assert_eq!(keys.open("plain").unwrap(), Opened::Plain("plain"));
    }

    #[test]
    fn key_files_are_private_and_erasure_removes_the_file() {
        let (d, keys) = store();
        keys.seal("c1", "x").unwrap();
        let path = d.path().join("keys").join(format!("{}.key", key_id("c1")));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        keys.erase("c1").unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn open_json_opens_nested_values_and_nulls_erased_ones() {
        let (_d, keys) = store();
        let mut v = serde_json::json!({
            "a": keys.seal("c1", "ada").unwrap(),
            "n": [{"b": keys.seal("c2", "bob").unwrap()}],
            "plain": "x",
        });
        keys.erase("c2").unwrap();
        keys.open_json(&mut v).unwrap();
        assert_eq!(v, serde_json::json!({"a": "ada", "n": [{"b": null}], "plain": "x"}));
    }

    fn order_with_every_field() -> Event {
        let t = crate::EVENT_TYPES.iter().find(|t| t.name == "OrderPlaced").unwrap();
        let mut v = crate::json::example(t);
        for a in ["shipping_address", "billing_address"] {
            v[a]["line2"] = "flat 2".into();
            v[a]["region"] = "north".into();
        }
        crate::json::event_from_json(v, crate::json::JsonOptions::default()).unwrap()
    }

    #[test]
    fn the_personal_fields_visited_are_exactly_the_documented_ones() {
        let mut seen = Vec::new();
        let registered = crate::json::example(crate::EVENT_TYPES.iter().find(|t| t.name == "CustomerRegistered").unwrap());
        let registered = crate::json::event_from_json(registered, crate::json::JsonOptions::default()).unwrap();
        for mut e in [registered, order_with_every_field()] {
            let kind = e.name();
            for_each_personal(&mut e, &mut |f, _| {
                seen.push(format!("{kind}.{}", f.replace("shipping_address", "*_address").replace("billing_address", "*_address")));
                Ok(())
            })
            .unwrap();
        }
        seen.sort();
        seen.dedup();
        let mut documented: Vec<String> = PERSONAL_FIELDS.iter().map(|s| s.to_string()).collect();
        documented.sort();
        assert_eq!(seen, documented);
    }

    #[test]
    fn an_event_carrying_a_sealed_value_is_refused_naming_the_field() {
        let (_d, keys) = store();
        let order = order_with_every_field();
        let Event::OrderPlaced(clear) = &order else { unreachable!() };
        assert_eq!(sealed_field(&order), None);
        let sealed = keys.prepare(&order).unwrap().into_owned();
        let Event::OrderPlaced(o) = &sealed else { unreachable!() };
        assert!(is_sealed(&o.client_ip) && is_sealed(o.billing_address.region.as_deref().unwrap()));
        assert_eq!(o.shipping_address.country, clear.shipping_address.country, "countries stay in the clear");
        // Sent again (a forged pseudonym, or a value copied from the log): refused, not passed on.
        assert_eq!(sealed_field(&sealed), Some("shipping_address.name"));
        let err = keys.prepare(&sealed).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("`shipping_address.name`"), "{err}");
        // One sealed field among clear ones is found wherever it is.
        for field in ["client_ip", "payment_method_token", "billing_address.region"] {
            let mut e = order.clone();
            let Event::OrderPlaced(o) = &mut e else { unreachable!() };
            let forged = format!("{SEALED_PREFIX}kid.AAAAAAAAAAAA.body");
            match field {
                "client_ip" => o.client_ip = forged,
                "payment_method_token" => o.payment_method_token = forged,
                _ => o.billing_address.region = Some(forged),
            }
            assert_eq!(sealed_field(&e), Some(field));
            assert!(keys.prepare(&e).is_err());
        }
    }

    #[test]
    fn a_store_keeps_sealed_personal_values_and_never_a_clear_one() {
        let (_d, keys) = store();
        let order = order_with_every_field();
        let sealed = keys.prepare(&order).unwrap().into_owned();
        assert!(matches!(sealed_only(&sealed), Cow::Borrowed(_)), "all sealed: kept as it is");
        let kept = sealed_only(&order).into_owned();
        let Event::OrderPlaced(o) = &kept else { unreachable!() };
        assert!(o.client_ip.is_empty() && o.payment_method_token.is_empty() && o.shipping_address.line1.is_empty());
        assert_eq!(o.billing_address.region.as_deref(), Some(""));
        let Event::OrderPlaced(clear) = &order else { unreachable!() };
        assert_eq!((&o.shipping_address.country, &o.items), (&clear.shipping_address.country, &clear.items), "the rest stays");
        // A mix: the sealed ones stay, the clear one goes.
        let mut mixed = sealed.clone();
        let Event::OrderPlaced(m) = &mut mixed else { unreachable!() };
        m.client_ip = "203.0.113.7".into();
        let Event::OrderPlaced(m) = sealed_only(&mixed).into_owned() else { unreachable!() };
        assert!(m.client_ip.is_empty() && is_sealed(&m.payment_method_token));
    }
}

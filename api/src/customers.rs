//! Customers: shoppers signed in at the marketplace's identity provider, who call the API
//! with its JWT (`Authorization: Bearer <header>.<claims>.<signature>`) instead of a key.
//!
//! [`CustomersConfig`] is `[api.customers]`. [`Verifier`] is built from it at start (the
//! JWKS file is read then, and only then) and checks a token's signature, `exp` and `nbf`
//! (with `leeway_secs` of clock skew), `iss`, `aud` and `sub`. The algorithm is the key's,
//! never the token's choice: HS256 only with `hs256_secret`; RS256 and ES256 only with the
//! JWKS key that the token's `kid` names, and only that key's own algorithm; `none` and
//! every other algorithm are refused. The `sub` is the customer id; what a customer may do
//! with it is decided in [`crate::roles`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// Shortest HS256 secret: as long as the hash (RFC 7518, section 3.2).
pub const MIN_SECRET_BYTES: usize = 32;
/// Most clock skew `leeway_secs` may allow.
pub const MAX_LEEWAY_SECS: u64 = 300;
/// Longest `sub` accepted (it becomes a rate-limit bucket and is compared with orders').
pub const MAX_SUB_CHARS: usize = 256;

/// `[api.customers]`: tokens of the marketplace's identity provider. Without this section
/// (the default) the API accepts API keys only.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CustomersConfig {
    /// The provider's `iss`: every token must carry exactly this.
    pub issuer: String,
    /// This API's audience at the provider: every token's `aud` must name it.
    pub audience: String,
    /// The shared HS256 secret, at least 32 bytes (`storeflow config` shows `***`). Either
    /// this or `jwks_file`.
    #[serde(serialize_with = "masked")]
    pub hs256_secret: Option<SecretString>,
    /// A JWKS file (`{"keys": [...]}`) with the provider's public keys, RS256 (RSA) or ES256
    /// (EC P-256), each with its `kid`. Read at start; other keys in it are skipped with a
    /// warning. Either this or `hs256_secret`.
    pub jwks_file: Option<PathBuf>,
    /// Seconds of clock skew allowed on `exp` and `nbf` (at most 300).
    pub leeway_secs: u64,
}

impl Default for CustomersConfig {
    fn default() -> Self {
        CustomersConfig { issuer: String::new(), audience: String::new(), hs256_secret: None, jwks_file: None, leeway_secs: 30 }
    }
}

/// Serializes the secret as `"***"` (what `storeflow_sinks::redact::secret` does;
/// the API does not depend on the sinks).
fn masked<S: serde::Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_some("***"),
        None => s.serialize_none(),
    }
}

impl CustomersConfig {
    /// Checks the values make sense (the JWKS file is read by [`Verifier::new`]).
    pub fn validate(&self) -> Result<(), String> {
        if self.issuer.trim().is_empty() || self.audience.trim().is_empty() {
            return Err("api.customers.issuer and api.customers.audience are required".into());
        }
        match (&self.hs256_secret, &self.jwks_file) {
            (Some(_), Some(_)) | (None, None) => {
                return Err("api.customers needs exactly one of hs256_secret (HS256) and jwks_file (RS256/ES256 public keys)".into());
            }
            (Some(s), None) if s.expose_secret().len() < MIN_SECRET_BYTES => {
                return Err(format!("api.customers.hs256_secret: at least {MIN_SECRET_BYTES} bytes"));
            }
            _ => {}
        }
        if self.leeway_secs > MAX_LEEWAY_SECS {
            return Err(format!("api.customers.leeway_secs = {}: at most {MAX_LEEWAY_SECS}", self.leeway_secs));
        }
        Ok(())
    }
}

/// The claims the API reads; `exp`, `nbf`, `iss` and `aud` are checked by `jsonwebtoken`.
/// (`sub` is optional here so that its absence is reported as a missing claim.)
#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
}

/// Checks customers' tokens against the configured keys.
pub struct Verifier {
    issuer: String,
    audience: String,
    leeway: u64,
    hs256: Option<DecodingKey>,
    /// The JWKS keys by `kid`, each with the one algorithm it verifies.
    keys: HashMap<String, (Algorithm, DecodingKey)>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut kids: Vec<&String> = self.keys.keys().collect();
        kids.sort();
        f.debug_struct("Verifier").field("issuer", &self.issuer).field("hs256", &self.hs256.is_some()).field("kids", &kids).finish()
    }
}

impl Verifier {
    /// The verifier of `config` (validated), reading its JWKS file; the error names the file
    /// and the key at fault.
    pub fn new(config: &CustomersConfig) -> Result<Verifier, String> {
        config.validate()?;
        // One provider is compiled in (aws-lc-rs); should another crate ever enable a
        // second, pick ours rather than fail on the first token.
        if jsonwebtoken::crypto::CryptoProvider::try_get_default().is_none() {
            let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        }
        let hs256 = match &config.hs256_secret {
            Some(s) => Some(DecodingKey::from_secret(s.expose_secret().as_bytes()).map_err(|e| format!("api.customers.hs256_secret: {e}"))?),
            None => None,
        };
        let keys = match &config.jwks_file {
            Some(path) => load_jwks(path)?,
            None => HashMap::new(),
        };
        Ok(Verifier { issuer: config.issuer.clone(), audience: config.audience.clone(), leeway: config.leeway_secs, hs256, keys })
    }

    /// The customer id (`sub`) of a valid token; otherwise why it is refused, for the 401
    /// (`expired`, `bad signature`, `wrong audience`, …).
    pub fn verify(&self, token: &str) -> Result<String, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            // `alg: none` (and any name outside the crate's list) fails here: say which.
            ErrorKind::Json(j) => match j.to_string().strip_prefix("unknown variant `").and_then(|r| r.split_once('`')) {
                Some((alg, _)) => format!("algorithm `{alg}` is not accepted"),
                None => format!("malformed header: {j}"),
            },
            _ => "malformed token".to_string(),
        })?;
        let key = match header.alg {
            Algorithm::HS256 => self.hs256.as_ref().ok_or("HS256 tokens are not accepted: this API verifies RS256/ES256 tokens with the provider's public keys")?,
            Algorithm::RS256 | Algorithm::ES256 => {
                if self.keys.is_empty() {
                    return Err(format!("{:?} tokens are not accepted: this API verifies HS256 tokens", header.alg));
                }
                let kid = header.kid.as_deref().ok_or("the token names no key (`kid`)")?;
                let (alg, key) = self.keys.get(kid).ok_or_else(|| format!("unknown key id `{kid}`"))?;
                if *alg != header.alg {
                    return Err(format!("key `{kid}` verifies {alg:?} tokens, not {:?}", header.alg));
                }
                key
            }
            other => return Err(format!("algorithm {other:?} is not accepted")),
        };
        let mut v = Validation::new(header.alg);
        v.leeway = self.leeway;
        v.validate_nbf = true;
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, key, &v).map_err(|e| why(e.kind()))?;
        let sub = data.claims.sub.unwrap_or_default();
        if sub.is_empty() || sub.chars().count() > MAX_SUB_CHARS || sub.chars().any(char::is_control) {
            return Err(format!("`sub` must be 1–{MAX_SUB_CHARS} printable characters"));
        }
        Ok(sub)
    }
}

/// The 401's reason for a token `jsonwebtoken` refused.
fn why(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "expired".into(),
        ErrorKind::ImmatureSignature => "not valid yet (`nbf`)".into(),
        ErrorKind::InvalidSignature => "bad signature".into(),
        ErrorKind::InvalidAudience => "wrong audience".into(),
        ErrorKind::InvalidIssuer => "wrong issuer".into(),
        ErrorKind::MissingRequiredClaim(c) => format!("the claim `{c}` is missing"),
        ErrorKind::InvalidClaimFormat(c) => format!("the claim `{c}` is malformed"),
        ErrorKind::InvalidAlgorithm => "algorithm not allowed for this key".into(),
        ErrorKind::Json(e) => format!("malformed claims: {e}"),
        ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Utf8(_) => "malformed token".into(),
        // Key material the provider cannot use for this token: its signature cannot hold.
        _ => "bad signature".into(),
    }
}

/// The RS256 and ES256 keys of the JWKS file at `path`, by `kid`.
fn load_jwks(path: &Path) -> Result<HashMap<String, (Algorithm, DecodingKey)>, String> {
    let at = |what: String| format!("api.customers.jwks_file {}: {what}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| at(e.to_string()))?;
    let set: serde_json::Value = serde_json::from_str(&text).map_err(|e| at(format!("not JSON: {e}")))?;
    let listed = set.get("keys").and_then(serde_json::Value::as_array).ok_or_else(|| at("no `keys` array".into()))?;
    let mut keys = HashMap::new();
    for (i, raw) in listed.iter().enumerate() {
        let kid = raw.get("kid").and_then(serde_json::Value::as_str).unwrap_or_default().to_string();
        let skip = |why: &str| tracing::warn!(file = %path.display(), key = i, kid = %kid, "skipping a JWKS key: {why}");
        let Ok(jwk) = serde_json::from_value::<Jwk>(raw.clone()) else {
            skip("not a key this API reads");
            continue;
        };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            skip("an encryption key (`use: enc`)");
            continue;
        }
        // The key decides its one algorithm: RSA → RS256, EC P-256 → ES256. Symmetric keys
        // in a JWKS are never used (HS256 comes from hs256_secret only).
        let alg = match (&jwk.algorithm, jwk.common.key_algorithm) {
            (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
            (AlgorithmParameters::EllipticCurve(p), None | Some(KeyAlgorithm::ES256)) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
            _ => {
                skip("only RS256 (RSA) and ES256 (EC P-256) keys are accepted");
                continue;
            }
        };
        if kid.is_empty() {
            return Err(at(format!("key {i} has no `kid`: tokens choose their key by it")));
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| at(format!("key `{kid}`: {e}")))?;
        if keys.insert(kid.clone(), (alg, key)).is_some() {
            return Err(at(format!("two keys have the `kid` `{kid}`")));
        }
    }
    if keys.is_empty() {
        return Err(at("no RS256 or ES256 key with a `kid`".into()));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hs_config() -> CustomersConfig {
        CustomersConfig {
            issuer: "https://id.example".into(),
            audience: "storeflow".into(),
            hs256_secret: Some(SecretString::from("s".repeat(32))),
            ..Default::default()
        }
    }

    #[test]
    fn the_secret_is_masked_when_the_config_is_printed_or_debugged() {
        let c = hs_config();
        let shown = serde_json::to_string(&c).unwrap();
        assert!(shown.contains("\"hs256_secret\":\"***\"") && !shown.contains("ssss"), "{shown}");
        assert!(!format!("{c:?}").contains("ssss"));
        let read: CustomersConfig = serde_json::from_str(r#"{"issuer": "i", "audience": "a", "hs256_secret": "0123456789abcdef0123456789abcdef"}"#).unwrap();
        assert_eq!(read.hs256_secret.unwrap().expose_secret(), "0123456789abcdef0123456789abcdef");
    }

    #[test]
    fn a_config_needs_an_issuer_an_audience_one_kind_of_key_and_a_long_secret() {
        assert!(hs_config().validate().is_ok());
        let short = CustomersConfig { hs256_secret: Some(SecretString::from("short")), ..hs_config() };
        assert!(short.validate().unwrap_err().contains("32 bytes"));
        let both = CustomersConfig { jwks_file: Some("k.json".into()), ..hs_config() };
        assert!(both.validate().unwrap_err().contains("exactly one"));
        let neither = CustomersConfig { hs256_secret: None, ..hs_config() };
        assert!(neither.validate().unwrap_err().contains("exactly one"));
        let no_aud = CustomersConfig { audience: " ".into(), ..hs_config() };
        assert!(no_aud.validate().unwrap_err().contains("audience"));
        let skew = CustomersConfig { leeway_secs: 3600, ..hs_config() };
        assert!(skew.validate().unwrap_err().contains("leeway_secs"));
    }

    #[test]
    fn a_jwks_file_without_a_usable_key_or_with_a_kid_twice_is_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, body: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, body).unwrap();
            CustomersConfig { hs256_secret: None, jwks_file: Some(p), ..hs_config() }
        };
        let oct = r#"{"kty": "oct", "kid": "h", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}"#;
        let ec = r#"{"kty": "EC", "crv": "P-256", "kid": "e1", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;
        let only_oct = file("oct.json", &format!(r#"{{"keys": [{oct}]}}"#));
        assert!(Verifier::new(&only_oct).unwrap_err().contains("no RS256 or ES256 key"), "symmetric keys are never taken from a JWKS");
        let twice = file("twice.json", &format!(r#"{{"keys": [{ec}, {ec}]}}"#));
        assert!(Verifier::new(&twice).unwrap_err().contains("`e1`"));
        let fine = file("fine.json", &format!(r#"{{"keys": [{oct}, {ec}]}}"#));
        let v = Verifier::new(&fine).unwrap();
        assert_eq!(v.keys.len(), 1);
        assert!(Verifier::new(&file("junk.json", "[")).unwrap_err().contains("junk.json"));
    }
}

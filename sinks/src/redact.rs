//! What of a configuration may be shown, in `storeflow config`, banners and logs.
//!
//! The rule: the value of a secret key ([`is_secret_key`]) becomes `***`; in every other
//! value, URL credentials do (`user:password@` → `user:***@`, and `?password=…` or any
//! other secret query parameter). It errs toward masking: a value that only looks like a
//! URL with a password is masked too.
//!
//! It is the one rule of what a secret is, for every crate that prints configuration: the
//! sinks' `Serialize` and `Debug`, the binary's `storeflow config` and start-up banner (it
//! lives here because the binary depends on the sinks, not the other way round).

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// Words that make a key secret wherever they appear in it.
const SECRET_WORDS: &[&str] = &["password", "passwd", "secret", "token", "credential", "jaas", "private", "apikey", "api_key", "api.key"];

/// Whether the value of configuration key `key` (a librdkafka property such as
/// `sasl.password`, a query parameter, a field name) is a secret: every `sasl.*`, any
/// key naming a password, token, secret or credential, and TLS key material
/// (`ssl.key.pem`, `ssl_key`; not the paths `ssl.key.location`, nor certificates).
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.starts_with("sasl.")
        || SECRET_WORDS.iter().any(|w| k.contains(w))
        || (k.starts_with("ssl") && (k.contains("key.pem") || k.ends_with("key")))
}

/// `value` of `key` as it may be shown: [`MASK`] for a secret key, otherwise with the
/// credentials of a URL masked.
pub fn value(key: &str, value: &str) -> String {
    if is_secret_key(key) { MASK.to_string() } else { url(value) }
}

/// `scheme://user:password@host/…?password=…` → `scheme://user:***@host/…?password=***`.
/// Anything without `://` is returned as it is.
pub fn url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    // A password may hold an unescaped `/` or `@`: the user info ends at the last `@`
    // before the query, not at the first `/`.
    let (before_query, query) = rest.split_at(rest.find(['?', '#']).unwrap_or(rest.len()));
    let authority = match before_query.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:{MASK}@{host}"),
            None => before_query.to_string(),
        },
        None => before_query.to_string(),
    };
    format!("{scheme}://{authority}{}", query_params(query))
}

/// Masks the values of secret parameters in `?a=1&password=x#token=y`, keeping the
/// rest and every separator.
fn query_params(query: &str) -> String {
    let mut out = String::with_capacity(query.len());
    let mut rest = query;
    while !rest.is_empty() {
        let sep_len = rest.len() - rest.trim_start_matches(['?', '#', '&', ';']).len();
        out.push_str(&rest[..sep_len]);
        rest = &rest[sep_len..];
        let end = rest.find(['?', '#', '&', ';']).unwrap_or(rest.len());
        let pair = &rest[..end];
        match pair.split_once('=') {
            Some((k, _)) if is_secret_key(k) => {
                out.push_str(k);
                out.push('=');
                out.push_str(MASK);
            }
            _ => out.push_str(pair),
        }
        rest = &rest[end..];
    }
    out
}

/// Serializes a secret as `"***"` (`#[serde(serialize_with = …)]`, for `storeflow config`).
pub fn secret<S: serde::Serializer>(v: &Option<secrecy::SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_some(MASK),
        None => s.serialize_none(),
    }
}

/// Serializes a URL held as a secret with its credentials masked.
pub fn secret_url<S: serde::Serializer>(v: &Option<secrecy::SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(u) => s.serialize_some(&url(secrecy::ExposeSecret::expose_secret(u))),
        None => s.serialize_none(),
    }
}

/// Serializes a URL with its credentials masked.
pub fn url_field<S: serde::Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&url(v))
}

/// Serializes a map of properties (`[kafka.properties]`) with every value [`value`]d.
pub fn properties<S: serde::Serializer>(m: &std::collections::BTreeMap<String, String>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(m.iter().map(|(k, v)| (k, value(k, v))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_redaction_rule_masks_secret_keys_and_url_credentials_and_nothing_else() {
        let table = [
            // Kafka properties: every sasl.*, passwords, TLS key material.
            ("sasl.password", "hunter2", "***"),
            ("sasl.username", "alice", "***"),
            ("sasl.mechanism", "PLAIN", "***"),
            ("sasl.jaas.config", r#"org.apache.kafka.common.security.plain.PlainLoginModule required password="hunter2";"#, "***"),
            ("sasl.oauthbearer.client.secret", "hunter2", "***"),
            ("ssl.key.password", "hunter2", "***"),
            ("ssl.keystore.password", "hunter2", "***"),
            ("ssl.key.pem", "-----BEGIN PRIVATE KEY-----", "***"),
            ("ssl_key", "-----BEGIN PRIVATE KEY-----", "***"),
            ("SSL.KEY.PEM", "-----BEGIN PRIVATE KEY-----", "***"),
            ("client.secret", "hunter2", "***"),
            ("access_token", "hunter2", "***"),
            ("api_key", "hunter2", "***"),
            // Not secrets: shown as they are.
            ("security.protocol", "SASL_SSL", "SASL_SSL"),
            ("ssl.key.location", "/etc/kafka/client.key", "/etc/kafka/client.key"),
            ("ssl.certificate.pem", "-----BEGIN CERTIFICATE-----", "-----BEGIN CERTIFICATE-----"),
            ("ssl.ca.location", "/etc/ssl/ca.pem", "/etc/ssl/ca.pem"),
            ("client.id", "storeflow", "storeflow"),
            ("message.max.bytes", "1000000", "1000000"),
            // URLs under ordinary keys: credentials masked, the rest kept.
            ("url", "postgres://u:hunter2@h:5432/db", "postgres://u:***@h:5432/db"),
            ("url", "postgres://u:hun/ter@2@h/db", "postgres://u:***@h/db"),
            ("url", "http://127.0.0.1:18123", "http://127.0.0.1:18123"),
            ("url", "http://elastic@h:9200", "http://elastic@h:9200"),
            ("url", "https://u:hunter2@registry:8081/subjects", "https://u:***@registry:8081/subjects"),
            ("url", "postgres://h/db?user=u&password=hunter2&sslmode=require", "postgres://h/db?user=u&password=***&sslmode=require"),
            ("url", "http://h/x?token=hunter2", "http://h/x?token=***"),
            ("url", "http://h/x#access_token=hunter2", "http://h/x#access_token=***"),
            ("url", "http://h/x?page=2;secret=hunter2", "http://h/x?page=2;secret=***"),
            ("url", "http://h/x?a=1#token=hunter2", "http://h/x?a=1#token=***"),
            ("url", "http://h/search?q=a@b", "http://h/search?q=a@b"),
            ("brokers", "k1:9092,k2:9092", "k1:9092,k2:9092"),
        ];
        for (key, value, shown) in table {
            assert_eq!(self::value(key, value), shown, "{key} = {value}");
        }
    }
}

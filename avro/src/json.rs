//! Events as JSON — what the API accepts — validated against their Avro schema.
//!
//! The JSON form is an object with the event's fields plus `"type": "<RecordName>"`.
//! Optional (`["null", T]`) fields are written plainly (`"referrer": "https://…"` or
//! `null` or absent), not in Avro's JSON encoding. Timestamps are milliseconds or RFC 3339.
//!
//! Validation happens in three passes, each naming the first field that fails:
//! 1. shape: every key is a field of the schema (also in nested records);
//! 2. types: the value deserializes into the typed struct (`items[0].quantity: invalid
//!    type: string "two", expected i32`);
//! 3. conventions of the contract: currencies are ISO-4217 codes, countries ISO-3166
//!    alpha-2, quantities positive, amounts in minor units not negative, ids not empty,
//!    `event_id` a UUID, ratings 1–5, order lines not empty.

use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

use serde_json::{Map, Value};

use crate::event::{EVENT_TYPES, Event, EventType};
use crate::Timestamp;

/// Why a JSON event was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidationError {
    /// The field at fault, as a path: `items[0].quantity`; `None` when it is the whole body.
    pub field: Option<String>,
    /// What is wrong, readable.
    pub message: String,
}

impl ValidationError {
    fn at(field: impl Into<String>, message: impl Into<String>) -> Self {
        ValidationError {
            field: Some(field.into()),
            message: message.into(),
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{field}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ValidationError {}

/// Choices for [`event_from_json`].
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonOptions {
    /// Fill a missing `event_id` with a new UUID and a missing `occurred_at` with now.
    pub fill_missing_ids: bool,
    /// Accept only event types of input topics (what apps may send), not derived ones.
    pub inputs_only: bool,
}

/// How long strings and arrays inside an event may be, per field name: what the API
/// applies to every event it is sent (`[api.field_limits]`), before anything else is done
/// with it. A 10 MB string in a valid body costs its sender a 400, not every reader a copy.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FieldLimits {
    /// Longest string value, in characters, unless `fields` names its field.
    pub max_string_chars: usize,
    /// Most items in an array, unless `fields` names its field.
    pub max_array_items: usize,
    /// Per field name (the last part of its path: `description`, `items`): its own limit,
    /// characters for a string, items for an array.
    pub fields: std::collections::BTreeMap<String, usize>,
}

impl Default for FieldLimits {
    fn default() -> Self {
        FieldLimits {
            max_string_chars: 1_000,
            max_array_items: 100,
            fields: [("description".to_string(), 10_000), ("query".to_string(), 256)].into_iter().collect(),
        }
    }
}

impl FieldLimits {
    /// Refuses the first string or array of `value` longer than its field's limit, naming it
    /// (`items[3].product_id`).
    pub fn check(&self, value: &Value) -> Result<(), ValidationError> {
        self.check_at(value, "", "")
    }

    fn check_at(&self, value: &Value, name: &str, path: &str) -> Result<(), ValidationError> {
        let limit = |default: usize| self.fields.get(name).copied().unwrap_or(default);
        match value {
            Value::String(s) => {
                let max = limit(self.max_string_chars);
                // Bytes bound characters from above: count only when it could matter.
                if s.len() > max && s.chars().count() > max {
                    return Err(ValidationError::at(path, format!("at most {max} characters, got {}", s.chars().count())));
                }
            }
            Value::Array(items) => {
                let max = limit(self.max_array_items);
                if items.len() > max {
                    return Err(ValidationError::at(path, format!("at most {max} items, got {}", items.len())));
                }
                for (i, v) in items.iter().enumerate() {
                    self.check_at(v, name, &format!("{path}[{i}]"))?;
                }
            }
            Value::Object(fields) => {
                if fields.len() > self.max_array_items.max(64) {
                    return Err(ValidationError::at(path, format!("at most {} fields, got {}", self.max_array_items.max(64), fields.len())));
                }
                for (k, v) in fields {
                    let max = self.max_string_chars;
                    if k.len() > max {
                        return Err(ValidationError::at(path, format!("a field name of {} bytes (at most {max})", k.len())));
                    }
                    self.check_at(v, k, &join(path, k))?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn schemas() -> &'static [Value] {
    static SCHEMAS: OnceLock<Vec<Value>> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        EVENT_TYPES
            .iter()
            .map(|t| serde_json::from_str(t.schema).expect("compiled-in schemas are valid JSON"))
            .collect()
    })
}

/// Parses and validates one JSON event given as text.
pub fn event_from_json_str(text: &str, opts: JsonOptions) -> Result<Event, ValidationError> {
    let value: Value = serde_json::from_str(text).map_err(|e| ValidationError {
        field: None,
        message: format!("malformed JSON: {e}"),
    })?;
    event_from_json(value, opts)
}

/// Validates one JSON event (`{"type": "...", ...fields}`) and builds it.
pub fn event_from_json(value: Value, opts: JsonOptions) -> Result<Event, ValidationError> {
    let Value::Object(mut obj) = value else {
        return Err(ValidationError {
            field: None,
            message: format!(
                "expected a JSON object with a \"type\" field, found {}",
                kind_of(&value)
            ),
        });
    };
    let t = take_type(&mut obj, opts)?;
    let schema = &schemas()[t.index()];
    if opts.fill_missing_ids {
        obj.entry("event_id")
            .or_insert_with(|| Value::String(uuid::Uuid::new_v4().to_string()));
        obj.entry("occurred_at")
            .or_insert_with(|| Value::from(Timestamp::now().millis()));
    }
    let value = Value::Object(obj);

    let mut names = HashMap::new();
    walk(schema, &mut names, &value, "", &mut |_, _, _, _| Ok(()))?;

    let event = Event::from_json_typed(t.index(), value.clone()).map_err(|e| {
        let path = e.path().to_string();
        let msg = e.inner().to_string();
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        // serde reports a missing field at its parent: name the field itself.
        if let Some(missing) = msg
            .strip_prefix("missing field `")
            .and_then(|m| m.strip_suffix('`'))
        {
            let field = if path == "." { missing.to_string() } else { format!("{path}.{missing}") };
            return ValidationError::at(field, "required field is missing");
        }
        let field = if path == "." { None } else { Some(path) };
        ValidationError { field, message: msg }
    })?;

    let mut names = HashMap::new();
    walk(schema, &mut names, &value, "", &mut check_convention)?;
    Ok(event)
}

/// Reads back what [`Event::to_json`] wrote, as it was: the type and each field's type are
/// checked, not the conventions an app's event is held to. For an event a store kept (it
/// came off the log, where nothing checks them), so that it reads back whatever it was.
pub fn event_from_stored_json(value: Value) -> Result<Event, ValidationError> {
    let Value::Object(mut obj) = value else {
        return Err(ValidationError { field: None, message: format!("expected a JSON object with a \"type\" field, found {}", kind_of(&value)) });
    };
    let t = take_type(&mut obj, JsonOptions::default())?;
    Event::from_json_typed(t.index(), Value::Object(obj)).map_err(|e| {
        let path = e.path().to_string();
        ValidationError { field: (path != ".").then_some(path), message: e.inner().to_string() }
    })
}

fn take_type(obj: &mut Map<String, Value>, opts: JsonOptions) -> Result<&'static EventType, ValidationError> {
    let Some(ty) = obj.remove("type") else {
        return Err(ValidationError::at("type", "required field is missing: name the event type, e.g. \"type\": \"OrderPlaced\""));
    };
    let Value::String(name) = ty else {
        return Err(ValidationError::at("type", format!("expected a string, found {}", kind_of(&ty))));
    };
    let t = EventType::by_name(&name).ok_or_else(|| {
        let mut known: Vec<_> = EVENT_TYPES
            .iter()
            .filter(|t| !opts.inputs_only || t.topic.is_input())
            .map(|t| (strsim::levenshtein(t.name, &name), t.name))
            .collect();
        known.sort();
        let hint = match known.first() {
            Some((d, n)) if *d <= 3 => format!("; did you mean {n}?"),
            _ => String::new(),
        };
        ValidationError::at("type", format!("unknown event type `{name}`{hint}"))
    })?;
    if opts.inputs_only && !t.topic.is_input() {
        return Err(ValidationError::at(
            "type",
            format!("{} is derived by storeflow's processors; apps cannot send it", t.name),
        ));
    }
    Ok(t)
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() { field.to_string() } else { format!("{path}.{field}") }
}

type Check<'a> = dyn FnMut(&str, &Value, &Value, &str) -> Result<(), ValidationError> + 'a;

/// Walks `value` along `schema`, refusing keys that are not fields and calling `check`
/// with (field name, field schema, value, path) for every record field present.
fn walk<'s>(
    schema: &'s Value,
    names: &mut HashMap<String, &'s Value>,
    value: &Value,
    path: &str,
    check: &mut Check<'_>,
) -> Result<(), ValidationError> {
    match schema {
        Value::String(name) => {
            if let Some(def) = names.get(name.as_str()).copied().or_else(|| {
                names.get(&format!("{}.{name}", crate::NAMESPACE)).copied()
            }) {
                walk(def, names, value, path, check)?;
            }
            Ok(())
        }
        Value::Array(branches) => {
            if value.is_null() {
                return Ok(());
            }
            match branches.iter().find(|b| b.as_str() != Some("null")) {
                Some(b) => walk(b, names, value, path, check),
                None => Ok(()),
            }
        }
        Value::Object(def) => match def.get("type").and_then(Value::as_str) {
            Some("record") => {
                if let Some(name) = def.get("name").and_then(Value::as_str) {
                    let ns = def.get("namespace").and_then(Value::as_str).unwrap_or(crate::NAMESPACE);
                    names.insert(format!("{ns}.{name}"), schema);
                }
                let fields = def.get("fields").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
                let Value::Object(obj) = value else { return Ok(()) };
                for key in obj.keys() {
                    if !fields.iter().any(|f| f.get("name").and_then(Value::as_str) == Some(key)) {
                        let known: Vec<_> = fields.iter().filter_map(|f| f.get("name")?.as_str()).collect();
                        return Err(ValidationError::at(
                            join(path, key),
                            format!("unknown field; the fields here are: {}", known.join(", ")),
                        ));
                    }
                }
                for f in fields {
                    let (Some(fname), Some(fschema)) = (f.get("name").and_then(Value::as_str), f.get("type")) else { continue };
                    if let Some(v) = obj.get(fname) {
                        let p = join(path, fname);
                        check(fname, fschema, v, &p)?;
                        walk(fschema, names, v, &p, check)?;
                    }
                }
                Ok(())
            }
            Some("array") => {
                let (Some(items), Value::Array(vs)) = (def.get("items"), value) else { return Ok(()) };
                for (i, v) in vs.iter().enumerate() {
                    walk(items, names, v, &format!("{path}[{i}]"), check)?;
                }
                Ok(())
            }
            Some("map") => {
                let (Some(values), Value::Object(vs)) = (def.get("values"), value) else { return Ok(()) };
                for (k, v) in vs {
                    walk(values, names, v, &join(path, k), check)?;
                }
                Ok(())
            }
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

/// The contract's conventions, checked by field name.
fn check_convention(name: &str, _schema: &Value, v: &Value, path: &str) -> Result<(), ValidationError> {
    let err = |m: String| Err(ValidationError::at(path, m));
    if let Some(s) = v.as_str() {
        if (name == "currency" || name.ends_with("_currency"))
            && !(s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase()))
        {
            return err(format!("`{s}` is not an ISO-4217 currency code (three capital letters, e.g. EUR)"));
        }
        if name == "country" && !(s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase())) {
            return err(format!("`{s}` is not an ISO-3166-1 alpha-2 country code (two capital letters, e.g. DE)"));
        }
        if name == "event_id" && uuid::Uuid::parse_str(s).is_err() {
            return err(format!("`{s}` is not a UUID"));
        }
        if (name.ends_with("_id") || name == "sku") && s.trim().is_empty() {
            return err("must not be empty".to_string());
        }
    }
    if let Some(n) = v.as_i64() {
        if name == "quantity" && n <= 0 {
            return err(format!("must be at least 1, got {n}"));
        }
        if name.ends_with("_minor") && n < 0 {
            return err(format!("amounts are minor units and cannot be negative, got {n}"));
        }
        if name == "rating" && !(1..=5).contains(&n) {
            return err(format!("ratings are 1 to 5 stars, got {n}"));
        }
        if name == "rate_e9" && n <= 0 {
            return err(format!("an exchange rate must be positive, got {n}"));
        }
    }
    if name == "items" && v.as_array().is_some_and(Vec::is_empty) {
        return err("needs at least one line".to_string());
    }
    Ok(())
}

/// An example of event type `t` as JSON, with plausible values for every field (optional
/// ones included). Used by `storeflow schemas show`, tests and benchmarks.
pub fn example(t: &EventType) -> Value {
    let schema = &schemas()[t.index()];
    let mut names = HashMap::new();
    let mut v = example_of(schema, "", &mut names);
    if let Value::Object(map) = &mut v {
        map.insert("type".into(), Value::String(t.name.into()));
    }
    v
}

fn example_of<'s>(schema: &'s Value, field: &str, names: &mut HashMap<String, &'s Value>) -> Value {
    match schema {
        Value::String(t) => match t.as_str() {
            "string" => Value::String(match field {
                "currency" | "base_currency" | "payout_currency" => "EUR".into(),
                "quote_currency" => "USD".into(),
                "country" => "DE".into(),
                "client_ip" => "203.0.113.7".into(),
                "email" => "ada@example.com".into(),
                _ => format!("{field}-1"),
            }),
            "int" => Value::from(match field {
                "rating" => 4,
                "delta" => -1,
                "quantity" => 2,
                _ => 3,
            }),
            "long" => Value::from(match field {
                "rate_e9" => 1_080_000_000i64,
                f if f.ends_with("_minor") => 1999,
                _ => 42,
            }),
            "double" | "float" => Value::from(0.5),
            "boolean" => Value::Bool(true),
            "null" => Value::Null,
            name => match names.get(name).copied().or_else(|| names.get(&format!("{}.{name}", crate::NAMESPACE)).copied()) {
                Some(def) => example_of(def, field, names),
                None => Value::Null,
            },
        },
        Value::Array(branches) => branches
            .iter()
            .find(|b| b.as_str() != Some("null"))
            .map(|b| example_of(b, field, names))
            .unwrap_or(Value::Null),
        Value::Object(def) => {
            let logical = def.get("logicalType").and_then(Value::as_str);
            match (def.get("type").and_then(Value::as_str), logical) {
                (_, Some("uuid")) => Value::String("7d1f4b8e-2c3a-4e5f-9a6b-0c1d2e3f4a5b".into()),
                // The current second: an example is meant to be sent, and the API refuses
                // times far from its clock.
                (_, Some("timestamp-millis")) => Value::from(crate::Timestamp::now().millis() / 1_000 * 1_000),
                (Some("record"), _) => {
                    if let Some(name) = def.get("name").and_then(Value::as_str) {
                        let ns = def.get("namespace").and_then(Value::as_str).unwrap_or(crate::NAMESPACE);
                        names.insert(format!("{ns}.{name}"), schema);
                    }
                    let mut map = Map::new();
                    for f in def.get("fields").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]) {
                        let (Some(n), Some(t)) = (f.get("name").and_then(Value::as_str), f.get("type")) else { continue };
                        map.insert(n.to_string(), example_of(t, n, names));
                    }
                    Value::Object(map)
                }
                (Some("array"), _) => Value::Array(vec![def.get("items").map(|i| example_of(i, field, names)).unwrap_or(Value::Null)]),
                (Some("map"), _) => {
                    let mut map = Map::new();
                    map.insert("fr".into(), def.get("values").map(|i| example_of(i, field, names)).unwrap_or(Value::Null));
                    Value::Object(map)
                }
                (Some(t), _) => {
                    let primitive = Value::String(t.to_string());
                    let mut no_names = HashMap::new();
                    example_of(&primitive, field, &mut no_names)
                }
                _ => Value::Null,
            }
        }
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order_json() -> Value {
        serde_json::json!({
            "type": "OrderPlaced",
            "event_id": "0b4f6a4e-58a4-4b7b-9a53-5f4d8c1e2a10",
            "occurred_at": "2026-11-25T10:00:00Z",
            "order_id": "o-1", "customer_id": "c-1",
            "items": [{"sku": "S1", "product_id": "P1", "vendor_id": "V1", "quantity": 2, "unit_price_minor": 1999}],
            "currency": "EUR",
            "shipping_address": {"name": "A", "line1": "x", "city": "Berlin", "postal_code": "10115", "country": "DE"},
            "billing_address": {"name": "A", "line1": "x", "city": "Berlin", "postal_code": "10115", "country": "DE"},
            "payment_method_token": "pm_card_visa", "client_ip": "203.0.113.9"
        })
    }

    fn refuse(v: Value) -> ValidationError {
        event_from_json(v, JsonOptions::default()).expect_err("should be refused")
    }

    #[test]
    fn a_valid_order_is_accepted_with_defaults_filled() {
        let e = event_from_json(order_json(), JsonOptions::default()).unwrap();
        let Event::OrderPlaced(o) = e else { panic!("wrong type") };
        assert_eq!(o.items[0].quantity, 2);
        assert_eq!(o.shipping_minor, 0);
        assert_eq!(o.occurred_at, Timestamp::parse_rfc3339("2026-11-25T10:00:00Z").unwrap());
    }

    #[test]
    fn a_wrong_field_type_names_the_nested_field() {
        let mut v = order_json();
        v["items"][0]["quantity"] = Value::from("two");
        let e = refuse(v);
        assert_eq!(e.field.as_deref(), Some("items[0].quantity"), "{e}");
        assert!(e.message.contains("invalid type"), "{e}");
    }

    #[test]
    fn a_missing_field_is_named_with_its_path() {
        let mut v = order_json();
        v["shipping_address"].as_object_mut().unwrap().remove("country");
        let e = refuse(v);
        assert_eq!(e.field.as_deref(), Some("shipping_address.country"), "{e}");
    }

    #[test]
    fn an_unknown_field_is_refused_by_name() {
        let mut v = order_json();
        v["coupon"] = Value::from("X");
        let e = refuse(v);
        assert_eq!(e.field.as_deref(), Some("coupon"));
        assert!(e.message.contains("unknown field"), "{e}");
    }

    #[test]
    fn an_unknown_type_suggests_the_closest() {
        let mut v = order_json();
        v["type"] = Value::from("OrderPlacd");
        let e = refuse(v);
        assert_eq!(e.field.as_deref(), Some("type"));
        assert!(e.message.contains("did you mean OrderPlaced"), "{e}");
    }

    #[test]
    fn conventions_are_enforced_with_the_field_named() {
        for (path, bad, field) in [
            ("currency", Value::from("euro"), "currency"),
            ("event_id", Value::from("not-a-uuid"), "event_id"),
        ] {
            let mut v = order_json();
            v[path] = bad;
            assert_eq!(refuse(v).field.as_deref(), Some(field));
        }
        let mut v = order_json();
        v["items"][0]["quantity"] = Value::from(0);
        assert_eq!(refuse(v).field.as_deref(), Some("items[0].quantity"));
        let mut v = order_json();
        v["billing_address"]["country"] = Value::from("Germany");
        assert_eq!(refuse(v).field.as_deref(), Some("billing_address.country"));
        let mut v = order_json();
        v["items"] = Value::Array(vec![]);
        assert_eq!(refuse(v).field.as_deref(), Some("items"));
    }

    #[test]
    fn malformed_json_and_non_objects_are_refused_without_panicking() {
        let e = event_from_json_str("{\"type\": ", JsonOptions::default()).unwrap_err();
        assert!(e.message.starts_with("malformed JSON"), "{e}");
        assert!(event_from_json_str("[1,2]", JsonOptions::default()).is_err());
        assert_eq!(refuse(serde_json::json!({"event_id": "x"})).field.as_deref(), Some("type"));
    }

    #[test]
    fn derived_events_are_refused_when_only_inputs_are_allowed() {
        let v = serde_json::json!({"type": "FraudScored"});
        let e = event_from_json(v, JsonOptions { inputs_only: true, ..Default::default() }).unwrap_err();
        assert!(e.message.contains("derived"), "{e}");
    }

    #[test]
    fn missing_ids_are_filled_only_when_asked() {
        let mut v = order_json();
        v.as_object_mut().unwrap().remove("event_id");
        assert_eq!(refuse(v.clone()).field.as_deref(), Some("event_id"));
        let e = event_from_json(v, JsonOptions { fill_missing_ids: true, ..Default::default() }).unwrap();
        assert!(uuid::Uuid::parse_str(e.event_id()).is_ok());
    }

    #[test]
    fn a_stored_event_reads_back_even_when_it_breaks_a_convention() {
        let e = event_from_json(order_json(), JsonOptions::default()).unwrap();
        let Event::OrderPlaced(mut o) = e else { panic!("wrong type") };
        o.event_id = "not-a-uuid".into();
        o.currency = "eur".into();
        let e = Event::OrderPlaced(o);
        assert!(event_from_json(e.to_json(), JsonOptions::default()).is_err());
        assert_eq!(event_from_stored_json(e.to_json()).unwrap(), e);
        let err = event_from_stored_json(serde_json::json!({"type": "OrderPlaced", "event_id": 7})).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("event_id"), "{err}");
        assert_eq!(event_from_stored_json(serde_json::json!({"type": "Nope"})).unwrap_err().field.as_deref(), Some("type"));
    }

    #[test]
    fn to_json_round_trips_through_validation() {
        let e = event_from_json(order_json(), JsonOptions::default()).unwrap();
        let back = event_from_json(e.to_json(), JsonOptions::default()).unwrap();
        assert_eq!(e, back);
    }
}

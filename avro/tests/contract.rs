//! The Rust types, the `.avsc` files and the codec agree, for every event type.

use std::sync::Arc;

use apache_avro::types::Value as AvroValue;
use storeflow_avro::json::{JsonOptions, event_from_json, example};
use storeflow_avro::{Codec, EVENT_TYPES, EmbeddedRegistry, Event, SchemaRegistry, Topic};

fn examples() -> Vec<Event> {
    EVENT_TYPES
        .iter()
        .map(|t| {
            event_from_json(example(t), JsonOptions::default())
                .unwrap_or_else(|e| panic!("example of {} does not validate: {e}", t.name))
        })
        .collect()
}

fn framed(id: u32, datum: Vec<u8>) -> Vec<u8> {
    let mut v = vec![0u8];
    v.extend_from_slice(&id.to_be_bytes());
    v.extend(datum);
    v
}

#[test]
fn every_type_matches_its_schema() {
    // Our fast encoding must be exactly what apache-avro's reference decoder reads with the
    // .avsc — every byte consumed — and it must give back the same struct.
    let codec = Codec::embedded().unwrap();
    for event in examples() {
        let t = event.event_type();
        let schema = apache_avro::Schema::parse_str(t.schema).unwrap();
        let bytes = codec.encode(&event).unwrap();
        let mut datum = &bytes[5..];
        let value = apache_avro::reader::datum::GenericDatumReader::builder(&schema)
            .build()
            .unwrap()
            .read_value(&mut datum)
            .unwrap_or_else(|e| panic!("{}: reference decoder refused our bytes: {e}", t.name));
        assert!(datum.is_empty(), "{}: {} bytes left over", t.name, datum.len());
        let AvroValue::Record(fields) = &value else { panic!("{} is not a record", t.name) };
        let json_fields = event.to_json().as_object().unwrap().len() - 1;
        assert_eq!(fields.len(), json_fields, "{}: struct and schema differ in field count", t.name);
        assert_eq!(codec.decode(&bytes).unwrap(), event, "{} does not round-trip", t.name);
    }
}

#[test]
fn every_event_goes_to_its_documented_topic_with_a_key() {
    for event in examples() {
        assert!(!event.key().is_empty(), "{} has an empty key", event.name());
        assert_eq!(Event::types_of(event.topic()).filter(|t| t.name == event.name()).count(), 1);
    }
    for topic in Topic::ALL {
        assert_eq!(Topic::from_name(topic.name()), Some(topic));
        assert!(Event::types_of(topic).count() > 0, "{topic} has no event types");
    }
}

/// Removes every top-level field that has a default, like a schema from before they existed.
fn without_defaulted_fields(schema: &str) -> (String, Vec<String>) {
    let mut v: serde_json::Value = serde_json::from_str(schema).unwrap();
    let fields = v["fields"].as_array_mut().unwrap();
    let removed: Vec<String> = fields
        .iter()
        .filter(|f| f.get("default").is_some())
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect();
    fields.retain(|f| f.get("default").is_none());
    (v.to_string(), removed)
}

fn generic_datum(event: &Event, writer: &apache_avro::Schema) -> Vec<u8> {
    let json = event.to_json();
    let AvroValue::Record(fields) = avro_value_of(&json, writer) else { unreachable!() };
    write_generic(writer, AvroValue::Record(fields))
}

fn write_generic(schema: &apache_avro::Schema, value: AvroValue) -> Vec<u8> {
    apache_avro::writer::datum::GenericDatumWriter::builder(schema)
        .build()
        .unwrap()
        .write_value_to_vec(value)
        .unwrap()
}

/// JSON → apache-avro Value following `schema` (only what our schemas use).
fn avro_value_of(json: &serde_json::Value, root: &apache_avro::Schema) -> AvroValue {
    let resolved = apache_avro::schema::ResolvedSchema::try_from(root).unwrap();
    value_of(json, root, resolved.get_names())
}

fn value_of(json: &serde_json::Value, schema: &apache_avro::Schema, names: &apache_avro::schema::NamesRef) -> AvroValue {
    use apache_avro::Schema as S;
    let avro_value_of = |j: &serde_json::Value, s: &apache_avro::Schema| value_of(j, s, names);
    match schema {
        S::Record(r) => AvroValue::Record(
            r.fields
                .iter()
                .map(|f| (f.name.clone(), avro_value_of(&json[&f.name], &f.schema)))
                .collect(),
        ),
        S::Union(u) => {
            if json.is_null() {
                AvroValue::Union(0, Box::new(AvroValue::Null))
            } else {
                AvroValue::Union(1, Box::new(avro_value_of(json, &u.variants()[1])))
            }
        }
        S::Array(a) => AvroValue::Array(json.as_array().unwrap().iter().map(|j| avro_value_of(j, &a.items)).collect()),
        S::Map(m) => AvroValue::Map(json.as_object().unwrap().iter().map(|(k, j)| (k.clone(), avro_value_of(j, &m.types))).collect()),
        S::String | S::Uuid(_) => AvroValue::String(json.as_str().unwrap().to_string()),
        S::Int => AvroValue::Int(json.as_i64().unwrap() as i32),
        S::Long => AvroValue::Long(json.as_i64().unwrap()),
        S::TimestampMillis => AvroValue::TimestampMillis(json.as_i64().unwrap()),
        S::Double => AvroValue::Double(json.as_f64().unwrap()),
        S::Boolean => AvroValue::Boolean(json.as_bool().unwrap()),
        S::Ref { name } => avro_value_of(json, names[name]),
        other => panic!("not used by the contract: {other:?}"),
    }
}

#[test]
fn records_from_an_older_schema_without_defaulted_fields_decode_with_the_defaults() {
    let registry = Arc::new(EmbeddedRegistry::new().unwrap());
    let codec = Codec::new(registry.clone()).unwrap();
    let mut checked = 0;
    for event in examples() {
        let t = event.event_type();
        let (old_json, removed) = without_defaulted_fields(t.schema);
        if removed.is_empty() {
            continue;
        }
        let old = apache_avro::Schema::parse_str(&old_json).unwrap();
        let datum = generic_datum(&event, &old);
        let id = registry.register(&t.subject(), &old_json).unwrap();
        let decoded = codec
            .decode(&framed(id, datum))
            .unwrap_or_else(|e| panic!("{}: an old record does not decode: {e}", t.name));
        let json = decoded.to_json();
        let reference = serde_json::from_str::<serde_json::Value>(t.schema).unwrap();
        for name in &removed {
            let field = reference["fields"].as_array().unwrap().iter().find(|f| f["name"] == **name).unwrap();
            assert_eq!(json[name], field["default"], "{}: `{name}` did not take its Avro default", t.name);
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} schemas had defaulted fields to drop");
}

#[test]
fn records_from_a_newer_schema_with_an_extra_field_decode_and_ignore_it() {
    let registry = Arc::new(EmbeddedRegistry::new().unwrap());
    let codec = Codec::new(registry.clone()).unwrap();
    let event = examples().into_iter().find(|e| e.name() == "OrderPlaced").unwrap();
    let mut newer: serde_json::Value = serde_json::from_str(event.event_type().schema).unwrap();
    newer["fields"].as_array_mut().unwrap().push(serde_json::json!(
        {"name": "coupon_code", "type": ["null", "string"], "default": null, "doc": "added later"}));
    let newer_schema = apache_avro::Schema::parse_str(&newer.to_string()).unwrap();
    let mut json = event.to_json();
    json["coupon_code"] = serde_json::Value::from("WINTER");
    let AvroValue::Record(fields) = avro_value_of(&json, &newer_schema) else { unreachable!() };
    let datum = write_generic(&newer_schema, AvroValue::Record(fields));
    let id = registry.register(&event.event_type().subject(), &newer.to_string()).unwrap();
    assert_eq!(codec.decode(&framed(id, datum)).unwrap(), event);
}

#[test]
fn garbage_is_a_decode_error_never_a_panic() {
    let codec = Codec::embedded().unwrap();
    let good = codec.encode(&examples()[8]).unwrap();
    assert!(codec.decode(&[]).is_err());
    assert!(codec.decode(&[1, 0, 0, 0, 1, 2]).is_err());
    assert!(codec.decode(&[0, 0xff, 0xff, 0xff, 0xff]).is_err());
    for cut in 5..good.len() {
        let _ = codec.decode(&good[..cut]);
    }
    let mut flipped = good.clone();
    for i in 5..flipped.len() {
        flipped[i] ^= 0xa5;
        let _ = codec.decode(&flipped);
    }
}

#[test]
fn the_repository_schemas_pass_the_compatibility_gate() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let report = storeflow_avro::compat::check(&root.join("schemas"), &root.join("history")).unwrap();
    let failures: Vec<String> = report.findings.iter().filter(|f| f.fails()).map(|f| f.to_string()).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(report.findings.len(), EVENT_TYPES.len());
}

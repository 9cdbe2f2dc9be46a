//! The type mapping between the contract's Avro and Arrow, both ways.
//!
//! Inputs: every field of an event type's `.avsc` becomes a column (`["null", T]` a nullable
//! one; records structs; arrays lists; enums strings; `timestamp-millis` a millisecond
//! timestamp). Outputs: the query's columns become the fields of an Avro record, so a query's
//! output has a schema the registry can check like any other.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Field, Fields, Float64Type, Int32Type, Int64Type, Schema, TimeUnit, TimestampMillisecondType};
use serde_json::{Value, json};

/// The Arrow type of an Avro type (parsed JSON of a schema or a field's `type`).
fn arrow_type(avro: &Value, names: &mut HashMap<String, DataType>) -> Result<(DataType, bool), String> {
    Ok(match avro {
        Value::String(s) => match names.get(s.as_str()).or_else(|| names.get(s.rsplit('.').next().unwrap_or(s))) {
            Some(named) => (named.clone(), false),
            None => (primitive(s, None)?, false),
        },
        Value::Array(branches) => {
            let non_null: Vec<&Value> = branches.iter().filter(|b| b.as_str() != Some("null")).collect();
            match non_null.as_slice() {
                [one] => (arrow_type(one, names)?.0, true),
                _ => return Err(format!("a union of {} types has no Arrow column; only [\"null\", T] does", non_null.len())),
            }
        }
        Value::Object(o) => {
            let ty = o.get("type").and_then(Value::as_str).unwrap_or_default();
            match ty {
                "record" => {
                    let fields = o.get("fields").and_then(Value::as_array).ok_or("a record without fields")?;
                    let t = DataType::Struct(record_fields(fields, names)?);
                    if let Some(n) = o.get("name").and_then(Value::as_str) {
                        names.insert(n.to_string(), t.clone());
                    }
                    (t, false)
                }
                "array" => {
                    let (item, nullable) = arrow_type(o.get("items").ok_or("an array without items")?, names)?;
                    (DataType::List(Arc::new(Field::new("item", item, nullable))), false)
                }
                "enum" => {
                    if let Some(n) = o.get("name").and_then(Value::as_str) {
                        names.insert(n.to_string(), DataType::Utf8);
                    }
                    (DataType::Utf8, false)
                }
                "map" => {
                    let (value, nullable) = arrow_type(o.get("values").ok_or("a map without values")?, names)?;
                    let entries = Fields::from(vec![Field::new("keys", DataType::Utf8, false), Field::new("values", value, nullable)]);
                    (DataType::Map(Arc::new(Field::new("entries", DataType::Struct(entries), false)), false), false)
                }
                other => (primitive(other, o.get("logicalType").and_then(Value::as_str))?, false),
            }
        }
        other => return Err(format!("`{other}` is not an Avro type")),
    })
}

fn primitive(name: &str, logical: Option<&str>) -> Result<DataType, String> {
    Ok(match (name, logical) {
        ("long", Some("timestamp-millis")) => DataType::Timestamp(TimeUnit::Millisecond, None),
        ("string", _) => DataType::Utf8,
        ("long", _) => DataType::Int64,
        ("int", _) => DataType::Int32,
        ("boolean", _) => DataType::Boolean,
        ("double", _) => DataType::Float64,
        ("float", _) => DataType::Float32,
        ("bytes", _) => DataType::Binary,
        (other, _) => return Err(format!("the Avro type `{other}` has no Arrow column here")),
    })
}

fn record_fields(fields: &[Value], names: &mut HashMap<String, DataType>) -> Result<Fields, String> {
    let mut out = Vec::new();
    for f in fields {
        let name = f.get("name").and_then(Value::as_str).ok_or("a field without a name")?;
        let (ty, nullable) = arrow_type(f.get("type").ok_or("a field without a type")?, names).map_err(|e| format!("field `{name}`: {e}"))?;
        out.push(Field::new(name, ty, nullable));
    }
    Ok(out.into())
}

/// The columns of an event type: its schema's fields.
pub fn event_schema(avsc: &str) -> Result<Schema, String> {
    let v: Value = serde_json::from_str(avsc).map_err(|e| e.to_string())?;
    let fields = v.get("fields").and_then(Value::as_array).ok_or("the schema is not a record")?;
    Ok(Schema::new(record_fields(fields, &mut HashMap::new())?))
}

/// How an output column is written: its Avro type and how to read a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutType {
    /// `string`.
    Str,
    /// `long`.
    Long,
    /// `int`.
    Int,
    /// `double`.
    Double,
    /// `boolean`.
    Bool,
    /// `long` with `timestamp-millis`.
    Millis,
}

impl OutType {
    /// The output type of an Arrow column, or why it has none.
    pub fn of(name: &str, t: &DataType) -> Result<OutType, String> {
        Ok(match t {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => OutType::Str,
            DataType::Int64 | DataType::UInt32 | DataType::UInt64 => OutType::Long,
            DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::UInt8 | DataType::UInt16 => OutType::Int,
            DataType::Float16 | DataType::Float32 | DataType::Float64 | DataType::Decimal128(..) | DataType::Decimal256(..) => OutType::Double,
            DataType::Boolean => OutType::Bool,
            DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 => OutType::Millis,
            other => {
                return Err(format!(
                    "the output column `{name}` is of type {other}, which has no Avro type here; CAST it to BIGINT, DOUBLE, VARCHAR, BOOLEAN or TIMESTAMP"
                ));
            }
        })
    }

    /// The Arrow type a column is cast to before its values are read.
    fn cast_to(self) -> DataType {
        match self {
            OutType::Str => DataType::Utf8,
            OutType::Long => DataType::Int64,
            OutType::Int => DataType::Int32,
            OutType::Double => DataType::Float64,
            OutType::Bool => DataType::Boolean,
            OutType::Millis => DataType::Timestamp(TimeUnit::Millisecond, None),
        }
    }

    fn avro(self) -> Value {
        match self {
            OutType::Str => json!("string"),
            OutType::Long => json!("long"),
            OutType::Int => json!("int"),
            OutType::Double => json!("double"),
            OutType::Bool => json!("boolean"),
            OutType::Millis => json!({"type": "long", "logicalType": "timestamp-millis"}),
        }
    }
}

/// One output column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutColumn {
    /// Its name (an Avro field name).
    pub name: String,
    /// Its type.
    pub ty: OutType,
    /// Whether it may be null (then `["null", T]` with default null).
    pub nullable: bool,
}

/// The output columns of a query's Arrow schema, with `event_id` and `occurred_at` first
/// (added when the query does not select them), as every event of the contract has.
pub fn out_columns(schema: &Schema) -> Result<Vec<OutColumn>, String> {
    let mut cols = Vec::new();
    let has = |n: &str| schema.fields().iter().any(|f| f.name() == n);
    if !has("event_id") {
        cols.push(OutColumn { name: "event_id".into(), ty: OutType::Str, nullable: false });
    }
    if !has("occurred_at") {
        cols.push(OutColumn { name: "occurred_at".into(), ty: OutType::Millis, nullable: false });
    }
    for f in schema.fields() {
        let name = f.name();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(format!("the output column `{name}` is not an Avro field name; name it with `AS <name>` (letters, digits, `_`)"));
        }
        cols.push(OutColumn { name: name.clone(), ty: OutType::of(name, f.data_type())?, nullable: f.is_nullable() });
    }
    Ok(cols)
}

/// The Avro schema (JSON) of the output records.
pub fn out_schema(record: &str, doc: &str, cols: &[OutColumn]) -> String {
    let fields: Vec<Value> = cols
        .iter()
        .map(|c| {
            if c.nullable {
                json!({"name": c.name, "type": ["null", c.ty.avro()], "default": null})
            } else {
                json!({"name": c.name, "type": c.ty.avro()})
            }
        })
        .collect();
    json!({"type": "record", "name": record, "namespace": "storeflow.sql", "doc": doc, "fields": fields}).to_string()
}

/// A value of an output row.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    /// Null.
    Null,
    /// A string.
    Str(String),
    /// A long or a timestamp (ms).
    Long(i64),
    /// An int.
    Int(i32),
    /// A double.
    Double(f64),
    /// A boolean.
    Bool(bool),
}

impl Cell {
    /// As a key part.
    pub fn key_part(&self) -> String {
        match self {
            Cell::Null => String::new(),
            Cell::Str(s) => s.clone(),
            Cell::Long(v) => v.to_string(),
            Cell::Int(v) => v.to_string(),
            Cell::Double(v) => v.to_string(),
            Cell::Bool(v) => v.to_string(),
        }
    }

    /// As JSON (for `storeflow sql run`).
    pub fn to_json(&self) -> Value {
        match self {
            Cell::Null => Value::Null,
            Cell::Str(s) => json!(s),
            Cell::Long(v) => json!(v),
            Cell::Int(v) => json!(v),
            Cell::Double(v) => json!(v),
            Cell::Bool(v) => json!(v),
        }
    }

    /// As an Avro value of a column of `nullable`-ness.
    pub fn to_avro(&self, ty: OutType, nullable: bool) -> apache_avro::types::Value {
        use apache_avro::types::Value as A;
        let v = match self {
            Cell::Null => return A::Union(0, Box::new(A::Null)),
            Cell::Str(s) => A::String(s.clone()),
            Cell::Long(v) if ty == OutType::Millis => A::TimestampMillis(*v),
            Cell::Long(v) => A::Long(*v),
            Cell::Int(v) => A::Int(*v),
            Cell::Double(v) => A::Double(*v),
            Cell::Bool(v) => A::Boolean(*v),
        };
        if nullable { A::Union(1, Box::new(v)) } else { v }
    }
}

/// The rows of a column of `batch`, read as `ty`.
pub fn cells(column: &ArrayRef, ty: OutType) -> Result<Vec<Cell>, String> {
    let cast = arrow::compute::cast(column, &ty.cast_to()).map_err(|e| e.to_string())?;
    let n = cast.len();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        if cast.is_null(i) {
            out.push(Cell::Null);
            continue;
        }
        out.push(match ty {
            OutType::Str => Cell::Str(cast.as_string::<i32>().value(i).to_string()),
            OutType::Long => Cell::Long(cast.as_primitive::<Int64Type>().value(i)),
            OutType::Int => Cell::Int(cast.as_primitive::<Int32Type>().value(i)),
            OutType::Double => Cell::Double(cast.as_primitive::<Float64Type>().value(i)),
            OutType::Bool => Cell::Bool(cast.as_boolean().value(i)),
            OutType::Millis => Cell::Long(cast.as_primitive::<TimestampMillisecondType>().value(i)),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_placed_has_nullable_unions_timestamps_and_a_list_of_line_structs() {
        let t = storeflow_avro::EventType::by_name("OrderPlaced").unwrap();
        let s = event_schema(t.schema).unwrap();
        let at = s.field_with_name("occurred_at").unwrap();
        assert_eq!(at.data_type(), &DataType::Timestamp(TimeUnit::Millisecond, None));
        assert!(!at.is_nullable());
        assert!(s.field_with_name("session_id").unwrap().is_nullable());
        let DataType::List(item) = s.field_with_name("items").unwrap().data_type() else { panic!("items is a list") };
        let DataType::Struct(line) = item.data_type() else { panic!("a line is a struct") };
        assert!(line.iter().any(|f| f.name() == "sku" && f.data_type() == &DataType::Utf8));
    }

    #[test]
    fn every_contract_type_has_columns() {
        for t in storeflow_avro::EVENT_TYPES {
            event_schema(t.schema).unwrap_or_else(|e| panic!("{}: {e}", t.name));
        }
    }

    #[test]
    fn output_columns_gain_an_event_id_and_a_time_and_refuse_unmapped_types() {
        let s = Schema::new(vec![Field::new("n", DataType::Int64, true), Field::new("category", DataType::Utf8View, false)]);
        let cols = out_columns(&s).unwrap();
        assert_eq!(cols.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["event_id", "occurred_at", "n", "category"]);
        let schema = out_schema("X", "doc", &cols);
        apache_avro::Schema::parse_str(&schema).unwrap();
        let bad = Schema::new(vec![Field::new("l", DataType::List(Arc::new(Field::new("item", DataType::Int64, true))), true)]);
        assert!(out_columns(&bad).unwrap_err().contains("CAST it"));
    }
}

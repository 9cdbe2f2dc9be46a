//! storeflow's HTTP schema registry client (`HttpRegistry`, on schema_registry_converter)
//! against the Confluent REST surface of the embedded registry. (No Confluent-compatible
//! registry can be installed on the development machines; see docs/SERVICES.md.)

use std::sync::Arc;

use storeflow_avro::json::{JsonOptions, event_from_json, example};
use storeflow_avro::{Codec, EVENT_TYPES, EmbeddedRegistry, EventType, HttpRegistry, SchemaRegistry};

/// Serves the registry on a free loopback port from a background runtime; returns its URL.
fn serve() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let registry = Arc::new(EmbeddedRegistry::new().expect("registry"));
            axum::serve(listener, storeflow_api::registry::router(registry)).await.expect("serve");
        });
    });
    url
}

fn example_event(name: &str) -> storeflow_avro::Event {
    event_from_json(example(EventType::by_name(name).unwrap()), JsonOptions::default()).unwrap()
}

#[test]
fn the_codec_registers_every_schema_over_http_and_round_trips_events() {
    let url = serve();
    let codec = Codec::new(Arc::new(HttpRegistry::new(&url).unwrap())).expect("register over HTTP");
    let embedded = Codec::embedded().unwrap();
    for t in EVENT_TYPES {
        assert_eq!(codec.schema_id(t), embedded.schema_id(t), "{}: the server assigned another id", t.name);
    }
    let e = example_event("OrderPlaced");
    let bytes = codec.encode(&e).unwrap();
    // A second client, with an empty cache, fetches the writer schema by id to decode.
    let other = HttpRegistry::new(&url).unwrap();
    let id = u32::from_be_bytes(bytes[1..5].try_into().unwrap());
    let schema = other.schema_by_id(id).expect("fetch by id");
    assert!(schema.contains("\"OrderPlaced\""));
    assert_eq!(codec.decode(&bytes).unwrap(), e);
}

#[test]
fn the_registry_refuses_an_incompatible_version_and_accepts_a_compatible_one() {
    let url = serve();
    let client = HttpRegistry::new(&url).unwrap();
    let t = EventType::by_name("OrderPlaced").unwrap();
    let mut v: serde_json::Value = serde_json::from_str(t.schema).unwrap();
    v["fields"].as_array_mut().unwrap().push(serde_json::json!({"name": "coupon", "type": "string", "doc": "c"}));
    let err = client.register(&t.subject(), &v.to_string()).expect_err("an incompatible schema was registered");
    assert!(err.to_string().contains("incompatible"), "{err}");
    v["fields"].as_array_mut().unwrap().pop();
    v["fields"].as_array_mut().unwrap().push(serde_json::json!({"name": "coupon", "type": ["null", "string"], "default": null, "doc": "c"}));
    let id = client.register(&t.subject(), &v.to_string()).expect("a compatible version registers");
    assert_ne!(id, Codec::embedded().unwrap().schema_id(t));
}

#[test]
fn an_unknown_schema_id_is_a_clear_error() {
    let url = serve();
    let client = HttpRegistry::new(&url).unwrap();
    let err = client.schema_by_id(7).expect_err("id 7 does not exist");
    assert!(err.to_string().contains("schema id 7"), "{err}");
}

//! Avro decode: our typed fast path against apache-avro's generic `Value` path, on the same
//! bytes, in the same run. `cargo bench -p storeflow-bench --bench avro_decode`
//!
//! Variants, per record:
//! - `generic_from_avro_datum`: the baseline the issue names — a `GenericDatumReader` built
//!   for the call (what `from_avro_datum` does), `read_value` → `Value`, `from_value` → struct;
//! - `generic_cached_reader`: the same with the reader built once;
//! - `apache_schema_aware_serde`: apache-avro's serde deserializer with a cached reader;
//! - `storeflow_codec`: `Codec::decode` (header, schema-id lookup, serde_avro_fast → struct).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use storeflow_avro::json::{JsonOptions, event_from_json, example};
use storeflow_avro::{Codec, Event, EventType, OrderPlaced, ProductViewed};

fn bench_type<T: serde::de::DeserializeOwned>(c: &mut Criterion, name: &str, event: &Event) {
    let codec = Codec::embedded().expect("codec");
    let bytes = codec.encode(event).expect("encode");
    let datum = &bytes[5..];
    let schema = apache_avro::Schema::parse_str(EventType::by_name(name).expect("type").schema).expect("schema");
    let mut g = c.benchmark_group(format!("decode/{name}"));
    g.throughput(Throughput::Elements(1));

    g.bench_function("generic_from_avro_datum", |b| {
        b.iter(|| {
            let reader = apache_avro::reader::datum::GenericDatumReader::builder(&schema).build().expect("reader");
            let v = reader.read_value(&mut black_box(datum)).expect("read");
            black_box(apache_avro::from_value::<T>(&v).expect("typed"))
        })
    });
    let reader = apache_avro::reader::datum::GenericDatumReader::builder(&schema).build().expect("reader");
    g.bench_function("generic_cached_reader", |b| {
        b.iter(|| {
            let v = reader.read_value(&mut black_box(datum)).expect("read");
            black_box(apache_avro::from_value::<T>(&v).expect("typed"))
        })
    });
    g.bench_function("apache_schema_aware_serde", |b| {
        b.iter(|| black_box(reader.read_deser::<T>(&mut black_box(datum)).expect("read")))
    });
    g.bench_function("storeflow_codec", |b| b.iter(|| black_box(codec.decode(black_box(&bytes)).expect("decode"))));
    g.finish();
}

fn decode(c: &mut Criterion) {
    let ex = |n: &str| event_from_json(example(EventType::by_name(n).expect("type")), JsonOptions::default()).expect("example");
    bench_type::<OrderPlaced>(c, "OrderPlaced", &ex("OrderPlaced"));
    bench_type::<ProductViewed>(c, "ProductViewed", &ex("ProductViewed"));
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3)).warm_up_time(std::time::Duration::from_secs(1));
    targets = decode
}
criterion_main!(benches);

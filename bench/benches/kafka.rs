//! Produce and consume throughput through storeflow's Kafka backend against plain rdkafka on
//! the same broker, topic shape and records, in the same run.
//!
//! `STOREFLOW_BENCH_KAFKA=127.0.0.1:19092 cargo bench -p storeflow-bench --bench kafka`
//! (start the broker with `scripts/services up kafka`). Records: 16-byte keys, 100-byte
//! values, 4 partitions, 200,000 records per measurement, best of 3 runs.

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer as _, ThreadedProducer};
use storeflow_ingest::{ConsumerConfig, KafkaLog, KafkaSettings, Log, ProduceRecord, TopicPartition, TopicSpec};

const N: usize = 200_000;

fn key(i: usize) -> String {
    format!("key-{i:012}")
}

fn best<F: FnMut() -> Duration>(mut f: F) -> Duration {
    (0..3).map(|_| f()).min().expect("three runs")
}

fn rate(d: Duration) -> f64 {
    N as f64 / d.as_secs_f64()
}

fn main() {
    let Ok(brokers) = std::env::var("STOREFLOW_BENCH_KAFKA") else {
        eprintln!("set STOREFLOW_BENCH_KAFKA=host:port (scripts/services up kafka) to run this benchmark");
        return;
    };
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return; // `cargo test --benches` runs nothing here
    }
    let log = KafkaLog::connect(KafkaSettings::new(&brokers)).expect("connect");
    let value = vec![b'x'; 100];

    // Produce: storeflow's producer — every record sent, every acknowledgement awaited at
    // the end (the plain client flushes at the end likewise).
    let produce_ours = best(|| {
        let topic = format!("bench.ours.{}", uuid::Uuid::new_v4().simple());
        log.create_topics(&[TopicSpec::new(&topic, 4)]).expect("topic");
        let p = log.producer().expect("producer");
        let t = Instant::now();
        let mut acks = Vec::with_capacity(N);
        for i in 0..N {
            acks.push(p.send(ProduceRecord::new(&topic, key(i), value.clone())).expect("send"));
        }
        for a in acks {
            a.wait().expect("ack");
        }
        t.elapsed()
    });
    // Produce: plain rdkafka ThreadedProducer with the same settings, flush at the end.
    let produce_plain = best(|| {
        let topic = format!("bench.plain.{}", uuid::Uuid::new_v4().simple());
        log.create_topics(&[TopicSpec::new(&topic, 4)]).expect("topic");
        let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", "5")
            .set("partitioner", "murmur2_random")
            .create()
            .expect("producer");
        let t = Instant::now();
        for i in 0..N {
            let k = key(i);
            let mut rec = BaseRecord::to(&topic).key(k.as_bytes()).payload(value.as_slice());
            loop {
                match p.send(rec) {
                    Ok(()) => break,
                    Err((_, back)) => {
                        rec = back;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
        }
        p.flush(Duration::from_secs(60)).expect("flush");
        t.elapsed()
    });

    // A topic to consume from.
    let topic = format!("bench.consume.{}", uuid::Uuid::new_v4().simple());
    log.create_topics(&[TopicSpec::new(&topic, 4)]).expect("topic");
    let p = log.producer().expect("producer");
    for chunk in (0..N).collect::<Vec<_>>().chunks(5000) {
        for a in p.send_batch(chunk.iter().map(|&i| ProduceRecord::new(&topic, key(i), value.clone())).collect()).expect("send") {
            a.wait().expect("ack");
        }
    }
    let consume_plain = best(|| {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", format!("bench-{}", uuid::Uuid::new_v4()))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .create()
            .expect("consumer");
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in 0..4 {
            tpl.add_partition_offset(&topic, p, rdkafka::Offset::Beginning).expect("tpl");
        }
        c.assign(&tpl).expect("assign");
        let t = Instant::now();
        let mut n = 0;
        let mut bytes = 0usize;
        // The same loop shape as storeflow's poll: wait for the first record, then drain.
        let mut wait = Duration::from_secs(5);
        while n < N {
            match c.poll(wait) {
                Some(Ok(m)) => {
                    use rdkafka::Message as _;
                    bytes += m.payload().map_or(0, <[u8]>::len);
                    n += 1;
                    wait = Duration::ZERO;
                }
                _ => wait = Duration::from_secs(5),
            }
        }
        std::hint::black_box(bytes);
        t.elapsed()
    });

    let consume_ours = best(|| {
        let mut c = log.consumer(ConsumerConfig::new(&format!("bench-{}", uuid::Uuid::new_v4())), None).expect("consumer");
        c.assign(&(0..4).map(|p| (TopicPartition::new(&topic, p), 0)).collect::<Vec<_>>()).expect("assign");
        let t = Instant::now();
        let mut n = 0;
        while n < N {
            n += c.poll(10_000, Duration::from_secs(5)).expect("poll").len();
        }
        let d = t.elapsed();
        c.close().expect("close");
        d
    });
    println!("Kafka at {brokers}, {N} records of 16 + 100 bytes, 4 partitions, best of 3:");
    println!("{:<34} {:>14} {:>14} {:>7}", "", "storeflow", "plain rdkafka", "ratio");
    println!(
        "{:<34} {:>12.0}/s {:>12.0}/s {:>7.2}",
        "produce (idempotent, acks=all)",
        rate(produce_ours),
        rate(produce_plain),
        rate(produce_ours) / rate(produce_plain)
    );
    println!(
        "{:<34} {:>12.0}/s {:>12.0}/s {:>7.2}",
        "consume (read_committed)",
        rate(consume_ours),
        rate(consume_plain),
        rate(consume_ours) / rate(consume_plain)
    );
}

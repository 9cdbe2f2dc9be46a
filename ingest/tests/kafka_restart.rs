//! A Kafka broker stopped and restarted in the middle of a produce loop loses no
//! acknowledged record (idempotent producer, acks=all). Alone in its test binary because
//! it restarts the shared test broker (`scripts/services restart kafka`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use storeflow_ingest::contract::service_address;
use storeflow_ingest::{ConsumerConfig, KafkaLog, KafkaSettings, Log, ProduceRecord, TopicPartition, TopicSpec};

#[test]
fn a_broker_restarted_during_a_produce_loop_loses_no_acknowledged_record() {
    let Some(brokers) = service_address("STOREFLOW_TEST_KAFKA", "Apache Kafka") else { return };
    let log = Arc::new(KafkaLog::connect(KafkaSettings::new(&brokers)).expect("connect"));
    let topic = format!("test.restart.{}", uuid::Uuid::new_v4().simple());
    log.create_topics(&[TopicSpec::new(&topic, 3)]).expect("topic");

    let acked: Arc<Mutex<Vec<(u32, u64, String)>>> = Arc::default();
    let failed = Arc::new(Mutex::new(0u64));
    let stop = Arc::new(AtomicBool::new(false));
    let producer_thread = {
        let (log, topic, acked, failed, stop) = (log.clone(), topic.clone(), acked.clone(), failed.clone(), stop.clone());
        std::thread::spawn(move || {
            let p = log.producer().expect("producer");
            let mut i = 0u64;
            let mut pending = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let v = format!("r{i}");
                match p.send(ProduceRecord::new(&topic, format!("k{}", i % 17), v.clone())) {
                    Ok(f) => pending.push((v, f)),
                    Err(_) => *failed.lock().unwrap() += 1,
                }
                i += 1;
                if pending.len() >= 50 {
                    for (v, f) in pending.drain(..) {
                        match f.wait() {
                            Ok(d) => acked.lock().unwrap().push((d.partition, d.offset, v)),
                            Err(_) => *failed.lock().unwrap() += 1,
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            for (v, f) in pending {
                if let Ok(d) = f.wait() {
                    acked.lock().unwrap().push((d.partition, d.offset, v));
                }
            }
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    let before = acked.lock().unwrap().len();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/services");
    let out = std::process::Command::new("bash").arg(&script).args(["restart", "kafka"]).output().expect("run scripts/services");
    assert!(out.status.success(), "restart failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    producer_thread.join().expect("producer thread");
    let acked = acked.lock().unwrap().clone();
    assert!(before > 50, "only {before} records acknowledged before the restart");
    assert!(acked.len() > before + 50, "nothing was acknowledged after the restart ({} vs {before})", acked.len());

    // Read everything back.
    let info = log.describe_topics().unwrap().into_iter().find(|t| t.name == topic).unwrap();
    let mut c = log.consumer(ConsumerConfig::new(&format!("check-{}", uuid::Uuid::new_v4())), None).unwrap();
    c.assign(&info.partitions.iter().map(|p| (TopicPartition::new(&topic, p.partition), p.start)).collect::<Vec<_>>()).unwrap();
    let mut seen: HashMap<(u32, u64), String> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < info.records() as usize && Instant::now() < deadline {
        for r in c.poll(10_000, Duration::from_millis(500)).unwrap() {
            seen.insert((r.partition, r.offset), String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned());
        }
    }
    c.close().unwrap();
    for (p, o, v) in &acked {
        assert_eq!(seen.get(&(*p, *o)), Some(v), "acknowledged {v} at {p}/{o} is missing after the restart");
    }
    let mut values: Vec<&String> = seen.values().collect();
    values.sort();
    let n = values.len();
    values.dedup();
    assert_eq!(values.len(), n, "the idempotent producer wrote duplicates");
    eprintln!("{} acknowledged ({before} before the restart), {} failed sends, {} records on the topic", acked.len(), failed.lock().unwrap(), n);
}

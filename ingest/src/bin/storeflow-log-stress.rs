//! Appends to an embedded log forever and prints every acknowledgement, so a test (or an
//! operator checking a disk) can kill it at any instant and verify that everything it
//! acknowledged survived.
//!
//! Usage: `storeflow-log-stress <data-dir> <run-id>`
//!
//! Output lines: `ack <partition> <offset> <value>` for each acknowledged plain record on
//! topic `stress`, and `txn <id> <records>` for each committed transaction on `stress.tx`
//! (its records carry values `<id>/<i>/<records>`).

use std::io::Write;
use std::time::Duration;

use storeflow_ingest::{EmbeddedConfig, EmbeddedLog, FsyncPolicy, Log, ProduceRecord, TopicSpec};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: storeflow-log-stress <data-dir> <run-id>");
        std::process::exit(2);
    }
    let (dir, run) = (&args[1], &args[2]);
    let config = EmbeddedConfig {
        segment_bytes: 64 * 1024,
        fsync: FsyncPolicy::Never,
        ..EmbeddedConfig::default()
    };
    let log = EmbeddedLog::open_with(dir, config).expect("open the log");
    log.create_topics(&[TopicSpec::new("stress", 3), TopicSpec::new("stress.tx", 2)])
        .expect("create topics");
    let producer = log.producer().expect("producer");
    let mut tx = log.transactional_producer(&format!("stress-{run}")).expect("txn producer");
    let stdout = std::io::stdout();
    let mut seq = 0u64;
    let mut txn = 0u64;
    loop {
        let n = 1 + (seq % 37) as usize;
        let batch: Vec<ProduceRecord> = (0..n)
            .map(|i| {
                let v = format!("r{run}-{}", seq + i as u64);
                ProduceRecord::new("stress", format!("k{}", (seq + i as u64) % 11), v.clone().into_bytes())
                    .header(storeflow_ingest::Header::text("v", v))
            })
            .collect();
        let acks = producer.send_batch(batch).expect("append");
        let mut out = stdout.lock();
        for (i, a) in acks.into_iter().enumerate() {
            let d = a.wait().expect("ack");
            writeln!(out, "ack {} {} r{run}-{}", d.partition, d.offset, seq + i as u64).expect("stdout");
        }
        out.flush().expect("stdout");
        drop(out);
        seq += n as u64;

        let k = 1 + (txn % 13) as usize;
        let id = format!("r{run}-t{txn}");
        tx.begin().expect("begin");
        for i in 0..k {
            tx.send(ProduceRecord::new("stress.tx", format!("k{i}"), format!("{id}/{i}/{k}")))
                .expect("send");
        }
        tx.commit().expect("commit");
        let mut out = stdout.lock();
        writeln!(out, "txn {id} {k}").expect("stdout");
        out.flush().expect("stdout");
        txn += 1;
        if txn % 64 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

//! `storeflow dlq`: dead letters, readable, and replayable.

use storeflow_processors::dlq;

use crate::backends::Backends;

/// `storeflow dlq list TOPIC`.
pub fn list(b: &Backends, topic: &str, limit: usize) -> anyhow::Result<()> {
    let letters = dlq::list(&*b.log, topic)?;
    let name = dlq::dlq_name(topic);
    if letters.is_empty() {
        println!("{name} is empty: no record of {} was given up on.", name.trim_end_matches(".dlq"));
        return Ok(());
    }
    println!("{} dead letters on {name}{}:", letters.len(), if letters.len() > limit { format!(" (the newest {limit})") } else { String::new() });
    for l in letters.iter().skip(letters.len().saturating_sub(limit)) {
        let what = match l.record.value.as_deref().map(|v| b.codec.decode(v)) {
            Some(Ok(e)) => format!("{} {}", e.name(), serde_json::to_string(&e.to_json()).unwrap_or_default()),
            Some(Err(_)) => format!("undecodable value ({} bytes)", l.record.value.as_ref().map_or(0, |v| v.len())),
            None => "no value".to_string(),
        };
        println!(
            "\n#{}  from {}/{}@{}  by {}  at {}\n  reason: {}\n  record: {}",
            l.dlq_offset,
            l.topic,
            l.partition,
            l.offset,
            l.processor,
            storeflow_avro::Timestamp(l.time),
            l.reason,
            what
        );
    }
    println!("\nReplay them to {} with: storeflow dlq replay {}", name.trim_end_matches(".dlq"), name);
    Ok(())
}

/// `storeflow dlq replay TOPIC`.
pub fn replay(b: &Backends, topic: &str) -> anyhow::Result<()> {
    let r = dlq::replay(&*b.log, topic)?;
    println!(
        "Replayed {} dead letters of {} to their original topics{}.",
        r.replayed,
        dlq::dlq_name(topic),
        if r.skipped > 0 { format!(" ({} without an original topic were left alone)", r.skipped) } else { String::new() }
    );
    Ok(())
}

//! The test driver runs processors without a broker: chains, state, timers, expiry, DLQ.

use serde::{Deserialize, Serialize};
use storeflow_processors::testing::{COUNTS, Count, LAST, Note, Relay, Route};
use storeflow_processors::{Ctx, DynProcessor, Flow, Input, ProcessError, Processor, Store, TestDriver, Timer};

fn note(key: &str, n: u64, time: i64) -> Note {
    Note { key: key.into(), n, time, topic: "in".into() }
}

#[test]
fn a_chain_feeds_one_processors_outputs_to_the_next() {
    let procs: Vec<Box<dyn DynProcessor>> = vec![
        Box::new(Count::new(Route { input: "in".into(), output: "mid".into() })),
        Box::new(Relay::new(Route { input: "mid".into(), output: "out".into() })),
    ];
    let mut d = TestDriver::chain(procs);
    for (i, k) in ["a", "b", "a", "a"].iter().enumerate() {
        d.pipe(note(k, 0, i as i64));
    }
    let out: Vec<(String, u64)> = d.outputs::<Note>("out").into_iter().map(|n| (n.key, n.n)).collect();
    assert_eq!(out, vec![("a".into(), 1), ("b".into(), 1), ("a".into(), 2), ("a".into(), 3)]);
    assert_eq!(d.store("count", COUNTS, "a"), Some(3));
    assert_eq!(d.store("relay", LAST, "b"), Some(1));
    assert_eq!(d.store_scan("count", COUNTS, "").len(), 2);
}

#[test]
fn a_poison_record_is_dead_lettered_with_its_reason_and_changes_nothing() {
    let mut d = TestDriver::new(Count::new(Route { input: "in".into(), output: "out".into() }));
    d.pipe(note("a", 1, 1));
    d.pipe(note("a", u64::MAX, 2));
    d.pipe_raw("in", "a", b"{not json", 3);
    d.pipe(note("a", 1, 4));
    let dlq = d.dlq("in");
    assert_eq!(dlq.len(), 2);
    assert!(dlq[0].reason.contains("poison") && dlq[0].processor == "count", "{dlq:?}");
    assert!(dlq[1].reason.contains("cannot decode"), "{dlq:?}");
    assert_eq!(d.store("count", COUNTS, "a"), Some(2));
}

/// Remembers each key for 1 s of stream time, and says so when a timer fires.
struct Remember;

#[derive(Default, Deserialize)]
struct NoConfig {}

#[derive(Serialize, Deserialize)]
struct Seen(u64);

const SEEN: Store<Seen> = Store::new("seen");

impl Processor for Remember {
    const NAME: &'static str = "remember";
    type Config = NoConfig;
    type In = Note;
    type Out = Note;
    fn new(_: NoConfig) -> Self {
        Remember
    }
    fn flow(&self) -> Flow {
        Flow::new().group(&["in"]).timers().emits(&["expired"]).build()
    }
    fn stores(&self) -> &'static [&'static str] {
        &[SEEN.name]
    }
    fn process(&mut self, input: &Input<Note>, ctx: &mut Ctx<'_, Note>) -> Result<(), ProcessError> {
        let t = ctx.time();
        ctx.put_until(SEEN, &input.value.key, &Seen(input.value.n), t + 1000)?;
        ctx.set_timer(t + 1000, &input.value.key);
        Ok(())
    }
    fn on_timer(&mut self, timer: &Timer, ctx: &mut Ctx<'_, Note>) -> Result<(), ProcessError> {
        ctx.emit(Note { key: timer.key.clone(), n: timer.at as u64, time: timer.at, topic: "expired".into() });
        Ok(())
    }
}

#[test]
fn timers_fire_when_stream_time_reaches_them_and_expired_state_disappears() {
    let mut d = TestDriver::new(Remember).with_partitions(1);
    d.pipe(note("a", 7, 10_000));
    d.pipe(note("b", 8, 10_500));
    assert!(d.outputs::<Note>("expired").is_empty(), "nothing is due yet");
    assert!(d.store("remember", SEEN, "a").is_some());
    // Stream time passes 11 000: a's timer fires (before the record that passes it) and a's
    // entry expires; b's (11 500) do not.
    d.pipe(note("c", 9, 11_001));
    let fired: Vec<String> = d.outputs::<Note>("expired").into_iter().map(|n| n.key).collect();
    assert_eq!(fired, vec!["a"]);
    assert!(d.store("remember", SEEN, "a").is_none(), "a expired");
    assert!(d.store("remember", SEEN, "b").is_some());
    // Time passes with no traffic.
    d.advance_time(20_000);
    let fired: Vec<String> = d.outputs::<Note>("expired").into_iter().map(|n| n.key).collect();
    assert_eq!(fired, vec!["a", "b", "c"]);
    assert!(d.store_scan("remember", SEEN, "").is_empty(), "everything expired");
}

#[test]
fn rewriting_a_key_with_a_later_expiry_keeps_one_expiry_entry_and_the_latest_expiry_wins() {
    let mut d = TestDriver::new(Remember).with_partitions(1);
    for t in (10_000..10_900).step_by(100) {
        d.pipe(note("a", 1, t));
    }
    assert_eq!(d.store_size("remember", SEEN.name).0, 1);
    assert_eq!(d.store_size("remember", "__expiry").0, 1, "the replaced expiries' index entries are gone");
    // The first write's expiry (11 000) has passed; the last one's (11 800) has not.
    d.advance_time(11_500);
    assert!(d.store("remember", SEEN, "a").is_some(), "the latest expiry counts");
    d.advance_time(11_800);
    assert!(d.store("remember", SEEN, "a").is_none());
    assert_eq!(d.store_size("remember", "__expiry"), (0, 0), "nothing is left behind");
}

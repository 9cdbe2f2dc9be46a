//! The simulator and the wall clock: `not_after` is never crossed, a paused simulator
//! resumes exactly where it stopped, and a run can be placed to end just before now.

use storeflow_avro::{Event, Timestamp};
use storeflow_sim::{SimConfig, Simulator};

const START: i64 = 1_764_000_000_000;

fn config(not_after: Option<i64>) -> SimConfig {
    SimConfig { seed: 21, start: Timestamp(START), fraud_ring_share: 0.02, not_after: not_after.map(Timestamp), ..Default::default() }
}

#[test]
fn not_after_is_never_crossed_and_the_simulator_says_when_it_resumes() {
    let bound = START + 20_000;
    let mut sim = Simulator::new(config(Some(bound)));
    let first: Vec<Event> = sim.by_ref().collect();
    assert!(first.len() > 10_000, "only {} events in 20 simulated seconds", first.len());
    assert!(first.iter().all(|e| e.occurred_at().millis() <= bound));
    let due = sim.next_time().expect("the simulation goes on");
    assert!(due.millis() > bound, "paused although the next event ({due}) is within the bound");
    assert!(sim.next().is_none(), "a paused simulator stays paused");

    sim.set_not_after(Some(Timestamp(bound + 10_000)));
    let second: Vec<Event> = sim.by_ref().collect();
    assert!(!second.is_empty());
    assert_eq!(second[0].occurred_at(), due, "it resumes with the event it said was due");
    assert!(second.iter().all(|e| e.occurred_at().millis() > bound && e.occurred_at().millis() <= bound + 10_000));
    assert!(sim.clock().millis() <= bound + 10_000);
}

#[test]
fn a_bound_before_the_start_holds_back_even_the_setup() {
    let mut sim = Simulator::new(config(Some(START - 1)));
    assert!(sim.next().is_none());
    assert_eq!(sim.next_time(), Some(Timestamp(START)));
    sim.set_not_after(None);
    assert!(sim.next().is_some());
}

#[test]
fn a_paused_simulator_gives_the_same_events_as_an_unpaused_one() {
    let end = START + 60_000;
    let unpaused: Vec<Event> = Simulator::new(config(None)).take_while(|e| e.occurred_at().millis() <= end).collect();
    let mut sim = Simulator::new(config(Some(START)));
    let mut paused = Vec::new();
    let mut bound = START;
    while bound < end {
        paused.extend(sim.by_ref());
        bound = (bound + 7_333).min(end);
        sim.set_not_after(Some(Timestamp(bound)));
    }
    paused.extend(sim.by_ref());
    assert_eq!(paused.len(), unpaused.len());
    assert!(paused == unpaused, "pausing changed the events");
}

#[test]
fn a_run_placed_to_end_at_a_moment_ends_just_before_it() {
    let end = Timestamp(START + 3_600_000);
    for events in [20_000u64, 200_000] {
        let config = SimConfig { seed: 5, ..SimConfig::default() }.ending_at(end, events);
        assert_eq!(config.not_after, Some(end));
        assert!(config.start < end);
        let span = end.millis() - config.start.millis();
        let taken: Vec<Event> = Simulator::new(config).take(events as usize).collect();
        assert_eq!(taken.len() as u64, events, "the run reached the bound before its {events} events");
        let last = taken.last().expect("events").occurred_at().millis();
        assert!(last <= end.millis());
        assert!(end.millis() - last < span / 5, "{events} events ended {} ms before the end of a {span} ms span", end.millis() - last);
    }
}

#[test]
fn a_run_ending_near_now_is_never_in_the_future() {
    let before = Timestamp::now();
    let config = SimConfig::ending_near_now(20_000);
    let after = Timestamp::now();
    let bound = config.not_after.expect("bounded");
    assert!(before <= bound && bound <= after);
    assert!(config.start < before);
    let last = Simulator::new(config).take(20_000).last().expect("events").occurred_at();
    assert!(last <= bound);
}

#[test]
fn a_paced_run_can_drive_the_simulator_from_another_thread() {
    let mut sim = Simulator::new(config(Some(START + 5_000)));
    let paced = std::thread::spawn(move || {
        let mut taken = Vec::new();
        for bound in [START + 5_000, START + 10_000] {
            sim.set_not_after(Some(Timestamp(bound)));
            taken.extend(sim.by_ref().map(|e| e.occurred_at().millis()));
        }
        taken
    })
    .join()
    .expect("the paced thread ends");
    assert!(paced.iter().all(|t| *t <= START + 10_000));
    assert!(paced.last().is_some_and(|t| *t > START + 5_000));
}

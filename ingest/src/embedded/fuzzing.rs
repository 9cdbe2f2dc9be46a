//! The embedded log's readers on bytes in memory, with the properties they must keep on any
//! input: what the fuzz targets in `fuzz/` call and what this crate's
//! regression tests replay. Each function panics exactly when a property breaks.
//!
//! Random bytes almost never carry a valid CRC-32C, so each reader is also fed the input with
//! a correct length and CRC put in front ("sealed"): that is what reaches the field parsers
//! behind the checksum — a frame written by a bug, or damage the CRC cannot see.

use bytes::Bytes;

use super::{frame, journal};

/// The record frame reader: the input as it is when its first byte is even, else the rest
/// sealed as a frame body.
pub fn frame(input: &[u8]) {
    let Some((&mode, rest)) = input.split_first() else { return };
    let buf = if mode % 2 == 0 {
        rest.to_vec()
    } else {
        let mut b = Vec::with_capacity(rest.len() + frame::PREFIX);
        b.extend_from_slice(&(rest.len() as u32).to_le_bytes());
        b.extend_from_slice(&crc32c::crc32c(rest).to_le_bytes());
        b.extend_from_slice(rest);
        b
    };
    if let Some((len, _)) = frame::candidate(&buf, buf.len() as u64) {
        assert!(len <= buf.len() && len >= frame::MIN_FRAME, "candidate length {len} of {}", buf.len());
    }
    match frame::parse(&buf) {
        frame::Parsed::Frame(v) => {
            assert!(v.len <= buf.len() && v.len >= frame::MIN_FRAME, "frame length {} of {}", v.len, buf.len());
            let chunk = Bytes::copy_from_slice(&buf);
            let (key, value) = v.key_value(&chunk, 0);
            let headers = v.headers(&buf[..v.len]);
            // What was read, written again, reads back the same.
            let mut again = Vec::new();
            frame::encode(&mut again, v.offset, v.timestamp, v.txn, key.as_deref(), value.as_deref(), &headers);
            let frame::Parsed::Frame(w) = frame::parse(&again) else { panic!("a re-encoded frame does not parse") };
            assert_eq!((w.offset, w.timestamp, w.txn, w.len), (v.offset, v.timestamp, v.txn, again.len()));
            let chunk2 = Bytes::from(again.clone());
            assert_eq!(w.key_value(&chunk2, 0), (key, value));
            assert_eq!(w.headers(&again), headers);
        }
        frame::Parsed::Incomplete { need } => assert!(need > buf.len(), "incomplete with {} of {need} bytes", buf.len()),
        frame::Parsed::Corrupt(_) => {}
    }
}

/// The journal reader: the input as a journal file when its first byte is even, else the
/// rest cut at each newline into entry bodies, each sealed. Replaying must not panic, must
/// stop inside the input, and a resume point must be an intact entry past the damage.
pub fn journal(input: &[u8]) {
    let Some((&mode, rest)) = input.split_first() else { return };
    let bytes = if mode % 2 == 0 {
        rest.to_vec()
    } else {
        rest.split(|&b| b == b'\n').flat_map(journal::framed).collect()
    };
    let mut state = journal::State::default();
    let (intact, resumes_at) = journal::replay(&bytes, &mut state);
    assert!(intact <= bytes.len(), "intact {intact} of {}", bytes.len());
    if let Some(p) = resumes_at {
        assert!(p > intact && p < bytes.len(), "resumes at {p}, intact {intact} of {}", bytes.len());
        assert!(journal::entry_at(&bytes[p..]).is_some(), "no intact entry where replay says one resumes");
    }
    // The folded state is what a snapshot holds: it must survive one.
    let snapshot = serde_json::to_vec(&state).expect("a journal state serializes");
    let back: journal::State = serde_json::from_slice(&snapshot).expect("a journal snapshot reads back");
    assert_eq!(back.last_seq, state.last_seq);
    assert_eq!(back.offsets, state.offsets);
    assert_eq!(back.epochs, state.epochs);
    assert_eq!(back.txn_ends, state.txn_ends);
}

#[cfg(test)]
mod tests {
    //! Inputs the fuzzers found or that pin a property; each is a sentence.
    use super::*;

    #[test]
    fn the_committed_seed_corpora_hold_frames_and_journal_entries() {
        use crate::types::Header;
        use storeflow_avro::fuzzing::check_seed;
        let headers = [Header { key: "storeflow.reason".into(), value: b"unknown order".to_vec() }];
        let frames: [(&str, Option<&[u8]>, Option<&[u8]>, &[Header]); 3] = [
            ("record", Some(b"order-1"), Some(b"\x00\x00\x00\x00\x07value"), &[]),
            ("tombstone", Some(b"order-1"), None, &[]),
            ("with-header", None, Some(b"v"), &headers),
        ];
        for (i, (name, key, value, hs)) in frames.into_iter().enumerate() {
            let mut f = Vec::new();
            frame::encode(&mut f, i as u64, 1_700_000_000_000 + i as i64, i as u64 % 2, key, value, hs);
            check_seed("log_frame", &format!("{name}.raw"), &[[0].as_slice(), &f].concat());
            check_seed("log_frame", &format!("{name}.sealed"), &[[1].as_slice(), &f[frame::PREFIX..]].concat());
        }
        let entries = [
            journal::Entry::Epoch { seq: 1, tid: "storeflow-orders-0".into(), epoch: 3 },
            journal::Entry::Commit {
                seq: 2,
                tid: Some("storeflow-orders-0".into()),
                epoch: 3,
                ends: vec![("orders.lifecycle".into(), 0, 42)],
                offsets: vec![("storeflow-orders".into(), "storefront.orders".into(), 0, 17)],
            },
            journal::Entry::Commit { seq: 3, tid: None, epoch: 0, ends: vec![], offsets: vec![("sink".into(), "t".into(), 1, 9)] },
        ];
        let bodies: Vec<Vec<u8>> = entries.iter().map(|e| serde_json::to_vec(e).unwrap()).collect();
        let raw: Vec<u8> = bodies.iter().flat_map(|b| journal::framed(b)).collect();
        check_seed("log_journal", "entries.raw", &[[0].as_slice(), &raw].concat());
        check_seed("log_journal", "entries.sealed", &[[1].as_slice(), &bodies.join(&b'\n')].concat());
    }

    #[test]
    fn every_crash_the_fuzzers_found_reads_without_a_panic_now() {
        for (_, bytes) in storeflow_avro::fuzzing::regressions("log_frame") {
            frame(&bytes);
        }
        for (_, bytes) in storeflow_avro::fuzzing::regressions("log_journal") {
            journal(&bytes);
        }
    }

    #[test]
    fn a_sealed_body_too_short_for_its_fields_is_corrupt_not_a_panic() {
        frame(&[1, 0, 0, 0]);
        frame(&[1; 40]);
    }

    #[test]
    fn a_sealed_frame_with_headers_past_its_end_reads_the_headers_that_fit() {
        let mut body = vec![0u8; 24];
        body.extend_from_slice(&(-1i32).to_le_bytes());
        body.extend_from_slice(&(-1i32).to_le_bytes());
        body.extend_from_slice(&3u16.to_le_bytes());
        body.extend_from_slice(&1u16.to_le_bytes());
        body.push(b'k');
        body.extend_from_slice(&1u32.to_le_bytes());
        body.push(b'v');
        let mut input = vec![1];
        input.extend_from_slice(&body);
        frame(&input);
    }

    #[test]
    fn journal_entries_with_damage_between_them_resume_at_the_next_intact_one() {
        let a = br#"{"Epoch":{"seq":1,"tid":"t","epoch":1}}"#;
        let b = br#"{"Commit":{"seq":2,"tid":null,"epoch":0,"ends":[],"offsets":[["g","t",0,5]]}}"#;
        let mut input = vec![0];
        input.extend(journal::framed(a));
        input.extend_from_slice(b"garbage");
        input.extend(journal::framed(b));
        journal(&input);
        journal(&[1, b'{', b'\n', b'}']);
    }
}

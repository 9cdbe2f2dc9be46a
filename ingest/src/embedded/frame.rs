//! The on-disk record frame of the embedded log.
//!
//! ```text
//! u32  body length (little endian)       ┐ prefix, 8 bytes
//! u32  CRC-32C of the body               ┘
//! body:
//! u64  offset
//! i64  timestamp (ms)
//! u64  transaction sequence (0: not transactional)
//! i32  key length (-1: null), key bytes
//! i32  value length (-1: null), value bytes
//! u16  header count, then per header: u16 name length, name, u32 value length, value
//! ```
//!
//! A frame is accepted only if it is complete, its CRC matches and its offset is the one
//! expected next. There is no magic number: after a bad frame, recovery finds the next
//! intact one by trying every byte position for a plausible length and offset and a
//! matching CRC ([`candidate`]), to tell a torn tail (nothing intact follows: cut) from
//! corruption (intact frames follow: reported, never cut).

use bytes::Bytes;

use crate::types::Header;

/// Bytes before the body: length + CRC.
pub(crate) const PREFIX: usize = 8;
/// Smallest possible body: the fixed fields.
const MIN_BODY: usize = 8 + 8 + 8 + 4 + 4 + 2;
/// Smallest possible frame.
pub(crate) const MIN_FRAME: usize = PREFIX + MIN_BODY;
/// Bytes [`candidate`] looks at: the prefix and the offset.
pub(crate) const PEEK: usize = PREFIX + 8;
/// Largest body we accept (guards against reading garbage lengths).
pub(crate) const MAX_BODY: usize = 64 << 20;

/// Appends one frame to `buf`.
pub(crate) fn encode(
    buf: &mut Vec<u8>,
    offset: u64,
    timestamp: i64,
    txn: u64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[Header],
) {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; PREFIX]);
    buf.extend_from_slice(&offset.to_le_bytes());
    buf.extend_from_slice(&timestamp.to_le_bytes());
    buf.extend_from_slice(&txn.to_le_bytes());
    for part in [key, value] {
        match part {
            Some(b) => {
                buf.extend_from_slice(&(b.len() as i32).to_le_bytes());
                buf.extend_from_slice(b);
            }
            None => buf.extend_from_slice(&(-1i32).to_le_bytes()),
        }
    }
    buf.extend_from_slice(&(headers.len() as u16).to_le_bytes());
    for h in headers {
        buf.extend_from_slice(&(h.key.len() as u16).to_le_bytes());
        buf.extend_from_slice(h.key.as_bytes());
        buf.extend_from_slice(&(h.value.len() as u32).to_le_bytes());
        buf.extend_from_slice(&h.value);
    }
    let body_len = (buf.len() - start - PREFIX) as u32;
    let crc = crc32c::crc32c(&buf[start + PREFIX..]);
    buf[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// The fixed part of a decoded frame; key, value and headers are ranges into the buffer.
#[derive(Debug)]
pub(crate) struct FrameView {
    pub offset: u64,
    pub timestamp: i64,
    pub txn: u64,
    /// Total frame length including the prefix.
    pub len: usize,
    key: Option<(usize, usize)>,
    value: Option<(usize, usize)>,
    headers_at: usize,
    header_count: u16,
}

/// What is at the start of a buffer.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// A whole, valid frame.
    Frame(FrameView),
    /// The buffer ends inside the frame; read more (or, at the end of the file, a torn tail).
    Incomplete { need: usize },
    /// Not a valid frame.
    Corrupt(&'static str),
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The cheap half of finding a frame at an unknown position: if the first [`PEEK`] bytes of
/// `buf` could start a frame of at most `room` bytes, its total length and offset. The caller
/// then checks the offset is plausible and [`parse`]s the whole frame (CRC).
pub(crate) fn candidate(buf: &[u8], room: u64) -> Option<(usize, u64)> {
    if buf.len() < PEEK {
        return None;
    }
    let body_len = u32_at(buf, 0) as usize;
    if !(MIN_BODY..=MAX_BODY).contains(&body_len) || (PREFIX + body_len) as u64 > room {
        return None;
    }
    Some((PREFIX + body_len, u64_at(buf, PREFIX)))
}

/// Parses the frame at the start of `buf`.
pub(crate) fn parse(buf: &[u8]) -> Parsed {
    if buf.len() < PREFIX {
        return Parsed::Incomplete { need: PREFIX };
    }
    let body_len = u32_at(buf, 0) as usize;
    if !(MIN_BODY..=MAX_BODY).contains(&body_len) {
        return Parsed::Corrupt("frame length out of range");
    }
    let len = PREFIX + body_len;
    if buf.len() < len {
        return Parsed::Incomplete { need: len };
    }
    let body = &buf[PREFIX..len];
    if crc32c::crc32c(body) != u32_at(buf, 4) {
        return Parsed::Corrupt("checksum mismatch");
    }
    let mut at = PREFIX + 24;
    let slice = |at: &mut usize| -> Result<Option<(usize, usize)>, &'static str> {
        if *at + 4 > len {
            return Err("field overruns frame");
        }
        let l = i32::from_le_bytes(buf[*at..*at + 4].try_into().expect("4 bytes"));
        *at += 4;
        if l < 0 {
            return Ok(None);
        }
        let l = l as usize;
        if *at + l > len {
            return Err("field overruns frame");
        }
        let r = (*at, *at + l);
        *at += l;
        Ok(Some(r))
    };
    let key = match slice(&mut at) {
        Ok(k) => k,
        Err(e) => return Parsed::Corrupt(e),
    };
    let value = match slice(&mut at) {
        Ok(v) => v,
        Err(e) => return Parsed::Corrupt(e),
    };
    if at + 2 > len {
        return Parsed::Corrupt("field overruns frame");
    }
    let header_count = u16::from_le_bytes([buf[at], buf[at + 1]]);
    Parsed::Frame(FrameView {
        offset: u64_at(buf, PREFIX),
        timestamp: u64_at(buf, PREFIX + 8) as i64,
        txn: u64_at(buf, PREFIX + 16),
        len,
        key,
        value,
        headers_at: at + 2,
        header_count,
    })
}

impl FrameView {
    /// Key and value as zero-copy slices of `chunk` (which starts at this frame + `base`).
    pub(crate) fn key_value(&self, chunk: &Bytes, base: usize) -> (Option<Bytes>, Option<Bytes>) {
        let s = |r: Option<(usize, usize)>| r.map(|(a, b)| chunk.slice(base + a..base + b));
        (s(self.key), s(self.value))
    }

    /// The headers; `frame` is the frame's bytes.
    pub(crate) fn headers(&self, frame: &[u8]) -> Vec<Header> {
        let mut out = Vec::with_capacity(self.header_count as usize);
        let mut at = self.headers_at;
        for _ in 0..self.header_count {
            if at + 2 > self.len {
                break;
            }
            let kl = u16::from_le_bytes([frame[at], frame[at + 1]]) as usize;
            at += 2;
            if at + kl + 4 > self.len {
                break;
            }
            let key = String::from_utf8_lossy(&frame[at..at + kl]).into_owned();
            at += kl;
            let vl = u32_at(frame, at) as usize;
            at += 4;
            if at + vl > self.len {
                break;
            }
            out.push(Header {
                key,
                value: frame[at..at + vl].to_vec(),
            });
            at += vl;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one() -> Vec<u8> {
        let mut b = Vec::new();
        encode(&mut b, 7, 1234, 0, Some(b"k"), Some(b"value"), &[Header::text("h", "v")]);
        b
    }

    #[test]
    fn a_frame_round_trips() {
        let b = one();
        let Parsed::Frame(f) = parse(&b) else { panic!("not a frame") };
        assert_eq!((f.offset, f.timestamp, f.txn, f.len), (7, 1234, 0, b.len()));
        let chunk = Bytes::from(b.clone());
        let (k, v) = f.key_value(&chunk, 0);
        assert_eq!((k.as_deref(), v.as_deref()), (Some(&b"k"[..]), Some(&b"value"[..])));
        assert_eq!(f.headers(&b), vec![Header::text("h", "v")]);
    }

    #[test]
    fn every_truncation_is_incomplete_and_every_bit_flip_is_caught() {
        let b = one();
        for cut in 0..b.len() {
            assert!(!matches!(parse(&b[..cut]), Parsed::Frame(_)), "cut at {cut} parsed");
        }
        for i in 0..b.len() {
            for bit in 0..8 {
                let mut c = b.clone();
                c[i] ^= 1 << bit;
                if let Parsed::Frame(f) = parse(&c) {
                    panic!("flipping bit {bit} of byte {i} still parsed: {f:?}");
                }
            }
        }
    }

    #[test]
    fn zeroes_are_not_a_frame() {
        assert!(matches!(parse(&[0u8; 64]), Parsed::Corrupt(_)));
    }
}

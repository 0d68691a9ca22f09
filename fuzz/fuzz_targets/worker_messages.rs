//! The worker message decoder: a worker's byte stream split into messages (both
//! transports: newline-delimited JSON over IPC, length-prefixed frames over FIFOs)
//! and each message parsed as the pool parses it.
//!
//! Input: byte 0 bit 0 = framed, byte 1 = the message size limit (64 << (b % 12)
//! bytes), byte 2 = the read size the stream arrives in (1..=256), then the stream.
//!
//! Properties:
//! - every message lies inside the buffer, in order, without overlap, within the limit;
//!   a newline-delimited one holds no newline; frames re-encode to the bytes consumed;
//! - the stream is refused exactly when a unit (line or frame) is over the limit;
//! - reading in small pieces (as `Pool::pump` does: split, handle, keep the rest) gives
//!   the same messages as reading it whole, and the kept buffer stays within the limit
//!   plus one read;
//! - a message the pool accepts is a JSON text (it is passed on to JavaScript raw), and
//!   lines re-framed for the FIFO transport split back into the same lines.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pool_core::pool::fuzzing::{frame_lines, keep_after_split, split_messages};
use pool_core::protocol;

/// Messages of a whole stream read at once, and whether it was refused.
fn whole(buf: &[u8], max: usize, framed: bool) -> (Vec<Vec<u8>>, bool) {
    let mut scanned = 0;
    match split_messages(buf, &mut scanned, max, framed) {
        Ok((msgs, used)) => {
            check_ranges(buf, &msgs, used, max, framed);
            (msgs.iter().map(|&(a, b)| buf[a..b].to_vec()).collect(), false)
        }
        Err(why) => {
            assert!(why.contains("maxMessageBytes"), "a refusal names the limit: {why}");
            (Vec::new(), true)
        }
    }
}

fn check_ranges(buf: &[u8], msgs: &[(usize, usize)], used: usize, max: usize, framed: bool) {
    assert!(used <= buf.len());
    let mut end = 0;
    let mut reframed = Vec::new();
    for &(a, b) in msgs {
        assert!(a <= b && b <= used && a >= end, "ranges in order inside the consumed bytes");
        assert!(b - a <= max, "a message within the limit");
        if framed {
            reframed.extend_from_slice(&((b - a) as u32).to_be_bytes());
            reframed.extend_from_slice(&buf[a..b]);
        } else {
            assert!(!buf[a..b].contains(&b'\n') && a < b, "a line: not empty, no newline");
        }
        end = b;
    }
    if framed {
        assert_eq!(&reframed[..], &buf[..used], "frames re-encode to what was consumed");
    } else if used > 0 {
        assert_eq!(buf[used - 1], b'\n', "a line ends at a newline");
        assert!(!buf[used..].contains(&b'\n'), "every complete line is taken");
    } else {
        assert!(!buf.contains(&b'\n'));
    }
}

/// Whether some unit of the stream is over the limit: the reference for refusals.
fn over_limit(buf: &[u8], max: usize, framed: bool) -> bool {
    if framed {
        let mut pos = 0;
        while buf.len() - pos >= 4 {
            let len = u32::from_be_bytes(buf[pos..pos + 4].try_into().unwrap()) as usize;
            if len > max {
                return true;
            }
            if buf.len() - pos - 4 < len {
                return false;
            }
            pos += 4 + len;
        }
        false
    } else {
        buf.split(|&b| b == b'\n').any(|l| l.len() > max)
    }
}

/// The same stream arriving `step` bytes at a time, read as `Pool::pump` reads it.
fn pieces(stream: &[u8], step: usize, max: usize, framed: bool) -> (Vec<Vec<u8>>, bool) {
    let mut buf = Vec::new();
    let mut scanned = 0;
    let mut out = Vec::new();
    for piece in stream.chunks(step) {
        buf.extend_from_slice(piece);
        match split_messages(&buf, &mut scanned, max, framed) {
            Ok((msgs, used)) => {
                out.extend(msgs.iter().map(|&(a, b)| buf[a..b].to_vec()));
                keep_after_split(&mut buf, &mut scanned, used);
                let bound = if framed { max + 4 } else { max + 1 };
                assert!(buf.len() <= bound + step, "kept {} bytes, limit {max}", buf.len());
            }
            Err(_) => return (out, true),
        }
    }
    (out, false)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let framed = data[0] & 1 == 1;
    let max = 64usize << (data[1] % 12);
    let step = 1 + data[2] as usize;
    let stream = &data[3..];

    let (msgs, refused) = whole(stream, max, framed);
    assert_eq!(
        refused,
        over_limit(stream, max, framed),
        "refused exactly when a unit is over the limit"
    );
    let (in_pieces, refused_in_pieces) = pieces(stream, step, max, framed);
    assert_eq!(refused_in_pieces, refused, "refused whole exactly when refused in pieces");
    if !refused {
        assert_eq!(in_pieces, msgs, "the same messages, read whole or in pieces");
    }

    let mut lines = Vec::new();
    for m in &msgs {
        let Ok(text) = std::str::from_utf8(m) else { continue };
        if let Ok(msg) = protocol::parse(text) {
            let _ = msg.kind();
            assert!(
                serde_json::from_str::<&serde_json::value::RawValue>(text).is_ok(),
                "an accepted message is JSON text: {text:?}"
            );
            if let Some(e) = &msg.error {
                let _ = e.code_string();
            }
        }
        if !m.contains(&b'\n') && !m.is_empty() {
            lines.extend_from_slice(m);
            lines.push(b'\n');
        }
    }
    // The FIFO writer's framing of newline-delimited messages splits back into them.
    let framed_lines = frame_lines(&lines);
    let mut scanned = 0;
    let (back, used) = split_messages(&framed_lines, &mut scanned, usize::MAX >> 1, true).unwrap();
    assert_eq!(used, framed_lines.len());
    let back: Vec<&[u8]> = back.iter().map(|&(a, b)| &framed_lines[a..b]).collect();
    let want: Vec<&[u8]> = lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    assert_eq!(back, want, "frame_lines round trip");
});

//! A strict parser of the HTTP `Range` header, for one byte range.
//!
//! Accepted: `bytes=<first>-<last>`, `bytes=<first>-` (to the end) and
//! `bytes=-<suffix length>` (the last bytes), with optional spaces around
//! the range; the unit is case-insensitive. A range reaching past the end
//! is cut at the end. Answers:
//! - no header, or a unit other than `bytes` (RFC 9110 says to ignore it):
//!   the whole file (200);
//! - several ranges: refused with 416, by choice: appliances resume one
//!   range at a time, and refusing keeps the hub from building multipart
//!   bodies; the client asks again one range at a time;
//! - a malformed byte range, or one that starts at or past the end (or a
//!   zero-length suffix, or any range of an empty file): 416.
//!
//! Nothing here panics or allocates on input; numbers beyond `u64` are
//! malformed.

use thiserror::Error;

/// The bytes to send: `first..=last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte's offset.
    pub first: u64,
    /// Last byte's offset (inclusive).
    pub last: u64,
}

impl ByteRange {
    /// How many bytes.
    pub fn len(&self) -> u64 {
        self.last - self.first + 1
    }

    /// Never true: a range holds at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Why a `Range` header cannot be served (416).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RangeError {
    /// Not of the form `bytes=first-last`, `bytes=first-` or `bytes=-n`.
    #[error("malformed Range header: expected bytes=<first>-<last>, bytes=<first>- or bytes=-<n>")]
    Malformed,
    /// More than one range.
    #[error("multiple ranges are not supported: request one range at a time")]
    Multiple,
    /// Well formed, but outside the file.
    #[error("the range is outside the file")]
    Unsatisfiable,
}

/// Longest header looked at; longer ones are malformed.
const MAX_HEADER: usize = 256;

/// The range to serve of a file of `size` bytes: None for the whole file.
pub fn parse(header: Option<&[u8]>, size: u64) -> Result<Option<ByteRange>, RangeError> {
    let Some(header) = header else {
        return Ok(None);
    };
    if header.len() > MAX_HEADER {
        return Err(RangeError::Malformed);
    }
    let Some(eq) = header.iter().position(|&b| b == b'=') else {
        return Err(RangeError::Malformed);
    };
    let (unit, spec) = (trim(&header[..eq]), &header[eq + 1..]);
    if !unit.eq_ignore_ascii_case(b"bytes") {
        return if !unit.is_empty() && unit.iter().all(|b| b.is_ascii_alphanumeric()) {
            Ok(None)
        } else {
            Err(RangeError::Malformed)
        };
    }
    if spec.contains(&b',') {
        return Err(RangeError::Multiple);
    }
    let spec = trim(spec);
    let Some(dash) = spec.iter().position(|&b| b == b'-') else {
        return Err(RangeError::Malformed);
    };
    let (first, last) = (&spec[..dash], &spec[dash + 1..]);
    match (number(first), number(last)) {
        (None, Some(suffix)) if first.is_empty() => {
            if suffix == 0 || size == 0 {
                return Err(RangeError::Unsatisfiable);
            }
            Ok(Some(ByteRange {
                first: size - suffix.min(size),
                last: size - 1,
            }))
        }
        (Some(first), None) if last.is_empty() => within(first, u64::MAX, size),
        (Some(first), Some(last)) if first <= last => within(first, last, size),
        _ => Err(RangeError::Malformed),
    }
}

fn within(first: u64, last: u64, size: u64) -> Result<Option<ByteRange>, RangeError> {
    if first >= size {
        return Err(RangeError::Unsatisfiable);
    }
    Ok(Some(ByteRange {
        first,
        last: last.min(size - 1),
    }))
}

/// A decimal of 1-19 digits (always within u64).
fn number(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 19 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(text.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

fn trim(mut text: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = text {
        text = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = text {
        text = rest;
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(header: &str, size: u64, expect: Result<Option<(u64, u64)>, RangeError>) {
        let got = parse(Some(header.as_bytes()), size).map(|r| r.map(|r| (r.first, r.last)));
        assert_eq!(got, expect, "{header:?} of {size}");
    }

    #[test]
    fn single_ranges_of_the_three_forms() {
        check("bytes=0-99", 1000, Ok(Some((0, 99))));
        check("bytes=100-", 1000, Ok(Some((100, 999))));
        check("bytes=-100", 1000, Ok(Some((900, 999))));
        check("bytes=999-999", 1000, Ok(Some((999, 999))));
        check("BYTES = 5-6 ", 1000, Ok(Some((5, 6))));
        check("bytes=\t5-6", 1000, Ok(Some((5, 6))));
        assert_eq!(parse(None, 10), Ok(None));
    }

    #[test]
    fn ranges_past_the_end_are_cut_or_refused() {
        check("bytes=0-5000", 1000, Ok(Some((0, 999))));
        check("bytes=-5000", 1000, Ok(Some((0, 999))));
        check(
            "bytes=0-18446744073709551615",
            10,
            Err(RangeError::Malformed),
        );
        check("bytes=0-9999999999999999999", 10, Ok(Some((0, 9))));
        check("bytes=1000-", 1000, Err(RangeError::Unsatisfiable));
        check("bytes=1000-2000", 1000, Err(RangeError::Unsatisfiable));
        check("bytes=-0", 1000, Err(RangeError::Unsatisfiable));
        check("bytes=0-", 0, Err(RangeError::Unsatisfiable));
        check("bytes=-1", 0, Err(RangeError::Unsatisfiable));
    }

    #[test]
    fn other_units_are_ignored_and_garbage_is_refused() {
        check("items=0-1", 10, Ok(None));
        check("bytes=0-1,3-4", 10, Err(RangeError::Multiple));
        check("bytes=0-1,", 10, Err(RangeError::Multiple));
        for bad in [
            "",
            "bytes",
            "bytes=",
            "bytes=-",
            "bytes=--1",
            "bytes=1--2",
            "bytes=5-4",
            "bytes=a-b",
            "bytes=0x10-",
            "bytes=+1-2",
            "bytes=1-+2",
            "bytes=1 - 2",
            "=0-1",
            "by tes=0-1",
            "bytes=1-2-3",
            "bytes=٣-4",
            "bytes=99999999999999999999-",
        ] {
            check(bad, 10, Err(RangeError::Malformed));
        }
        let long = format!("bytes={}-", "0".repeat(300));
        check(&long, 10, Err(RangeError::Malformed));
        assert_eq!(
            parse(Some(&[0xff, b'=', b'1', b'-']), 10),
            Err(RangeError::Malformed)
        );
    }

    #[test]
    fn every_short_input_is_answered_without_panicking() {
        let alphabet = b"bytes=-0123456789, \t";
        let mut input = Vec::new();
        for a in alphabet {
            for b in alphabet {
                for c in alphabet {
                    input.clear();
                    input.extend_from_slice(b"bytes=");
                    input.extend_from_slice(&[*a, *b, *c]);
                    for size in [0, 1, 5, 10_000] {
                        if let Ok(Some(range)) = parse(Some(&input), size) {
                            assert!(range.first <= range.last && range.last < size);
                        }
                    }
                }
            }
        }
    }
}

//! Every DER length checked against the bytes that are there, before the
//! `der` crate reads any of it.
//!
//! `der` (0.7, and 0.8 alike) decodes an owned value (an INTEGER serial
//! number, an OCTET STRING extension value, an `Any`) by allocating the
//! length its header claims and only then reading the bytes: 15 bytes
//! claiming a 256 MiB serial number cost 256 MiB before the decoder finds
//! that they are not there (issue 13). [`check_lengths`] walks the TLV
//! structure first: each element's length must fit in what remains of the
//! element that contains it, at every depth of the constructed encodings.
//! After it, no length the decoder reads is larger than the input, so
//! nothing it allocates is either. Every DER this crate decodes from outside,
//! PEM included, goes through it.

/// How deep constructed encodings may nest. An AMD certificate nests about
/// ten deep; this bounds the walk's own memory, not the certificate's shape.
const MAX_DEPTH: usize = 64;

/// Checks that every TLV of `der`, at every depth, has a definite length
/// that fits in what remains of its parent (the whole input at the top).
/// Says where the first one that does not is.
pub(crate) fn check_lengths(der: &[u8]) -> Result<(), String> {
    // The end offsets of the constructed elements being walked, innermost last.
    let mut ends: Vec<usize> = Vec::new();
    let mut end = der.len();
    let mut pos = 0;
    loop {
        while pos == end {
            match ends.pop() {
                Some(outer) => end = outer,
                None => return Ok(()),
            }
        }
        let start = pos;
        let tag = der[pos];
        pos += 1;
        if tag & 0x1f == 0x1f {
            // High tag number: base-128 digits, the last without bit 8.
            let mut digits = 0;
            loop {
                let Some(&b) = der.get(pos).filter(|_| pos < end) else {
                    return Err(format!("DER tag at byte {start} runs past its enclosing element"));
                };
                pos += 1;
                digits += 1;
                if digits > 4 {
                    return Err(format!("DER tag at byte {start} is longer than 4 bytes"));
                }
                if b & 0x80 == 0 {
                    break;
                }
            }
        }
        let Some(&first) = der.get(pos).filter(|_| pos < end) else {
            return Err(format!("DER element at byte {start} has no length"));
        };
        pos += 1;
        let len = match first {
            0..=0x7f => usize::from(first),
            0x80 => {
                return Err(format!("DER element at byte {start} has an indefinite length (BER, not DER)"))
            }
            _ => {
                let n = usize::from(first & 0x7f);
                if n > 4 {
                    return Err(format!("DER element at byte {start} has a length of {n} bytes"));
                }
                if end - pos < n {
                    return Err(format!("DER length at byte {start} runs past its enclosing element"));
                }
                let len = der[pos..pos + n].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
                pos += n;
                len
            }
        };
        let remaining = end - pos;
        if len > remaining {
            return Err(format!(
                "DER element at byte {start} claims {len} bytes, but only {remaining} remain in its enclosing element"
            ));
        }
        if tag & 0x20 != 0 {
            if ends.len() == MAX_DEPTH {
                return Err(format!("DER nests deeper than {MAX_DEPTH} levels at byte {start}"));
            }
            ends.push(end);
            end = pos + len;
        } else {
            pos += len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_certificates_pass() {
        for der in [
            &include_bytes!("../../testdata/amd/milan-virtee/vcek.der")[..],
            &include_bytes!("../../testdata/amd/genoa-oak-v5/vcek.der")[..],
            &include_bytes!("../../testdata/amd/milan-vlek-trustee/vlek.der")[..],
        ] {
            check_lengths(der).unwrap();
        }
    }

    #[test]
    fn issue13_a_serial_claiming_256_mib_is_refused_by_its_length() {
        let err = check_lengths(&hex::decode("300d300ba00302010202840fffffff").unwrap()).unwrap_err();
        assert_eq!(
            err,
            "DER element at byte 9 claims 268435455 bytes, but only 0 remain in its enclosing element"
        );
    }

    #[test]
    fn every_truncation_of_a_certificate_is_refused() {
        let der = include_bytes!("../../testdata/amd/milan-virtee/vcek.der");
        for n in 1..der.len() {
            assert!(check_lengths(&der[..n]).is_err(), "{n}");
        }
    }

    #[test]
    fn lengths_are_checked_against_the_parent_not_the_input() {
        // SEQUENCE(3) { OCTET STRING claiming 5 } followed by 5 more bytes.
        assert!(check_lengths(&[0x30, 0x03, 0x04, 0x05, 0x00, 1, 2, 3, 4, 5]).is_err());
        assert!(check_lengths(&[0x30, 0x03, 0x04, 0x01, 0x00]).is_ok());
        assert!(check_lengths(&[0x30, 0x80, 0x00, 0x00]).unwrap_err().contains("indefinite"));
        assert!(check_lengths(&[0x04, 0x85, 0, 0, 0, 0, 1, 0]).unwrap_err().contains("length of 5 bytes"));
        let deep: Vec<u8> = std::iter::repeat_n([0x30, 0x80], 100).flatten().collect();
        assert!(check_lengths(&deep).is_err());
        let mut nested = Vec::new();
        for _ in 0..MAX_DEPTH + 1 {
            let len = u8::try_from(nested.len()).unwrap();
            let mut outer = if len < 0x80 { vec![0x30, len] } else { vec![0x30, 0x81, len] };
            outer.extend_from_slice(&nested);
            nested = outer;
        }
        assert!(check_lengths(&nested).unwrap_err().contains("deeper than 64"));
        assert!(check_lengths(&nested[3..]).is_ok());
    }
}

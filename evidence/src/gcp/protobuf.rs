//! The small part of the protocol-buffers wire format that Google's launch
//! endorsement needs: varints, length-delimited fields, and skipping fields
//! this verifier does not read (docs/dependencies.md says why this is
//! written here rather than taken from prost).
//!
//! Wire format: each field is a key (a varint: field number << 3 | wire
//! type) followed by its value: a varint (type 0), 8 bytes (1), a length
//! varint and that many bytes (2), or 4 bytes (5). Groups (3, 4) are
//! obsolete and refused. Every length is checked against the bytes that are
//! there before anything is sliced, so hostile input costs nothing beyond
//! its own size.

/// A field the message could not be read past.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at byte {offset}")]
pub(crate) struct WireError {
    /// Where in the message.
    pub(crate) offset: usize,
    /// What was wrong.
    pub(crate) message: String,
}

/// A field's value as it is on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Value<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1 (8 bytes, not needed here).
    Fixed64,
    /// Wire type 2: bytes, a string or a nested message.
    Bytes(&'a [u8]),
    /// Wire type 5 (4 bytes, not needed here).
    Fixed32,
}

/// Reads the fields of one message in order.
pub(crate) struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Fields<'a> {
        Fields { buf, pos: 0 }
    }

    fn err(&self, message: impl Into<String>) -> WireError {
        WireError { offset: self.pos, message: message.into() }
    }

    fn varint(&mut self) -> Result<u64, WireError> {
        let mut value = 0u64;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(self.err("truncated varint"));
            };
            self.pos += 1;
            // The tenth byte may only hold the top bit of a 64-bit value.
            if i == 9 && b > 1 {
                return Err(self.err("varint longer than 64 bits"));
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.err("varint longer than 10 bytes"))
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], WireError> {
        let left = self.buf.len() - self.pos;
        let n = usize::try_from(n)
            .ok()
            .filter(|n| *n <= left)
            .ok_or_else(|| self.err(format!("field claims {n} bytes, but only {left} remain")))?;
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// The next field (its number and value), or `None` at the end.
    pub(crate) fn next_field(&mut self) -> Result<Option<(u32, Value<'a>)>, WireError> {
        if self.pos == self.buf.len() {
            return Ok(None);
        }
        let start = self.pos;
        let key = self.varint()?;
        let number =
            u32::try_from(key >> 3).ok().filter(|n| (1..=536_870_911).contains(n)).ok_or_else(|| {
                WireError { offset: start, message: format!("field number {} is invalid", key >> 3) }
            })?;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed64
            }
            2 => {
                let len = self.varint()?;
                Value::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Value::Fixed32
            }
            t => {
                return Err(WireError { offset: start, message: format!("field {number} has wire type {t}") })
            }
        };
        Ok(Some((number, value)))
    }
}

/// Appends fields in the wire format (for the simulator and fuzz seeds).
#[derive(Default)]
pub(crate) struct Writer(pub(crate) Vec<u8>);

impl Writer {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    /// A varint field; proto3 leaves a zero out.
    pub(crate) fn uint(&mut self, field: u32, v: u64) {
        if v != 0 {
            self.varint(u64::from(field) << 3);
            self.varint(v);
        }
    }

    /// A length-delimited field; proto3 leaves an empty one out.
    pub(crate) fn bytes(&mut self, field: u32, v: &[u8]) {
        if !v.is_empty() {
            self.message(field, v);
        }
    }

    /// A nested message (written even when empty: its presence means something).
    pub(crate) fn message(&mut self, field: u32, v: &[u8]) {
        self.varint(u64::from(field) << 3 | 2);
        self.varint(v.len() as u64);
        self.0.extend_from_slice(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_back_as_written_and_truncation_is_named() {
        let mut w = Writer::default();
        w.uint(1, 300);
        w.bytes(2, b"abc");
        w.uint(3, u64::MAX);
        let mut f = Fields::new(&w.0);
        assert_eq!(f.next_field().unwrap(), Some((1, Value::Varint(300))));
        assert_eq!(f.next_field().unwrap(), Some((2, Value::Bytes(b"abc"))));
        assert_eq!(f.next_field().unwrap(), Some((3, Value::Varint(u64::MAX))));
        assert_eq!(f.next_field().unwrap(), None);
        for n in 1..w.0.len() {
            let mut f = Fields::new(&w.0[..n]);
            let err = loop {
                match f.next_field() {
                    Ok(Some(_)) => continue,
                    Ok(None) => break None,
                    Err(e) => break Some(e),
                }
            };
            // A cut between two fields is a shorter message, anywhere else an error.
            if ![3, 8].contains(&n) {
                assert!(err.is_some(), "{n}");
            }
        }
    }

    #[test]
    fn hostile_lengths_and_types_are_refused() {
        // Field 2, bytes, claiming 2^32 bytes.
        let err = Fields::new(&[0x12, 0x80, 0x80, 0x80, 0x80, 0x10]).next_field().unwrap_err();
        assert_eq!(err.to_string(), "field claims 4294967296 bytes, but only 0 remain at byte 6");
        // An eleven-byte varint.
        let err =
            Fields::new(&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]).next_field();
        assert!(err.unwrap_err().message.contains("64 bits"));
        // A group (wire type 3), field number 0.
        assert!(Fields::new(&[0x0b]).next_field().unwrap_err().message.contains("wire type 3"));
        assert!(Fields::new(&[0x02, 0x00]).next_field().unwrap_err().message.contains("field number 0"));
    }
}

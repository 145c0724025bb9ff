//! Framing: a 4-byte big-endian length, then that many bytes of one message.

use serde::Serialize;

use super::{LogStreamError, MAX_FRAME};

/// Appends `value` as one frame to `out`: its JSON after a 4-byte
/// big-endian length. A body over [`MAX_FRAME`] is an error, and `out` is
/// left as it was.
pub(super) fn encode_json(out: &mut Vec<u8>, value: &impl Serialize) -> Result<(), LogStreamError> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    serde_json::to_writer(&mut *out, value).map_err(|e| LogStreamError::Malformed(e.to_string()))?;
    let len = out.len() - start - 4;
    if len > MAX_FRAME {
        out.truncate(start);
        return Err(LogStreamError::FrameTooLarge { len, max: MAX_FRAME });
    }
    // The length fits in u32: MAX_FRAME does.
    out[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

/// Cuts a byte stream into frames.
///
/// Feed it what the connection gives ([`Deframer::push`]) and take every
/// complete frame ([`Deframer::next_frame`]) before the next read: it then
/// holds at most one frame plus one read. A length over [`MAX_FRAME`] or of
/// zero is an error as soon as its four bytes are in; the stream cannot be
/// resynchronised after it, so the caller closes the connection.
#[derive(Debug, Default)]
pub struct Deframer {
    buf: Vec<u8>,
    start: usize,
}

impl Deframer {
    /// An empty deframer.
    pub fn new() -> Deframer {
        Deframer::default()
    }

    /// Adds bytes read from the connection.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 64 << 10 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame's body, if one is in.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, LogStreamError> {
        let rest = &self.buf[self.start..];
        let Some(header) = rest.get(..4) else { return Ok(None) };
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if len == 0 {
            return Err(LogStreamError::EmptyFrame);
        }
        if len > MAX_FRAME {
            return Err(LogStreamError::FrameTooLarge { len, max: MAX_FRAME });
        }
        if rest.len() < 4 + len {
            return Ok(None);
        }
        let body = self.start + 4..self.start + 4 + len;
        self.start = body.end;
        Ok(Some(&self.buf[body]))
    }

    /// Bytes received that are not yet a complete frame.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }
}

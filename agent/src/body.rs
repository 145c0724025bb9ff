//! Request bodies read against a deadline that scales with their size.
//!
//! A body of `n` bytes must be in within [`BODY_GRACE`] plus `n` divided by
//! the floor rate (`body_min_rate`, bytes per second). `n` is the declared
//! length (capped at what the handler accepts at most), or, for a body of
//! undeclared length, what has arrived so far, so that such a body must keep
//! up the floor rate on average as it goes. A client that sends slower, one
//! byte every few seconds to keep its connection from looking idle, is cut
//! off with `408` instead of holding its slot for as long as it likes.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use tokio::time::Instant;

/// Time every body gets on top of its size at the floor rate.
pub const BODY_GRACE: Duration = Duration::from_secs(10);

/// A request body that failed to arrive.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// It came slower than the floor rate allows.
    #[error(
        "the request body came too slowly: {received} of {expected} bytes in {:.1} s, under the floor of {rate} bytes/s after {} s of grace",
        elapsed.as_secs_f64(),
        BODY_GRACE.as_secs()
    )]
    TooSlow {
        /// Bytes received.
        received: u64,
        /// Bytes expected (declared, or received so far when undeclared).
        expected: u64,
        /// Time since the body started.
        elapsed: Duration,
        /// The floor rate, bytes per second.
        rate: u64,
    },
    /// It is larger than its handler accepts.
    #[error("request body over {cap} bytes")]
    TooLarge {
        /// The most the handler accepts.
        cap: usize,
    },
    /// The client broke the stream.
    #[error("the request body broke off: {0}")]
    Broken(#[source] hyper::Error),
}

/// A request body with its deadline.
pub struct PacedBody {
    body: Incoming,
    /// Fires at the deadline; one timer for the whole body, moved only when the deadline moves.
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
    start: Instant,
    declared: u64,
    received: u64,
    rate: u64,
}

impl PacedBody {
    /// Paces `body`, whose declared length is `declared` (capped at `cap`,
    /// the most its handler accepts), at `rate` bytes per second.
    pub fn new(body: Incoming, declared: Option<u64>, cap: u64, rate: u64) -> PacedBody {
        let start = Instant::now();
        let mut paced = PacedBody {
            body,
            timer: Box::pin(tokio::time::sleep_until(start)),
            start,
            declared: declared.unwrap_or(0).min(cap),
            received: 0,
            rate: rate.max(1),
        };
        let deadline = paced.deadline();
        paced.timer.as_mut().reset(deadline);
        paced
    }

    /// When the bytes expected so far must be in.
    pub fn deadline(&self) -> Instant {
        let expected = self.declared.max(self.received);
        let allowed = BODY_GRACE.saturating_add(Duration::from_secs_f64(expected as f64 / self.rate as f64));
        // Far enough for any body, and no overflow of the clock.
        self.start.checked_add(allowed).unwrap_or_else(|| self.start + Duration::from_secs(86400 * 365))
    }

    /// The next frame, `None` at the end, or why the body failed.
    ///
    /// # Cancel safety
    /// Cancel-safe: a frame is taken from the body only in the poll that returns it.
    pub async fn frame(&mut self) -> Option<Result<Frame<Bytes>, BodyError>> {
        let deadline = self.deadline();
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        let polled = tokio::select! {
            frame = self.body.frame() => Ok(frame),
            () = self.timer.as_mut() => Err(()),
        };
        match polled {
            Err(()) => Some(Err(BodyError::TooSlow {
                received: self.received,
                expected: self.declared.max(self.received),
                elapsed: self.start.elapsed(),
                rate: self.rate,
            })),
            Ok(None) => None,
            Ok(Some(Err(e))) => Some(Err(BodyError::Broken(e))),
            Ok(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    self.received += d.len() as u64;
                }
                Some(Ok(frame))
            }
        }
    }

    /// Reads the whole body, refusing more than `cap` bytes.
    pub async fn read_capped(mut self, cap: usize) -> Result<Vec<u8>, BodyError> {
        let mut out = Vec::new();
        while let Some(frame) = self.frame().await {
            if let Some(d) = frame?.data_ref() {
                if out.len() + d.len() > cap {
                    return Err(BodyError::TooLarge { cap });
                }
                out.extend_from_slice(d);
            }
        }
        Ok(out)
    }
}

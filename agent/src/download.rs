//! Response bodies whose complete delivery is observed.
//!
//! The results become `consumed` only once a consumer's download is
//! complete, so that a download that broke off can be retried and the state
//! does not claim what did not happen. [`Completed`] wraps a body of known
//! length and calls back when the frame carrying its last byte was handed to
//! hyper without an error before it. A client that goes away earlier makes
//! hyper drop the body with the call-back unused.
//!
//! "Handed to hyper" is as far as a server can see: the last bytes may still
//! sit in hyper's or the kernel's buffers when the call-back runs, so a
//! consumer that vanishes in the last moment may find the state `consumed`.
//! That state never refuses another download, so it can still fetch the
//! results again.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

/// A body of `len` bytes that calls back once all of them were handed over.
pub struct Completed<B> {
    inner: B,
    len: u64,
    sent: u64,
    on_complete: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl<B> Completed<B> {
    /// Wraps `inner`, which yields exactly `len` bytes; `on_complete` runs at most once.
    pub fn new(inner: B, len: u64, on_complete: impl FnOnce() + Send + Sync + 'static) -> Completed<B> {
        Completed { inner, len, sent: 0, on_complete: Some(Box::new(on_complete)) }
    }

    fn complete(&mut self) {
        if self.sent == self.len {
            if let Some(f) = self.on_complete.take() {
                f();
            }
        }
    }
}

impl<B> Body for Completed<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.sent = this.sent.saturating_add(d.len() as u64);
                }
                // hyper stops polling a body of known length once its last
                // byte is in: this frame is the end.
                this.complete();
            }
            Poll::Ready(Some(Err(_))) => this.on_complete = None,
            Poll::Ready(None) => this.complete(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.sent >= self.len && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use http_body_util::{BodyExt, StreamBody};

    use super::*;

    fn body(
        chunks: Vec<Result<&'static [u8], std::io::Error>>,
    ) -> http_body_util::combinators::BoxBody<Bytes, std::io::Error> {
        let frames = chunks.into_iter().map(|c| c.map(|b| Frame::data(Bytes::from_static(b))));
        StreamBody::new(futures_util::stream::iter(frames)).boxed()
    }

    fn counter() -> (Arc<AtomicUsize>, impl FnOnce() + Send + Sync + 'static) {
        let n = Arc::new(AtomicUsize::new(0));
        let m = Arc::clone(&n);
        (n, move || {
            m.fetch_add(1, Ordering::SeqCst);
        })
    }

    #[tokio::test]
    async fn calls_back_once_when_the_last_byte_is_handed_over() {
        let (n, f) = counter();
        let mut b = Completed::new(body(vec![Ok(b"abc"), Ok(b"de")]), 5, f);
        assert!(b.frame().await.is_some());
        assert_eq!(n.load(Ordering::SeqCst), 0, "3 of 5 bytes");
        assert!(b.frame().await.is_some());
        assert_eq!(n.load(Ordering::SeqCst), 1);
        assert!(b.frame().await.is_none());
        assert_eq!(n.load(Ordering::SeqCst), 1, "once");
    }

    #[tokio::test]
    async fn a_body_dropped_or_broken_before_its_end_never_calls_back() {
        let (n, f) = counter();
        let mut b = Completed::new(body(vec![Ok(b"abc"), Ok(b"de")]), 5, f);
        assert!(b.frame().await.is_some());
        drop(b);
        let (m, g) = counter();
        let mut b =
            Completed::new(body(vec![Ok(b"abc"), Err(std::io::Error::other("disk")), Ok(b"de")]), 5, g);
        while b.frame().await.is_some() {}
        assert_eq!((n.load(Ordering::SeqCst), m.load(Ordering::SeqCst)), (0, 0));
        let (k, h) = counter();
        let mut b = Completed::new(body(vec![Ok(b"abc")]), 5, h);
        while b.frame().await.is_some() {}
        assert_eq!(k.load(Ordering::SeqCst), 0, "a short body is not complete");
    }
}

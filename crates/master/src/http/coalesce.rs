//! A byte stream whose small writes are gathered until the next flush, so that a burst of
//! WebSocket frames to an agent leaves in one write (one TLS record, one syscall) instead of
//! one write per frame.
//!
//! The agents' WebSocket (`http/agent.rs`) writes through it: its writer feeds every message
//! queued for the agent, then flushes once. The gathering buffer exists only between the first
//! write of a burst and its flush; an idle agent's connection holds none (a master keeps one
//! connection per agent, thousands of them). A burst larger than [`GATHER_LIMIT`] goes out in
//! several writes.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Most bytes gathered before they are written without waiting for the flush.
pub(crate) const GATHER_LIMIT: usize = 64 * 1024;

/// `S` with its writes gathered until flushed (see the module docs).
#[derive(Debug)]
pub(crate) struct Coalesce<S> {
    inner: S,
    buf: Vec<u8>,
    /// Bytes of `buf` already written to `inner`.
    written: usize,
}

impl<S> Coalesce<S> {
    pub(crate) fn new(inner: S) -> Coalesce<S> {
        Coalesce {
            inner,
            buf: Vec::new(),
            written: 0,
        }
    }
}

impl<S: AsyncWrite + Unpin> Coalesce<S> {
    /// Writes out what is gathered, then lets the buffer go.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.buf.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.buf = Vec::new();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalesce<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalesce<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.buf.len() + data.len() > GATHER_LIMIT {
            ready!(this.poll_drain(cx))?;
            if data.len() >= GATHER_LIMIT {
                return Pin::new(&mut this.inner).poll_write(cx, data);
            }
        }
        this.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Counts the writes that reach it.
    #[derive(Default)]
    struct Counting {
        writes: usize,
        bytes: Vec<u8>,
    }

    impl AsyncWrite for Counting {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.writes += 1;
            self.bytes.extend_from_slice(data);
            Poll::Ready(Ok(data.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn writes_wait_for_the_flush_and_the_buffer_goes_with_it() {
        let mut c = Coalesce::new(Counting::default());
        for i in 0..10u8 {
            c.write_all(&[i; 100]).await.expect("write");
        }
        assert_eq!(c.inner.writes, 0);
        assert!(c.buf.capacity() >= 1000);
        c.flush().await.expect("flush");
        assert_eq!(c.inner.writes, 1);
        assert_eq!(c.inner.bytes.len(), 1000);
        assert_eq!(&c.inner.bytes[100..200], &[1u8; 100][..]);
        assert_eq!(c.buf.capacity(), 0, "no buffer between bursts");
    }

    #[tokio::test]
    async fn a_burst_over_the_limit_is_written_in_order() {
        let mut c = Coalesce::new(Counting::default());
        let small = vec![1u8; GATHER_LIMIT - 10];
        let big = vec![2u8; GATHER_LIMIT + 5];
        c.write_all(&small).await.expect("small");
        c.write_all(&big).await.expect("big");
        c.write_all(&[3u8; 7]).await.expect("tail");
        c.shutdown().await.expect("shutdown");
        let b = &c.inner.bytes;
        assert_eq!(b.len(), small.len() + big.len() + 7);
        assert!(b[..small.len()].iter().all(|&x| x == 1));
        assert!(b[small.len()..small.len() + big.len()]
            .iter()
            .all(|&x| x == 2));
        assert!(b[b.len() - 7..].iter().all(|&x| x == 3));
        assert_eq!(c.buf.capacity(), 0);
    }

    #[tokio::test]
    async fn reads_pass_through() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut c = Coalesce::new(a);
        b.write_all(b"hello").await.expect("write");
        let mut got = [0u8; 5];
        c.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"hello");
    }
}

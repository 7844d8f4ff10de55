//! A stream's request messages, read off its HTTP/2 body.
//!
//! tonic's `Streaming` keeps its read buffer as large as the largest message the stream has
//! carried. A state-of-the-world proxy's endpoint ACK names every EDS cluster (about 100 KB
//! with 2,000 services), so 1,000 such streams held some 130 MB of buffers between ACKs.
//! This reader frames gRPC messages itself (a compressed flag, a 4-byte length, the
//! message), lets a large message's buffer go with the message, and holds no buffer at all
//! while it waits for the next one.

use bytes::{Buf, Bytes, BytesMut};
use futures::Stream;
use http_body::Body as _;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tonic::body::Body;
use tonic::Status;

/// The gRPC message header: a compressed flag and a big-endian length.
const HEADER: usize = 5;

/// A buffer that grew past this for one message is not kept for the next.
const KEEP: usize = 16 * 1024;

/// The request messages of one stream, decoded as they arrive.
pub struct Requests<T> {
    body: Body,
    buf: BytesMut,
    decode: fn(Bytes) -> Result<T, Status>,
    max: usize,
    done: bool,
}

impl<T> Requests<T> {
    /// Reads `body`, decoding each message with `decode`; a message over `max` bytes ends
    /// the stream with `RESOURCE_EXHAUSTED`.
    pub fn new(body: Body, decode: fn(Bytes) -> Result<T, Status>, max: usize) -> Self {
        Requests {
            body,
            buf: BytesMut::new(),
            decode,
            max,
            done: false,
        }
    }

    /// The next whole message in the buffer, if there is one.
    fn take_message(&mut self) -> Result<Option<Bytes>, Status> {
        if self.buf.len() < HEADER {
            return Ok(None);
        }
        if self.buf[0] != 0 {
            return Err(Status::unimplemented(
                "compressed request messages are not supported: send them uncompressed",
            ));
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > self.max {
            return Err(Status::resource_exhausted(format!(
                "a request message of {len} bytes is over the limit of {} bytes",
                self.max
            )));
        }
        let Some(missing) = (HEADER + len)
            .checked_sub(self.buf.len())
            .filter(|m| *m > 0)
        else {
            self.buf.advance(HEADER);
            let message = self.buf.split_to(len).freeze();
            if len > KEEP {
                // The rest shares the message's allocation: copy it (usually nothing) so
                // that the allocation goes when the message does.
                self.buf = BytesMut::from(&self.buf[..]);
            }
            return Ok(Some(message));
        };
        self.buf.reserve(missing);
        Ok(None)
    }
}

impl<T> Stream for Requests<T> {
    type Item = Result<T, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            match this.take_message() {
                Ok(Some(message)) => return Poll::Ready(Some((this.decode)(message))),
                Ok(None) => {}
                Err(status) => {
                    this.done = true;
                    this.buf = BytesMut::new();
                    return Poll::Ready(Some(Err(status)));
                }
            }
            if this.done {
                if this.buf.is_empty() {
                    return Poll::Ready(None);
                }
                this.buf = BytesMut::new();
                return Poll::Ready(Some(Err(Status::internal(
                    "the request stream ended inside a message",
                ))));
            }
            let polled = Pin::new(&mut this.body).poll_frame(cx);
            if polled.is_pending() && this.buf.is_empty() && this.buf.capacity() > 0 {
                // Waiting for the proxy's next request (most of a stream's life): hold no
                // buffer. A state-of-the-world proxy's smaller ACKs (up to KEEP) would
                // otherwise keep theirs between requests.
                this.buf = BytesMut::new();
            }
            match ready!(polled) {
                Some(Ok(frame)) => {
                    // Trailers carry nothing a request needs.
                    if let Ok(data) = frame.into_data() {
                        this.buf.extend_from_slice(&data);
                    }
                }
                Some(Err(status)) => {
                    this.done = true;
                    this.buf = BytesMut::new();
                    return Poll::Ready(Some(Err(status)));
                }
                None => this.done = true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn framed(messages: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for m in messages {
            out.push(0);
            out.extend_from_slice(&(m.len() as u32).to_be_bytes());
            out.extend_from_slice(m);
        }
        out
    }

    /// A body that hands over `bytes` in chunks of `chunk` bytes.
    fn body(bytes: Vec<u8>, chunk: usize) -> Body {
        let chunks: Vec<Result<http_body::Frame<Bytes>, Status>> = bytes
            .chunks(chunk)
            .map(|c| Ok(http_body::Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        Body::new(http_body_util::StreamBody::new(futures::stream::iter(
            chunks,
        )))
    }

    fn echo(b: Bytes) -> Result<Vec<u8>, Status> {
        Ok(b.to_vec())
    }

    #[tokio::test]
    async fn messages_split_across_frames_and_frames_across_messages_come_out_whole() {
        let big = vec![7u8; 100_000];
        let bytes = framed(&[b"one", &big, b"", b"three"]);
        for chunk in [1, 3, 5, 4096, 1 << 20] {
            let mut r = Requests::new(body(bytes.clone(), chunk), echo, 1 << 20);
            let mut got = Vec::new();
            while let Some(m) = r.next().await {
                got.push(m.expect("a message"));
            }
            assert_eq!(got.len(), 4, "chunk {chunk}");
            assert_eq!(got[0], b"one");
            assert_eq!(got[1], big);
            assert!(got[2].is_empty());
            assert_eq!(got[3], b"three");
            assert!(
                r.buf.capacity() <= KEEP,
                "chunk {chunk}: {}",
                r.buf.capacity()
            );
        }
    }

    #[tokio::test]
    async fn a_large_message_does_not_keep_its_buffer() {
        let big = vec![1u8; 200_000];
        let mut r = Requests::new(body(framed(&[&big]), 8192), echo, 1 << 20);
        let message = r.next().await.expect("a message").expect("whole");
        assert_eq!(message.len(), 200_000);
        assert!(r.buf.capacity() <= KEEP, "{}", r.buf.capacity());
        assert!(r.next().await.is_none());
    }

    #[tokio::test]
    async fn a_stream_waiting_for_its_next_request_holds_no_buffer() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, Status>>(4);
        let body = Body::new(http_body_util::StreamBody::new(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        ));
        let mut r = Requests::new(body, echo, 1 << 20);
        // A 4 KB request in two frames (the buffer, reserved for the rest of the message
        // after the first, grows past it): under KEEP, so the buffer is not let go with the
        // message.
        let bytes = framed(&[&[7u8; 4096]]);
        let (a, b) = bytes.split_at(3000);
        for part in [a, b] {
            let frame = http_body::Frame::data(Bytes::copy_from_slice(part));
            tx.send(Ok(frame)).await.expect("the reader is there");
        }
        let message = r.next().await.expect("a message").expect("whole");
        assert_eq!(message.len(), 4096);
        drop(message);
        assert!(
            r.buf.capacity() > 0,
            "the buffer has room left to give back"
        );
        // Nothing more has come: the reader waits, and holds no buffer while it does.
        let waiting = futures::poll!(r.next());
        assert!(waiting.is_pending());
        assert_eq!(r.buf.capacity(), 0);
        // The next request is read as before.
        let frame = http_body::Frame::data(Bytes::from(framed(&[b"next"])));
        tx.send(Ok(frame)).await.expect("the reader is there");
        let message = r.next().await.expect("a message").expect("whole");
        assert_eq!(message, b"next".to_vec());
    }

    #[tokio::test]
    async fn oversized_compressed_and_truncated_messages_end_the_stream_with_a_status() {
        let mut r = Requests::new(body(framed(&[&[0u8; 64]]), 16), echo, 32);
        let err = r.next().await.expect("an item").expect_err("too large");
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        assert!(err.message().contains("64 bytes"), "{}", err.message());

        let mut compressed = framed(&[b"x"]);
        compressed[0] = 1;
        let mut r = Requests::new(body(compressed, 16), echo, 32);
        let err = r.next().await.expect("an item").expect_err("compressed");
        assert_eq!(err.code(), tonic::Code::Unimplemented);

        let mut truncated = framed(&[b"hello"]);
        truncated.pop();
        let mut r = Requests::new(body(truncated, 16), echo, 32);
        let err = r.next().await.expect("an item").expect_err("truncated");
        assert_eq!(err.code(), tonic::Code::Internal);
        assert!(r.next().await.is_none());
    }
}

//! The ADS gRPC service at the HTTP/2 level: requests are decoded with tonic's streaming
//! decoder, responses are [`WireMessage`]s whose shared parts go to HTTP/2 as they are
//! (tonic's generated server would copy every response into a per-stream buffer first).

use crate::peer::Peer;
use crate::request::SotwRequest;
use crate::wire::WireMessage;
use bytes::{BufMut, Bytes, BytesMut};
use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use http_body::Frame;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::Status;

/// The gRPC service name.
pub const SERVICE_NAME: &str = "envoy.service.discovery.v3.AggregatedDiscoveryService";
const SOTW_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const DELTA_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// Largest request accepted (Envoy's requests name every EDS cluster: thousands).
const MAX_REQUEST_BYTES: usize = 64 << 20;

/// What a stream sends: responses, or the status that ends it.
pub type ResponseTx = mpsc::Sender<Result<WireMessage, Status>>;

pub use crate::incoming::Requests;

/// Starts one stream: given its decoded requests and where to send responses.
pub trait StreamHandler: Clone + Send + Sync + 'static {
    /// Runs a state-of-the-world stream for `peer`.
    fn sotw(&self, peer: Peer, input: Requests<SotwRequest>, tx: ResponseTx);
    /// Runs a delta stream for `peer`.
    fn delta(&self, peer: Peer, input: Requests<Box<DeltaDiscoveryRequest>>, tx: ResponseTx);
}

/// The tower service tonic's router serves.
#[derive(Debug, Clone)]
pub struct AdsService<H> {
    handler: H,
}

impl<H> AdsService<H> {
    /// A service running streams with `handler`.
    pub fn new(handler: H) -> Self {
        AdsService { handler }
    }
}

impl<H> tonic::server::NamedService for AdsService<H> {
    const NAME: &'static str = SERVICE_NAME;
}

impl<H: StreamHandler> tonic::codegen::Service<http::Request<Body>> for AdsService<H> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let response = if let Some(status) = unsupported_encoding(&req) {
            status.into_http()
        } else {
            let peer = Peer::of_request(&req);
            match req.uri().path() {
                SOTW_PATH => {
                    let (tx, rx) = mpsc::channel(16);
                    let input = Requests::new(
                        req.into_body(),
                        crate::request::SotwRequest::parse,
                        MAX_REQUEST_BYTES,
                    );
                    self.handler.sotw(peer, input, tx);
                    grpc_response(rx)
                }
                DELTA_PATH => {
                    let (tx, rx) = mpsc::channel(16);
                    let input = Requests::new(req.into_body(), decode_prost, MAX_REQUEST_BYTES);
                    self.handler.delta(peer, input, tx);
                    grpc_response(rx)
                }
                other => Status::unimplemented(format!("no method {other}")).into_http(),
            }
        };
        Box::pin(std::future::ready(Ok(response)))
    }
}

/// Decodes one protobuf request message, boxed: a stream's future keeps the requests it
/// holds across its awaits, and a delta request with its node is over 500 bytes inline.
pub(crate) fn decode_prost<T: prost::Message + Default>(message: Bytes) -> Result<Box<T>, Status> {
    T::decode(message)
        .map(Box::new)
        .map_err(|e| Status::invalid_argument(format!("malformed request: {e}")))
}

/// Requests are read uncompressed: a client that compresses them is told so up front
/// rather than failing on its first message.
fn unsupported_encoding(req: &http::Request<Body>) -> Option<Status> {
    let enc = req.headers().get("grpc-encoding")?;
    if enc.as_bytes() == b"identity" {
        return None;
    }
    Some(Status::unimplemented(format!(
        "request compression {} is not supported; send uncompressed messages",
        String::from_utf8_lossy(enc.as_bytes())
    )))
}

fn grpc_response(rx: mpsc::Receiver<Result<WireMessage, Status>>) -> http::Response<Body> {
    let mut resp = http::Response::new(Body::new(WireBody::new(rx)));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    resp
}

/// Parts at least this long go to HTTP/2 as they are; shorter ones are gathered into one
/// chunk of up to [`GATHER_BYTES`] (a frame per 300-byte resource would cost more than
/// the copy).
const SHARE_BYTES: usize = 4096;
const GATHER_BYTES: usize = 16 * 1024;

/// Room for parts a stream's queue keeps once it is empty.
const KEEP_PARTS: usize = 16;

/// A response body: each message's parts in order, then the trailers with the stream's
/// gRPC status.
#[derive(Debug)]
pub struct WireBody {
    rx: mpsc::Receiver<Result<WireMessage, Status>>,
    parts: VecDeque<Bytes>,
    done: bool,
}

impl WireBody {
    /// A body following `rx`.
    pub fn new(rx: mpsc::Receiver<Result<WireMessage, Status>>) -> Self {
        WireBody {
            rx,
            parts: VecDeque::new(),
            done: false,
        }
    }

    fn next_chunk(&mut self) -> Option<Bytes> {
        let Some(first) = self.parts.pop_front() else {
            // A push of many resources grew the queue (a slot per resource); a thousand
            // idle streams would keep that room for good (the soak's memory step).
            if self.parts.capacity() > KEEP_PARTS {
                self.parts.shrink_to(KEEP_PARTS);
            }
            return None;
        };
        if first.len() >= SHARE_BYTES || self.parts.front().is_none_or(|p| p.len() >= SHARE_BYTES) {
            return Some(first);
        }
        let mut gathered = BytesMut::with_capacity(GATHER_BYTES);
        gathered.put_slice(&first);
        while let Some(p) = self.parts.front() {
            if p.len() >= SHARE_BYTES || gathered.len() + p.len() > GATHER_BYTES {
                break;
            }
            gathered.put_slice(p);
            self.parts.pop_front();
        }
        Some(gathered.freeze())
    }
}

fn trailers(status: &Status) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    if let Err(e) = status.add_header(&mut map) {
        // Only a message that cannot be a header value gets here: send the code alone.
        tracing::debug!(error = %e, "gRPC status message not sendable as a header");
        map.clear();
        let code = i32::from(status.code()).to_string();
        if let Ok(v) = http::HeaderValue::from_str(&code) {
            map.insert("grpc-status", v);
        }
    }
    map
}

impl http_body::Body for WireBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        loop {
            if let Some(chunk) = self.next_chunk() {
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
            if self.done {
                return Poll::Ready(None);
            }
            match self.rx.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(msg))) => self.parts.extend(msg.into_parts()),
                Poll::Ready(Some(Err(status))) => {
                    self.done = true;
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers(&status)))));
                }
                Poll::Ready(None) => {
                    self.done = true;
                    let ok = Status::new(tonic::Code::Ok, "");
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers(&ok)))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.parts.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn part(n: usize, b: u8) -> Bytes {
        Bytes::from(vec![b; n])
    }

    #[tokio::test]
    async fn an_emptied_queue_gives_back_the_room_a_large_push_took() {
        let (tx, rx) = mpsc::channel(4);
        let mut body = WireBody::new(rx);
        body.parts.extend((0..500).map(|i| part(5000, i as u8)));
        let grown = body.parts.capacity();
        assert!(grown >= 500);
        for _ in 0..500 {
            let _ = body.frame().await;
        }
        assert!(body.parts.is_empty());
        // The next poll finds it empty and shrinks it, then waits for the next message.
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(20), body.frame()).await;
        assert!(waiting.is_err(), "no message yet");
        assert!(
            body.parts.capacity() <= KEEP_PARTS,
            "{}",
            body.parts.capacity()
        );
        drop(tx);
    }

    #[tokio::test]
    async fn small_parts_are_gathered_and_large_ones_shared() {
        let (tx, rx) = mpsc::channel(4);
        let big = part(100_000, 9);
        let mut body = WireBody::new(rx);
        body.parts
            .extend([part(10, 1), part(20, 2), big.clone(), part(30, 3)]);
        drop(tx);
        let mut chunks = Vec::new();
        let mut trailer = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.expect("no error");
            match frame.into_data() {
                Ok(d) => chunks.push(d),
                Err(f) => trailer = f.into_trailers().ok(),
            }
        }
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[0].len(), 30);
        assert_eq!(
            chunks[1].as_ptr(),
            big.as_ptr(),
            "the large part is not copied"
        );
        assert_eq!(chunks[2].len(), 30);
        let trailer = trailer.expect("trailers end the stream");
        assert_eq!(
            trailer.get("grpc-status").map(|v| v.as_bytes()),
            Some(&b"0"[..])
        );
    }

    /// Counts the streams it was asked to run.
    #[derive(Clone, Default)]
    struct Counting(std::sync::Arc<std::sync::atomic::AtomicUsize>);

    impl StreamHandler for Counting {
        fn sotw(&self, _peer: Peer, _input: Requests<SotwRequest>, _tx: ResponseTx) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        fn delta(
            &self,
            _peer: Peer,
            _input: Requests<Box<DeltaDiscoveryRequest>>,
            _tx: ResponseTx,
        ) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    async fn call(path: &str, encoding: Option<&str>) -> (http::Response<Body>, usize) {
        use tonic::codegen::Service;
        let handler = Counting::default();
        let mut svc = AdsService::new(handler.clone());
        let mut req = http::Request::builder().uri(format!("http://cp{path}"));
        if let Some(e) = encoding {
            req = req.header("grpc-encoding", e);
        }
        let req = req.body(Body::empty()).expect("request");
        let resp = svc.call(req).await.expect("infallible");
        (resp, handler.0.load(std::sync::atomic::Ordering::SeqCst))
    }

    fn grpc_status(resp: &http::Response<Body>) -> Option<&[u8]> {
        resp.headers().get("grpc-status").map(|v| v.as_bytes())
    }

    #[tokio::test]
    async fn routes_both_streams_and_refuses_the_rest() {
        let (resp, started) = call(SOTW_PATH, None).await;
        assert_eq!(started, 1);
        assert_eq!(
            resp.headers().get("content-type").map(|v| v.as_bytes()),
            Some(&b"application/grpc"[..])
        );
        assert_eq!(grpc_status(&resp), None, "the status comes in the trailers");
        let (_, started) = call(DELTA_PATH, Some("identity")).await;
        assert_eq!(started, 1);
        let (resp, started) = call(
            "/envoy.service.discovery.v3.AggregatedDiscoveryService/Nope",
            None,
        )
        .await;
        assert_eq!((started, grpc_status(&resp)), (0, Some(&b"12"[..])));
        let (resp, started) = call(SOTW_PATH, Some("gzip")).await;
        assert_eq!((started, grpc_status(&resp)), (0, Some(&b"12"[..])));
    }

    #[tokio::test]
    async fn a_stream_error_ends_in_its_status() {
        let (tx, rx) = mpsc::channel(4);
        tx.send(Err(Status::invalid_argument("node id missing")))
            .await
            .expect("open");
        let mut body = WireBody::new(rx);
        let frame = body.frame().await.expect("a frame").expect("no error");
        let trailers = frame.into_trailers().expect("trailers");
        assert_eq!(
            trailers.get("grpc-status").map(|v| v.as_bytes()),
            Some(&b"3"[..])
        );
        assert!(body.frame().await.is_none());
    }
}

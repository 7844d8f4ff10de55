//! The lab's gRPC demo app (image `isthmus-lab/grpc-echo`) and its client: service
//! `isthmus.lab.Echo` with a unary method and a server-streaming one. Each reply names the
//! pod that answered and the caller's identity as its sidecar forwarded it
//! (`x-forwarded-client-cert`), so a call across clusters shows both ends and the mTLS.

use std::net::SocketAddr;
use std::pin::Pin;
use tonic::{Request, Response, Status};

/// The generated client and server.
pub mod grpc {
    include!(concat!(env!("OUT_DIR"), "/isthmus.lab.Echo.rs"));
}

/// A request: a message, and for `ServerStream` how many replies to send.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoRequest {
    /// Echoed back.
    #[prost(string, tag = "1")]
    pub message: String,
    /// Number of replies `ServerStream` sends (at most [`MAX_REPLIES`]).
    #[prost(uint32, tag = "2")]
    pub count: u32,
}

/// A reply.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoReply {
    /// The request's message.
    #[prost(string, tag = "1")]
    pub message: String,
    /// The pod that answered.
    #[prost(string, tag = "2")]
    pub pod: String,
    /// The reply's place in a stream, from 0.
    #[prost(uint32, tag = "3")]
    pub index: u32,
    /// The caller's SPIFFE identity from `x-forwarded-client-cert`; empty without mTLS.
    #[prost(string, tag = "4")]
    pub caller: String,
}

/// The most replies one `ServerStream` call gets.
pub const MAX_REPLIES: u32 = 1000;

/// The server: answers as `pod`.
#[derive(Debug, Clone)]
pub struct EchoServer {
    pod: String,
}

/// The `URI=` of an `x-forwarded-client-cert` header (the caller's SPIFFE identity).
fn caller<T>(req: &Request<T>) -> String {
    req.metadata()
        .get("x-forwarded-client-cert")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split([';', ','])
                .find_map(|part| part.trim().strip_prefix("URI="))
                .map(str::to_string)
        })
        .unwrap_or_default()
}

type ReplyStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<EchoReply, Status>> + Send>>;

#[tonic::async_trait]
impl grpc::echo_server::Echo for EchoServer {
    async fn unary(&self, req: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        let caller = caller(&req);
        Ok(Response::new(EchoReply {
            message: req.into_inner().message,
            pod: self.pod.clone(),
            index: 0,
            caller,
        }))
    }

    type ServerStreamStream = ReplyStream;

    async fn server_stream(
        &self,
        req: Request<EchoRequest>,
    ) -> Result<Response<ReplyStream>, Status> {
        let caller = caller(&req);
        let req = req.into_inner();
        if req.count > MAX_REPLIES {
            return Err(Status::invalid_argument(format!(
                "count {} is more than {MAX_REPLIES}",
                req.count
            )));
        }
        let pod = self.pod.clone();
        let replies = (0..req.count).map(move |index| {
            Ok(EchoReply {
                message: req.message.clone(),
                pod: pod.clone(),
                index,
                caller: caller.clone(),
            })
        });
        Ok(Response::new(Box::pin(tokio_stream::iter(replies))))
    }
}

/// Serves the echo service on `addr` (HTTP/2 without TLS, as an application behind its
/// sidecar does) until the process stops.
pub async fn serve(addr: SocketAddr, pod: String) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(grpc::echo_server::EchoServer::new(EchoServer { pod }))
        .serve(addr)
        .await
}

/// Calls `url` (such as `http://grpc-echo.bar.global:7070`): one unary call, then a stream
/// of `stream` replies; returns one line per reply.
pub async fn call(url: &str, message: &str, stream: u32) -> Result<Vec<String>, String> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_string())
        .map_err(|e| format!("`{url}` is not a URL: {e}"))?
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;
    let mut client = grpc::echo_client::EchoClient::new(channel);
    let show = |r: &EchoReply| {
        format!(
            "message={} pod={} index={} caller={}",
            r.message,
            r.pod,
            r.index,
            if r.caller.is_empty() { "-" } else { &r.caller }
        )
    };
    let mut lines = Vec::new();
    let reply = client
        .unary(EchoRequest {
            message: message.to_string(),
            count: 0,
        })
        .await
        .map_err(|s| format!("Unary: {} {}", s.code(), s.message()))?
        .into_inner();
    lines.push(format!("unary {}", show(&reply)));
    if stream > 0 {
        let mut replies = client
            .server_stream(EchoRequest {
                message: message.to_string(),
                count: stream,
            })
            .await
            .map_err(|s| format!("ServerStream: {} {}", s.code(), s.message()))?
            .into_inner();
        let mut n = 0;
        while let Some(r) = replies.message().await.map_err(|s| {
            format!(
                "ServerStream after {n} replies: {} {}",
                s.code(),
                s.message()
            )
        })? {
            lines.push(format!("stream {}", show(&r)));
            n += 1;
        }
        lines.push(format!("stream ended after {n} replies"));
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unary_and_streaming_calls_come_back_from_the_pod() {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = probe.local_addr().expect("addr");
        drop(probe);
        tokio::spawn(serve(addr, "grpc-echo-0".into()));
        let url = format!("http://{addr}");
        let mut lines = Err(String::new());
        for _ in 0..50 {
            lines = call(&url, "hi", 3).await;
            if lines.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let lines = lines.expect("the server answers");
        assert_eq!(
            lines,
            [
                "unary message=hi pod=grpc-echo-0 index=0 caller=-",
                "stream message=hi pod=grpc-echo-0 index=0 caller=-",
                "stream message=hi pod=grpc-echo-0 index=1 caller=-",
                "stream message=hi pod=grpc-echo-0 index=2 caller=-",
                "stream ended after 3 replies",
            ]
        );
        let e = call(&url, "hi", MAX_REPLIES + 1)
            .await
            .expect_err("too many");
        assert!(
            e.contains("InvalidArgument") || e.contains("invalid"),
            "{e}"
        );
    }

    #[test]
    fn the_caller_is_the_uri_of_the_forwarded_client_cert() {
        let mut req = Request::new(());
        req.metadata_mut().insert(
            "x-forwarded-client-cert",
            "By=spiffe://cluster.local/ns/bar/sa/default;Hash=ab;Subject=\"\";URI=spiffe://cluster.local/ns/foo/sa/sleep"
                .parse()
                .expect("header"),
        );
        assert_eq!(caller(&req), "spiffe://cluster.local/ns/foo/sa/sleep");
        assert_eq!(caller(&Request::new(())), "");
    }
}

//! One HTTP/2 connection to an API server, shared by every request and watch of a client, as
//! client-go keeps it.
//!
//! The connection is dialed (TCP, TLS offering only `h2`, the HTTP/2 handshake) by a task of
//! its own, and every request waits for that task. hyper-util's pooled client dials from inside
//! the first request's future instead, and makes later requests wait for it under an
//! "HTTP/2 connecting" lock: a request future that has started dialing and is then left
//! unpolled (a watch stream inside a `select!` whose other branch calls the same API server)
//! leaves everyone waiting for ever. Here nobody's future drives the dial but the dial's own.

use futures::future::{BoxFuture, FutureExt, Shared};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::BoxError;

/// How long a connection may stay silent before it is pinged, and how long the ping may take
/// before the connection is given up: client-go's HTTP/2 health check (`ReadIdleTimeout`
/// 30 s, `PingTimeout` 15 s), so that a server gone without a word is noticed and every watch
/// on the connection starts again on a new one.
const PING_IDLE: Duration = Duration::from_secs(30);
const PING_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a connection could not be made, shared by every request that waited for it.
type DialError = Arc<BoxError>;

/// A dial in progress or done: its result, for every request that waits for it.
type Dial = Shared<BoxFuture<'static, Result<SendRequest<kube::client::Body>, DialError>>>;

/// Where and how to dial.
#[derive(Clone)]
pub(crate) struct Target {
    /// Host and port of the API server.
    pub(crate) authority: String,
    /// The name its certificate must hold (the URL's host, or the kubeconfig's
    /// `tls-server-name`).
    pub(crate) server_name: rustls_pki_types::ServerName<'static>,
    /// kube-rs's TLS settings for the server (roots, client certificate); ALPN is set here.
    pub(crate) tls: Arc<rustls::ClientConfig>,
    /// The kubeconfig's connect timeout, over TCP and TLS.
    pub(crate) connect_timeout: Option<Duration>,
}

/// A `tower` service sending each request on the one live HTTP/2 connection, dialing a new one
/// (in a task of its own) when there is none or it has closed.
#[derive(Clone)]
pub(crate) struct OneConnection {
    target: Arc<Target>,
    current: Arc<std::sync::Mutex<Option<Dial>>>,
}

impl OneConnection {
    /// A client of `target`; nothing is dialed before the first request.
    pub(crate) fn new(target: Target) -> OneConnection {
        OneConnection {
            target: Arc::new(target),
            current: Arc::new(std::sync::Mutex::new(None)),
        }
    }

    /// The dial to wait for: the current one, or a new one when there is none.
    fn dial(&self) -> Dial {
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(d) = current.as_ref() {
            return d.clone();
        }
        let target = self.target.clone();
        let task = tokio::spawn(async move { dial(&target).await });
        let d = async move {
            match task.await {
                Ok(r) => r.map_err(Arc::new),
                Err(e) => Err(Arc::new(BoxError::from(e))),
            }
        }
        .boxed()
        .shared();
        *current = Some(d.clone());
        d
    }

    /// Forgets `dial` (failed, or its connection closed) unless a newer one replaced it.
    fn forget(&self, dial: &Dial) {
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.as_ref().is_some_and(|d| d.ptr_eq(dial)) {
            *current = None;
        }
    }
}

impl tower::Service<Request<kube::client::Body>> for OneConnection {
    type Response = Response<Incoming>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Response<Incoming>, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<kube::client::Body>) -> Self::Future {
        let this = self.clone();
        async move {
            // A connection found closed is dialed again once; a failed dial is the request's
            // error (its caller retries, as kube-rs's watchers do, with backoff).
            for _ in 0..2 {
                let dial = this.dial();
                let mut sender = match dial.clone().await {
                    Ok(s) => s,
                    Err(e) => {
                        this.forget(&dial);
                        return Err(BoxError::from(e.to_string()));
                    }
                };
                if sender.is_closed() || sender.ready().await.is_err() {
                    this.forget(&dial);
                    continue;
                }
                return Ok(sender.send_request(request).await?);
            }
            Err(BoxError::from(
                "the connection to the API server closed as the request was sent",
            ))
        }
        .boxed()
    }
}

/// TCP, then TLS offering only `h2`, then the HTTP/2 handshake; the connection is served by a
/// task of its own, which ends when it closes.
async fn dial(target: &Target) -> Result<SendRequest<kube::client::Body>, BoxError> {
    let connect = async {
        let at = &target.authority;
        let tcp = tokio::net::TcpStream::connect(at)
            .await
            .map_err(|e| format!("cannot connect to {at}: {e}"))?;
        tcp.set_nodelay(true)
            .map_err(|e| format!("cannot connect to {at}: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(target.tls.clone())
            .connect(target.server_name.clone(), tcp)
            .await
            .map_err(|e| format!("TLS handshake with {at} failed: {e}"))?;
        Ok::<_, String>(tls)
    };
    let tls = match target.connect_timeout {
        Some(t) => tokio::time::timeout(t, connect)
            .await
            .map_err(|_| format!("connecting to {} timed out after {t:?}", target.authority))??,
        None => connect.await?,
    };
    if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
        return Err(format!(
            "the API server at {} does not speak HTTP/2 over TLS; set DISABLE_HTTP2=1 to use HTTP/1.1",
            target.authority
        )
        .into());
    }
    let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(PING_IDLE)
        .keep_alive_timeout(PING_TIMEOUT)
        .handshake(TokioIo::new(tls))
        .await?;
    let authority = target.authority.clone();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(server = %authority, error = %e, "API server connection closed");
        }
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(port: u16) -> Target {
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        Target {
            authority: format!("127.0.0.1:{port}"),
            server_name: rustls_pki_types::ServerName::try_from("127.0.0.1").expect("an address"),
            tls: Arc::new(tls),
            connect_timeout: Some(Duration::from_secs(5)),
        }
    }

    /// A loopback port bound but not listening: connections to it are refused, and no other
    /// test can take it while the socket lives.
    fn refused_port() -> (tokio::net::TcpSocket, u16) {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind(([127, 0, 0, 1], 0).into()).expect("bind");
        let port = socket.local_addr().expect("address").port();
        (socket, port)
    }

    #[tokio::test]
    async fn a_server_that_is_not_there_is_unreachable() {
        let (_held, port) = refused_port();
        let e = dial(&target(port)).await.expect_err("nothing listens");
        let text = e.to_string();
        assert!(text.starts_with("cannot connect to 127.0.0.1:"), "{text}");
        assert_eq!(crate::source::failure_reason(&text), "unreachable");
    }

    #[tokio::test]
    async fn a_server_that_does_not_speak_tls_is_a_tls_problem() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = l.local_addr().expect("address").port();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            while let Ok((mut s, _)) = l.accept().await {
                let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
            }
        });
        let text = dial(&target(port)).await.expect_err("no TLS").to_string();
        assert!(text.starts_with("TLS handshake with 127.0.0.1:"), "{text}");
        assert!(
            crate::source::failure_reason(&text).starts_with("TLS"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_failed_dial_is_the_request_error_and_the_next_request_dials_again() {
        use tower::Service;
        let (_held, port) = refused_port();
        let mut client = OneConnection::new(target(port));
        let request = || {
            Request::get("https://127.0.0.1/version")
                .body(kube::client::Body::empty())
                .expect("a request")
        };
        let first = client.call(request()).await.expect_err("refused");
        assert!(first.to_string().contains("cannot connect"), "{first}");
        assert!(client.current.lock().expect("lock").is_none(), "forgotten");
        assert!(client.call(request()).await.is_err());
    }
}

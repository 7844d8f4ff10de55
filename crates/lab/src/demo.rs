//! Built-in demo workloads, chosen by the image a Deployment names: `sleep` (curl
//! images: a pod to `exec` into), `httpbin` (`/ip`, `/headers`, `/get`, `/status/CODE`,
//! `/delay/N`), helloworld (`/hello` answering `Hello version: vN, instance: POD`) and a gRPC
//! echo service ([`crate::grpc_echo`]).

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// A demo application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DemoApp {
    /// Does nothing; commands are exec'd in its pod.
    Sleep,
    /// httpbin.
    Httpbin,
    /// helloworld of the given version (`v1`).
    Helloworld(String),
    /// One of Bookinfo's services.
    Bookinfo(crate::bookinfo::Bookinfo),
    /// An issuer's public keys, as an identity provider publishes them: `/jwks.json` answers
    /// the `JWKS` environment variable, `/.well-known/openid-configuration` names `ISSUER`
    /// and `JWKS_URI` (image `isthmus-lab/jwks`).
    Jwks,
    /// The gRPC echo service `isthmus.lab.Echo` (unary and server streaming) on every port
    /// (image `isthmus-lab/grpc-echo`).
    GrpcEcho,
}

/// The image is not one the lab can run.
#[derive(Debug, thiserror::Error)]
#[error("image `{0}` is not a built-in demo app; the lab runs sleep (curl images such as governmentpaas/curl-ssl or curlimages/curl), httpbin (kennethreitz/httpbin, mccutchen/go-httpbin) helloworld (istio/examples-helloworld-vN), bookinfo (istio/examples-bookinfo-productpage-v1, -details-v1, -ratings-v1, -reviews-v1/v2/v3) a JWKS server (isthmus-lab/jwks) and a gRPC echo service (isthmus-lab/grpc-echo)")]
pub struct UnknownImage(pub String);

impl DemoApp {
    /// The app for `image`.
    pub fn for_image(image: &str) -> Result<DemoApp, UnknownImage> {
        let name = image
            .rsplit('/')
            .next()
            .unwrap_or(image)
            .split(':')
            .next()
            .unwrap_or("");
        if name.contains("httpbin") {
            return Ok(DemoApp::Httpbin);
        }
        if name == "jwks" {
            return Ok(DemoApp::Jwks);
        }
        if name == "grpc-echo" {
            return Ok(DemoApp::GrpcEcho);
        }
        if let Some(b) = crate::bookinfo::Bookinfo::for_image_name(name) {
            return Ok(DemoApp::Bookinfo(b));
        }
        if let Some(v) = name.strip_prefix("examples-helloworld-") {
            return Ok(DemoApp::Helloworld(v.to_string()));
        }
        if name.contains("curl") || name == "sleep" {
            return Ok(DemoApp::Sleep);
        }
        Err(UnknownImage(image.to_string()))
    }
}

struct Req {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

fn title_case(h: &str) -> String {
    h.split('-')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + &c.as_str().to_ascii_lowercase(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

fn headers_map(req: &Req) -> serde_json::Value {
    let map: serde_json::Map<String, serde_json::Value> = req
        .headers
        .iter()
        .map(|(k, v)| (title_case(k), serde_json::Value::String(v.clone())))
        .collect();
    serde_json::Value::Object(map)
}

fn origin(req: &Req, peer: SocketAddr) -> String {
    req.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("x-forwarded-for"))
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| peer.ip().to_string())
}

fn json(v: serde_json::Value) -> (u16, &'static str, String) {
    let mut body = serde_json::to_string_pretty(&v).unwrap_or_default();
    body.push('\n');
    (200, "application/json", body)
}

async fn respond(
    app: &DemoApp,
    pod: &str,
    req: &Req,
    peer: SocketAddr,
) -> (u16, &'static str, String) {
    use serde_json::json;
    let path = req.path.split('?').next().unwrap_or("/");
    match (app, path) {
        (DemoApp::Httpbin, "/ip") => json(json!({ "origin": origin(req, peer) })),
        (DemoApp::Httpbin, "/headers") => json(json!({ "headers": headers_map(req) })),
        (DemoApp::Httpbin, "/get") | (DemoApp::Httpbin, "/") => json(json!({
            "args": {},
            "headers": headers_map(req),
            "origin": origin(req, peer),
            "url": req.path,
        })),
        (DemoApp::Httpbin, p) if p == "/anything" || p.starts_with("/anything/") => json(json!({
            "headers": headers_map(req),
            "method": req.method,
            "origin": origin(req, peer),
            "url": req.path,
        })),
        (DemoApp::Httpbin, p) if p.starts_with("/status/") => {
            let code = p["/status/".len()..]
                .parse::<u16>()
                .ok()
                .filter(|c| (100..600).contains(c));
            match code {
                Some(c) => (c, "text/plain", String::new()),
                None => (400, "text/plain", "invalid status code\n".into()),
            }
        }
        (DemoApp::Httpbin, p) if p.starts_with("/delay/") => {
            match p["/delay/".len()..].parse::<f64>() {
                Ok(s) if s >= 0.0 => {
                    tokio::time::sleep(Duration::from_secs_f64(s.min(10.0))).await;
                    json(json!({ "headers": headers_map(req), "origin": origin(req, peer) }))
                }
                _ => (400, "text/plain", "invalid delay\n".into()),
            }
        }
        (DemoApp::Helloworld(v), "/hello") => (
            200,
            "text/plain",
            format!("Hello version: {v}, instance: {pod}\n"),
        ),
        (DemoApp::Bookinfo(b), p) => crate::bookinfo::respond(b, pod, p).await,
        (DemoApp::Jwks, "/jwks.json") => match std::env::var("JWKS") {
            Ok(doc) => (200, "application/json", doc),
            Err(_) => (404, "text/plain", "no JWKS set\n".into()),
        },
        (DemoApp::Jwks, "/.well-known/openid-configuration") => json(json!({
            "issuer": std::env::var("ISSUER").unwrap_or_default(),
            "jwks_uri": std::env::var("JWKS_URI").unwrap_or_default(),
        })),
        _ => (404, "text/plain", format!("{} not found\n", req.path)),
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        418 => "I'm a teapot",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

async fn connection(app: DemoApp, pod: String, sock: tokio::net::TcpStream, peer: SocketAddr) {
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::new(r);
    loop {
        let mut line = String::new();
        match r.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut parts = line.split_whitespace();
        let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
            return;
        };
        let mut req = Req {
            method: method.to_string(),
            path: path.to_string(),
            headers: Vec::new(),
        };
        loop {
            let mut h = String::new();
            match r.read_line(&mut h).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                req.headers
                    .push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let header = |name: &str| {
            req.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.to_ascii_lowercase())
        };
        let body_len: u64 = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if body_len > 0 {
            let mut sink = tokio::io::sink();
            if tokio::io::copy(&mut (&mut r).take(body_len), &mut sink)
                .await
                .is_err()
            {
                return;
            }
        }
        if matches!(app, DemoApp::Httpbin)
            && req.path == "/ws"
            && header("upgrade").as_deref() == Some("websocket")
        {
            let key = req
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("sec-websocket-key"))
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            let resp = format!(
                "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {}\r\n\r\n",
                websocket_accept(&key)
            );
            if w.write_all(resp.as_bytes()).await.is_ok() {
                websocket_echo(r, w).await;
            }
            return;
        }
        let close = header("connection").as_deref() == Some("close");
        let (code, ctype, body) = respond(&app, &pod, &req, peer).await;
        let mut resp = format!(
            "HTTP/1.1 {code} {}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\n{}\r\n",
            reason(code),
            body.len(),
            if close { "connection: close\r\n" } else { "" }
        );
        if req.method != "HEAD" {
            resp.push_str(&body);
        }
        if w.write_all(resp.as_bytes()).await.is_err() || close {
            return;
        }
    }
}

/// RFC 6455's `Sec-WebSocket-Accept` for a client's key.
fn websocket_accept(key: &str) -> String {
    use base64::Engine as _;
    let digest = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes(),
    );
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// httpbin's `/ws`: a WebSocket echo. Each (masked) client frame comes back unmasked with
/// its opcode, a ping as a pong; a close frame is echoed and ends the connection.
async fn websocket_echo<R, W>(mut r: R, mut w: W)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::AsyncReadExt;
    loop {
        let mut head = [0u8; 2];
        if r.read_exact(&mut head).await.is_err() {
            return;
        }
        let opcode = head[0] & 0x0f;
        let masked = head[1] & 0x80 != 0;
        let len = match head[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                if r.read_exact(&mut b).await.is_err() {
                    return;
                }
                u64::from(u16::from_be_bytes(b))
            }
            127 => {
                let mut b = [0u8; 8];
                if r.read_exact(&mut b).await.is_err() {
                    return;
                }
                u64::from_be_bytes(b)
            }
            n => u64::from(n),
        };
        // A demo: frames up to 1 MiB.
        let Ok(len) = usize::try_from(len) else {
            return;
        };
        if len > 1 << 20 {
            return;
        }
        let mut mask = [0u8; 4];
        if masked && r.read_exact(&mut mask).await.is_err() {
            return;
        }
        let mut payload = vec![0u8; len];
        if r.read_exact(&mut payload).await.is_err() {
            return;
        }
        if masked {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
        }
        let reply_opcode = if opcode == 0x9 { 0xA } else { opcode };
        let mut frame = vec![0x80 | reply_opcode];
        match payload.len() {
            n if n < 126 => frame.push(n as u8),
            n if n <= usize::from(u16::MAX) => {
                frame.push(126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&payload);
        if w.write_all(&frame).await.is_err() || opcode == 0x8 {
            return;
        }
    }
}

/// Echoes every byte back, for the raw-TCP ports of seed 002 (`bar` on 9090).
async fn echo(mut sock: tokio::net::TcpStream) {
    let (mut r, mut w) = sock.split();
    let _ = tokio::io::copy(&mut r, &mut w).await;
}

/// Runs `app` on the HTTP `ports` and a TCP echo on `tcp_ports` until the process stops.
pub async fn serve(
    app: DemoApp,
    pod: String,
    ports: Vec<u16>,
    tcp_ports: Vec<u16>,
) -> std::io::Result<()> {
    let mut tasks = Vec::new();
    for port in tcp_ports {
        let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
        tasks.push(tokio::spawn(async move {
            loop {
                if let Ok((sock, _)) = listener.accept().await {
                    tokio::spawn(echo(sock));
                }
            }
        }));
    }
    if app == DemoApp::GrpcEcho {
        for port in ports {
            let addr = SocketAddr::from(([0, 0, 0, 0], port));
            let pod = pod.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(error) = crate::grpc_echo::serve(addr, pod).await {
                    tracing::error!(%error, %addr, "gRPC echo stopped");
                }
            }));
        }
    } else if app != DemoApp::Sleep {
        for port in ports {
            let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
            let app = app.clone();
            let pod = pod.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    if let Ok((sock, peer)) = listener.accept().await {
                        tokio::spawn(connection(app.clone(), pod.clone(), sock, peer));
                    }
                }
            }));
        }
    }
    if tasks.is_empty() {
        // `sleep 3650d`, as the sample does.
        std::future::pending::<()>().await;
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(image: &str) -> Option<DemoApp> {
        DemoApp::for_image(image).ok()
    }

    #[test]
    fn the_websocket_accept_is_rfc_6455s() {
        // RFC 6455, section 1.3.
        assert_eq!(
            websocket_accept("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[tokio::test]
    async fn websocket_frames_come_back_unmasked_and_a_ping_as_a_pong() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, server) = tokio::io::duplex(1024);
        let (r, w) = tokio::io::split(server);
        let task = tokio::spawn(websocket_echo(r, w));
        let mask = [1u8, 2, 3, 4];
        let frame = |opcode: u8, payload: &[u8]| {
            let mut f = vec![0x80 | opcode, 0x80 | payload.len() as u8];
            f.extend_from_slice(&mask);
            f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
            f
        };
        client
            .write_all(&frame(0x1, b"hello-ws"))
            .await
            .expect("send");
        let mut got = [0u8; 10];
        client.read_exact(&mut got).await.expect("echo");
        assert_eq!(&got[..2], &[0x81, 8]);
        assert_eq!(&got[2..], b"hello-ws");
        client.write_all(&frame(0x9, b"p")).await.expect("ping");
        let mut pong = [0u8; 3];
        client.read_exact(&mut pong).await.expect("pong");
        assert_eq!(pong, [0x8A, 1, b'p']);
        client.write_all(&frame(0x8, b"")).await.expect("close");
        let mut close = [0u8; 2];
        client.read_exact(&mut close).await.expect("close echoed");
        assert_eq!(close, [0x88, 0]);
        task.await.expect("echo ends after close");
    }

    #[test]
    fn images_select_apps() {
        assert_eq!(
            app("docker.io/kennethreitz/httpbin"),
            Some(DemoApp::Httpbin)
        );
        assert_eq!(
            app("docker.io/mccutchen/go-httpbin:v2.15.0"),
            Some(DemoApp::Httpbin)
        );
        assert_eq!(
            app("docker.io/istio/examples-helloworld-v2"),
            Some(DemoApp::Helloworld("v2".into()))
        );
        assert_eq!(app("governmentpaas/curl-ssl"), Some(DemoApp::Sleep));
        assert_eq!(app("curlimages/curl"), Some(DemoApp::Sleep));
        let err = DemoApp::for_image("nginx:1.25").expect_err("unknown");
        assert!(err
            .to_string()
            .contains("`nginx:1.25` is not a built-in demo app"));
    }

    #[test]
    fn headers_are_shown_as_httpbin_does() {
        assert_eq!(
            title_case("x-forwarded-client-cert"),
            "X-Forwarded-Client-Cert"
        );
    }

    #[tokio::test]
    async fn httpbin_and_helloworld_answer_over_tcp() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(async move {
            let mut n = 0;
            while let Ok((s, peer)) = l.accept().await {
                let app = if n == 0 {
                    DemoApp::Httpbin
                } else {
                    DemoApp::Helloworld("v1".into())
                };
                n += 1;
                tokio::spawn(connection(app, "hello-0".into(), s, peer));
            }
        });
        let ask = |req: &'static str| async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
            s.write_all(req.as_bytes()).await.expect("write");
            let mut out = String::new();
            s.read_to_string(&mut out).await.expect("read");
            out
        };
        let out = ask("GET /headers HTTP/1.1\r\nHost: x\r\nx-forwarded-client-cert: URI=spiffe://a\r\nConnection: close\r\n\r\n").await;
        assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
        assert!(
            out.contains("\"X-Forwarded-Client-Cert\": \"URI=spiffe://a\""),
            "{out}"
        );
        let out = ask("GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
        assert!(
            out.ends_with("Hello version: v1, instance: hello-0\n"),
            "{out}"
        );
    }
}

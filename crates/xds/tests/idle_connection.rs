//! What an idle HTTP/2 connection holds, on both ends, once a large request and its answer
//! have passed: the h2 this workspace builds (third_party/h2.patch) gives its write, read and
//! HPACK buffers back, where h2 as published keeps about 36 KB per connection for its whole
//! life. An xDS server holds one such connection per proxy, nearly always idle.
//!
//! Alone in its test binary: it reads the allocator's count of bytes in use, which other
//! tests running beside it would move.

use bytes::Bytes;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// Connections opened; the figure is their mean.
const CONNECTIONS: usize = 100;
/// The request body: like a state-of-the-world proxy's endpoint ACK naming a thousand
/// clusters, larger than one 16 KB frame.
const REQUEST_BYTES: usize = 45_000;
/// The answer's body.
const RESPONSE_BYTES: usize = 1_000;

/// Bytes the allocator has handed out and not had back (glibc's `mallinfo2`).
fn heap_in_use() -> usize {
    #[allow(unsafe_code)]
    // SAFETY: mallinfo2 takes nothing and returns a plain struct by value.
    let info = unsafe { libc::mallinfo2() };
    info.uordblks + info.hblkhd
}

/// Serves one connection: reads each request's body whole, answers with RESPONSE_BYTES,
/// then keeps the connection open until the client goes.
async fn serve(socket: TcpStream) {
    let Ok(mut conn) = h2::server::handshake(socket).await else {
        return;
    };
    while let Some(Ok((request, mut respond))) = conn.accept().await {
        tokio::spawn(async move {
            let mut body = request.into_body();
            let mut read = 0;
            while let Some(Ok(chunk)) = body.data().await {
                read += chunk.len();
                let _ = body.flow_control().release_capacity(chunk.len());
            }
            assert_eq!(read, REQUEST_BYTES);
            let response = http::Response::new(());
            let mut send = respond.send_response(response, false).expect("respond");
            send.send_data(Bytes::from(vec![2u8; RESPONSE_BYTES]), true)
                .expect("send the answer");
        });
    }
}

/// Opens a connection to `addr`, sends one large request and reads its answer; returns what
/// keeps the connection open.
async fn exchange(addr: std::net::SocketAddr) -> h2::client::SendRequest<Bytes> {
    let socket = TcpStream::connect(addr).await.expect("connect");
    let (client, conn) = h2::client::handshake(socket).await.expect("handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut client = client.ready().await.expect("ready");
    let request = http::Request::post(format!("http://{addr}/ads"))
        .body(())
        .expect("request");
    let (response, mut send) = client.send_request(request, false).expect("send");
    let mut body = Bytes::from(vec![1u8; REQUEST_BYTES]);
    while !body.is_empty() {
        send.reserve_capacity(body.len());
        let granted = std::future::poll_fn(|cx| send.poll_capacity(cx))
            .await
            .expect("capacity")
            .expect("the stream is open");
        let chunk = body.split_to(granted.min(body.len()));
        send.send_data(chunk, body.is_empty()).expect("send data");
    }
    let mut response = response.await.expect("response").into_body();
    let mut read = 0;
    while let Some(chunk) = response.data().await {
        let chunk = chunk.expect("response data");
        read += chunk.len();
        let _ = response.flow_control().release_capacity(chunk.len());
    }
    assert_eq!(read, RESPONSE_BYTES);
    client
}

#[tokio::test(flavor = "current_thread")]
async fn an_idle_connection_gives_its_http2_buffers_back() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(serve(socket));
        }
    });
    // One connection first, so that what every connection shares (the runtime's and the
    // allocator's first pages) is not counted against the others.
    let first = exchange(addr).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let before = heap_in_use();
    let mut open = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        open.push(exchange(addr).await);
    }
    // Every connection is idle now; let both ends see it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let per_connection = heap_in_use().saturating_sub(before) / CONNECTIONS;
    println!("an idle connection holds {per_connection} bytes, client and server together");

    // h2 as published holds, per connection: the server 16 KB to write, 16 KB to read (one
    // 16 KB frame of the request grew it) and 4 KB for HPACK; the client 16 KB, 8 KB and
    // 4 KB: 64 KB, besides the connections' state. Patched, the buffers are gone.
    assert!(
        per_connection < 32 * 1024,
        "an idle connection holds {per_connection} bytes (client and server); h2's buffers \
         were kept: is third_party/h2.patch applied (Cargo.toml's [patch.crates-io])?"
    );
    drop(open);
    drop(first);
}

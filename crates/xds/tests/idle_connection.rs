//! What an idle HTTP/2 connection holds, on both ends, once a large request and its answer
//! have passed: the h2 this workspace builds (third_party/h2.patch) gives its write and read
//! buffers back and takes its HPACK buffer only when it decodes a Huffman-coded string,
//! where h2 as published keeps 16 KB to write, 8-16 KB to read and 4 KB of HPACK buffer on
//! each end for the connection's whole life. An xDS server holds one connection per proxy,
//! nearly always idle.
//!
//! Measured with a counting allocator, alone in its test binary (other tests beside it would
//! move the counts).
#![allow(unsafe_code)]

use bytes::Bytes;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// Counts live bytes, and live allocations of [`LARGE`] bytes or more.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static LIVE_LARGE: AtomicIsize = AtomicIsize::new(0);
/// The smallest of h2's buffers (the HPACK one) is 4 KB; a connection's own state is less.
const LARGE: usize = 4096;

fn large(size: usize) -> isize {
    isize::from(size >= LARGE)
}

// SAFETY: every call is passed on to the system allocator unchanged; only counters are kept.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        LIVE_LARGE.fetch_add(large(l.size()), Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        LIVE_LARGE.fetch_sub(large(l.size()), Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n as isize - l.size() as isize, Ordering::Relaxed);
        LIVE_LARGE.fetch_add(large(n) - large(l.size()), Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// Connections opened; the figure is their mean.
const CONNECTIONS: usize = 100;
/// The request body: like a state-of-the-world proxy's endpoint ACK naming a thousand
/// clusters, larger than one 16 KB frame.
const REQUEST_BYTES: usize = 45_000;
/// The answer's body.
const RESPONSE_BYTES: usize = 1_000;

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
    // listener's first allocations) is not counted against the others.
    let first = exchange(addr).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let bytes_before = LIVE.load(Ordering::Relaxed);
    let large_before = LIVE_LARGE.load(Ordering::Relaxed);
    let mut open = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        open.push(exchange(addr).await);
    }
    // Every connection is idle now; let both ends see it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let bytes = (LIVE.load(Ordering::Relaxed) - bytes_before) / CONNECTIONS as isize;
    let large = LIVE_LARGE.load(Ordering::Relaxed) - large_before;
    println!(
        "an idle connection holds {bytes} bytes, client and server together; \
         {large} allocations of 4 KB or more stay live for {CONNECTIONS} connections"
    );

    // h2 as published keeps, per connection: the server 16 KB to write, 16 KB to read (one
    // 16 KB frame of the request grew it) and 4 KB for HPACK; the client 16 KB, 8 KB and
    // 4 KB: six buffers of 4 KB or more and 64 KB, besides the connections' own state.
    // Patched, none of those buffers stays.
    let hint = "is third_party/h2.patch applied (Cargo.toml's [patch.crates-io])?";
    assert!(
        large < (CONNECTIONS / 10) as isize,
        "{large} buffers of 4 KB or more stay live for {CONNECTIONS} idle connections: \
         h2 keeps its buffers; {hint}"
    );
    assert!(
        bytes < 20 * 1024,
        "an idle connection holds {bytes} bytes (client and server); {hint}"
    );
    drop(open);
    drop(first);
}

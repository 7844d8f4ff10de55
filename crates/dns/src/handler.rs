//! The DNS server: a UDP fast path for standard queries (`fast`) and hickory-server's
//! protocol handling, with our name table behind both.

use crate::table::{Answer, NameTable};
use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{
    Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_server::proto::rr::{rdata::A, Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Time to live of every answer: short, so that a deleted ServiceEntry stops resolving
/// within seconds.
pub const TTL_SECS: u32 = 5;

/// Serving failed.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// A socket could not be bound.
    #[error("mesh DNS cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The server stopped with an error.
    #[error("mesh DNS on {addr} stopped: {message}")]
    Stopped {
        /// The address.
        addr: SocketAddr,
        /// Why.
        message: String,
    },
}

/// The request handler: answers from the current table, and forwards names the table does
/// not hold to the upstream resolvers (NXDOMAIN when there are none).
#[derive(Debug, Clone)]
pub struct MeshDns {
    table: watch::Receiver<Arc<NameTable>>,
    upstreams: Arc<[SocketAddr]>,
}

impl MeshDns {
    /// A handler following `table`, answering NXDOMAIN for names it does not hold.
    pub fn new(table: watch::Receiver<Arc<NameTable>>) -> Self {
        Self::forwarding(table, &[])
    }

    /// A handler following `table` that forwards names it does not hold to `upstreams`, tried
    /// in order.
    pub fn forwarding(table: watch::Receiver<Arc<NameTable>>, upstreams: &[SocketAddr]) -> Self {
        MeshDns {
            table,
            upstreams: upstreams.into(),
        }
    }
}

/// The first upstream's answer to `packet` over UDP, asked again over TCP when it was
/// truncated (TC); `None` when no upstream answered.
async fn forward(packet: &[u8], upstreams: &[SocketAddr]) -> Option<Vec<u8>> {
    for &upstream in upstreams {
        match crate::proxy::forward_udp(packet, upstream, None).await {
            Ok(r) if r.get(2).is_some_and(|f| f & 0x02 != 0) => {
                match crate::proxy::forward_tcp(packet, upstream, None).await {
                    Ok(full) => return Some(full),
                    Err(error) => tracing::debug!(%upstream, %error, "upstream resolver over TCP"),
                }
            }
            Ok(r) => return Some(r),
            Err(error) => tracing::debug!(%upstream, %error, "upstream resolver did not answer"),
        }
    }
    None
}

fn failed(request: &Request, code: ResponseCode) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = code;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}

impl MeshDns {
    /// The upstreams' answer to `query`, asked as a new message (the client's own went
    /// through hickory's parser, and may have come over TCP).
    async fn ask_upstream(
        &self,
        query: &hickory_server::proto::op::Query,
        recursion_desired: bool,
    ) -> Option<hickory_server::proto::op::Message> {
        let mut ask = hickory_server::proto::op::Message::query();
        ask.metadata.recursion_desired = recursion_desired;
        ask.add_query(query.clone());
        let packet = ask.to_vec().ok()?;
        let answer = forward(&packet, &self.upstreams).await?;
        hickory_server::proto::op::Message::from_vec(&answer).ok()
    }
}

#[async_trait::async_trait]
impl RequestHandler for MeshDns {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let builder = MessageResponseBuilder::new(&request.queries, None);
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = true;
        metadata.recursion_available = false;
        let mut answers: Vec<Record> = Vec::new();
        let mut authorities: Vec<Record> = Vec::new();
        let query = match request.request_info() {
            Ok(info)
                if request.metadata.message_type == MessageType::Query
                    && request.metadata.op_code == OpCode::Query =>
            {
                Some(info.query.clone())
            }
            Ok(_) => {
                metadata.response_code = ResponseCode::NotImp;
                None
            }
            Err(_) => {
                metadata.response_code = ResponseCode::FormErr;
                None
            }
        };
        if let Some(query) = query {
            let name = Name::from(query.name().clone());
            let table = self.table.borrow().clone();
            match table.lookup(&name.to_ascii()) {
                Answer::NxDomain if !self.upstreams.is_empty() => {
                    match self
                        .ask_upstream(query.original(), request.metadata.recursion_desired)
                        .await
                    {
                        Some(upstream) => {
                            metadata.authoritative = false;
                            metadata.recursion_available = upstream.metadata.recursion_available;
                            metadata.response_code = upstream.metadata.response_code;
                            answers = upstream.answers;
                            authorities = upstream.authorities;
                        }
                        None => metadata.response_code = ResponseCode::ServFail,
                    }
                }
                Answer::NxDomain => metadata.response_code = ResponseCode::NXDomain,
                Answer::Found(addrs) => {
                    if matches!(query.query_type(), RecordType::A | RecordType::ANY) {
                        answers = addrs
                            .into_iter()
                            .map(|a| Record::from_rdata(name.clone(), TTL_SECS, RData::A(A(a))))
                            .collect();
                    }
                }
            }
            tracing::debug!(%name, qtype = %query.query_type(), code = %metadata.response_code, answers = answers.len(), "DNS query");
        }
        let response = builder.build(metadata, answers.iter(), authorities.iter(), [], []);
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(error) => {
                tracing::warn!(%error, "cannot send DNS response");
                failed(request, ResponseCode::ServFail)
            }
        }
    }
}

/// Serves `table` on UDP and TCP at `addr` until the process stops, forwarding names it
/// does not hold to `upstreams` (NXDOMAIN when empty).
pub async fn serve(
    addr: SocketAddr,
    table: watch::Receiver<Arc<NameTable>>,
    upstreams: &[SocketAddr],
) -> Result<(), DnsError> {
    let bind = |source| DnsError::Bind { addr, source };
    let udp = tokio::net::UdpSocket::bind(addr).await.map_err(bind)?;
    let tcp = tokio::net::TcpListener::bind(addr).await.map_err(bind)?;
    serve_on(udp, tcp, table, upstreams).await
}

/// Serves `table` on sockets the caller bound, forwarding names it does not hold to
/// `upstreams` (NXDOMAIN when empty).
pub async fn serve_on(
    udp: tokio::net::UdpSocket,
    tcp: tokio::net::TcpListener,
    table: watch::Receiver<Arc<NameTable>>,
    upstreams: &[SocketAddr],
) -> Result<(), DnsError> {
    let addr = udp.local_addr().map_err(|source| DnsError::Bind {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })?;
    // The full handler serves TCP and, on a loopback socket, the UDP queries the fast path
    // relays to it.
    let careful = tokio::net::UdpSocket::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .await
        .map_err(|source| DnsError::Bind { addr, source })?;
    let careful_addr = careful
        .local_addr()
        .map_err(|source| DnsError::Bind { addr, source })?;
    let mut server = hickory_server::Server::new(MeshDns::forwarding(table.clone(), upstreams));
    server.register_socket(careful);
    server.register_listener(tcp, Duration::from_secs(5), 4096);
    tokio::spawn(udp_fast_path(
        Arc::new(udp),
        table,
        careful_addr,
        upstreams.into(),
    ));
    tracing::info!(%addr, ?upstreams, "serving mesh DNS (UDP and TCP)");
    server
        .block_until_done()
        .await
        .map_err(|e| DnsError::Stopped {
            addr,
            message: e.to_string(),
        })
}

/// Answers standard UDP queries from the table, forwards those for names it does not hold
/// to `upstreams` (when there are any), and relays the rest to the full handler at
/// `careful`; each answer goes back to its client.
async fn udp_fast_path(
    udp: Arc<tokio::net::UdpSocket>,
    table: watch::Receiver<Arc<NameTable>>,
    careful: SocketAddr,
    upstreams: Arc<[SocketAddr]>,
) {
    let mut table = table;
    let mut current = table.borrow_and_update().clone();
    let mut buf = vec![0u8; 4096];
    let mut out = Vec::with_capacity(512);
    let mut name = String::new();
    loop {
        let (n, peer) = match udp.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(error) => {
                // ICMP errors from earlier sends show up here; the socket stays usable.
                tracing::debug!(%error, "mesh DNS receive");
                continue;
            }
        };
        let packet = &buf[..n];
        match crate::fast::parse(packet, &mut name) {
            Some(q) => {
                if table.has_changed().unwrap_or(false) {
                    current = table.borrow_and_update().clone();
                }
                if !upstreams.is_empty() && current.lookup_normalized(&name).is_none() {
                    let (packet, udp, upstreams) =
                        (packet.to_vec(), udp.clone(), upstreams.clone());
                    tokio::spawn(async move {
                        let answer = match forward(&packet, &upstreams).await {
                            Some(a) => Some(a),
                            None => crate::fast::servfail(&packet),
                        };
                        if let Some(a) = answer {
                            let _ = udp.send_to(&a, peer).await;
                        }
                    });
                    continue;
                }
                crate::fast::answer(&q, packet, &name, &current, &mut out);
                if let Err(error) = udp.send_to(&out, peer).await {
                    tracing::debug!(%error, %peer, "cannot send DNS response");
                }
            }
            None => {
                let packet = packet.to_vec();
                let udp = udp.clone();
                tokio::spawn(async move {
                    if let Some(resp) = relay(&packet, careful).await {
                        let _ = udp.send_to(&resp, peer).await;
                    }
                });
            }
        }
    }
}

async fn relay(packet: &[u8], careful: SocketAddr) -> Option<Vec<u8>> {
    let s = tokio::net::UdpSocket::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .await
        .ok()?;
    s.send_to(packet, careful).await.ok()?;
    let mut b = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(3), s.recv(&mut b))
        .await
        .ok()?
        .ok()?;
    b.truncate(n);
    Some(b)
}

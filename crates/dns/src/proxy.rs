//! The agent's DNS proxy (Istio's DNS capture): serves a pod's DNS from the name table the
//! control plane last sent, answers a mesh name with the pod's first search domain appended
//! as a CNAME of that name (the first name a resolver with `ndots:5` asks), and forwards
//! everything else to the pod's own resolvers, from a socket carrying [`ProxyConfig::mark`]
//! so that the capture rules let it pass. Until the first table arrives every query is
//! forwarded; when no resolver answers the client gets SERVFAIL at once, not a timeout.

use crate::demand::{Wants, WAIT_FOR_CONFIG};
use crate::fast;
use crate::table::NameTable;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// How long an upstream resolver gets to answer one query.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// The table an agent serves: `None` until the control plane sent one.
pub type CurrentTable = watch::Receiver<Option<Arc<NameTable>>>;

/// Where the proxy forwards and how.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The pod's resolvers (its resolv.conf `nameserver`s, port 53), tried in order.
    pub upstreams: Vec<SocketAddr>,
    /// The pod's first search domain (`NAMESPACE.svc.cluster.local`), lower case, without
    /// dots at either end.
    pub search: Option<String>,
    /// The socket mark (`SO_MARK`) of forwarded queries, excluded from capture.
    pub mark: Option<u32>,
    /// On-demand scoping: the names the pod resolved; a mesh name's answer waits until its
    /// service is in force in the sidecar. `None`: answered at once.
    pub wants: Option<Arc<Wants>>,
}

/// The pod's resolver settings, read from resolv.conf text: its nameservers (port 53) and
/// its first search domain.
pub fn read_resolv_conf(text: &str) -> (Vec<SocketAddr>, Option<String>) {
    let mut upstreams = Vec::new();
    let mut search = None;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                if let Some(ip) = words
                    .next()
                    .and_then(|w| w.parse::<std::net::IpAddr>().ok())
                {
                    upstreams.push(SocketAddr::new(ip, 53));
                }
            }
            Some("search" | "domain") => {
                search = words
                    .next()
                    .map(|w| w.trim_matches('.').to_ascii_lowercase())
                    .filter(|w| !w.is_empty());
            }
            _ => {}
        }
    }
    (upstreams, search)
}

/// What the table says about a query's name.
#[derive(Debug, PartialEq)]
enum Local<'a> {
    /// The table holds the name.
    Found(&'a [Ipv4Addr]),
    /// The name is a table name with the first search domain appended.
    Alias(&'a str, &'a [Ipv4Addr]),
    /// Not the mesh's: ask the pod's resolvers.
    Forward,
}

fn local<'a>(table: &'a NameTable, name: &'a str, search: Option<&str>) -> Local<'a> {
    if let Some(a) = table.lookup_normalized(name) {
        return Local::Found(a);
    }
    if let Some(base) = search.and_then(|s| {
        name.strip_suffix(s)
            .and_then(|rest| rest.strip_suffix('.'))
            .filter(|b| !b.is_empty())
    }) {
        if let Some(a) = table.lookup_normalized(base) {
            return Local::Alias(base, a);
        }
    }
    Local::Forward
}

/// The answer from the table to `packet`, or `None` when it is to be forwarded.
pub fn answer_locally(
    packet: &[u8],
    table: Option<&NameTable>,
    search: Option<&str>,
) -> Option<Vec<u8>> {
    answer_from_table(packet, table, search).map(|(r, _)| r)
}

/// [`answer_locally`], with the table's name the answer is for (the query's name, or the
/// name it is an alias of).
fn answer_from_table(
    packet: &[u8],
    table: Option<&NameTable>,
    search: Option<&str>,
) -> Option<(Vec<u8>, String)> {
    let table = table?;
    let mut name = String::new();
    let q = fast::parse(packet, &mut name)?;
    let mut out = Vec::new();
    let answered = match local(table, &name, search) {
        Local::Found(a) => {
            fast::write_response(&q, packet, 0, None, a, &mut out);
            normalize(&name)
        }
        Local::Alias(base, a) => {
            fast::write_response(&q, packet, 0, Some(base), a, &mut out);
            normalize(base)
        }
        Local::Forward => return None,
    };
    Some((out, answered))
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Holds a table answer for `name` until its service is in force in the sidecar (on-demand
/// scoping), at most [`WAIT_FOR_CONFIG`].
async fn wait_for_config(wants: Option<&Wants>, name: &str) {
    let Some(w) = wants else { return };
    if w.is_in_force(name) {
        w.touch(name);
        return;
    }
    let started = std::time::Instant::now();
    if w.want(name, WAIT_FOR_CONFIG).await {
        tracing::debug!(
            name,
            ms = started.elapsed().as_millis(),
            "answering once the sidecar holds the service"
        );
    } else {
        tracing::warn!(name, waited = ?WAIT_FOR_CONFIG, "the sidecar did not get this service's configuration in time; answering anyway");
    }
}

/// A socket of `kind` for `upstream`'s family, carrying `mark` (`SO_MARK`, needs
/// CAP_NET_ADMIN) when given.
fn socket_for(
    upstream: SocketAddr,
    kind: socket2::Type,
    mark: Option<u32>,
) -> std::io::Result<socket2::Socket> {
    let s = socket2::Socket::new(socket2::Domain::for_address(upstream), kind, None)?;
    if let Some(mark) = mark {
        s.set_mark(mark)?;
    }
    s.set_nonblocking(true)?;
    Ok(s)
}

pub(crate) async fn forward_udp(
    packet: &[u8],
    upstream: SocketAddr,
    mark: Option<u32>,
) -> std::io::Result<Vec<u8>> {
    let sock =
        tokio::net::UdpSocket::from_std(socket_for(upstream, socket2::Type::DGRAM, mark)?.into())?;
    sock.connect(upstream).await?;
    sock.send(packet).await?;
    let mut buf = vec![0u8; 4096];
    let deadline = tokio::time::Instant::now() + UPSTREAM_TIMEOUT;
    loop {
        let n = tokio::time::timeout_at(deadline, sock.recv(&mut buf))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))??;
        // Only the answer to this query (same id) is taken.
        if n >= 2 && packet.len() >= 2 && buf[..2] == packet[..2] {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

pub(crate) async fn forward_tcp(
    packet: &[u8],
    upstream: SocketAddr,
    mark: Option<u32>,
) -> std::io::Result<Vec<u8>> {
    let sock = tokio::net::TcpSocket::from_std_stream(
        socket_for(upstream, socket2::Type::STREAM, mark)?.into(),
    );
    let work = async {
        let mut s = sock.connect(upstream).await?;
        let len = u16::try_from(packet.len())
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "query too long"))?;
        s.write_all(&len.to_be_bytes()).await?;
        s.write_all(packet).await?;
        let n = s.read_u16().await?;
        let mut buf = vec![0u8; usize::from(n)];
        s.read_exact(&mut buf).await?;
        Ok(buf)
    };
    tokio::time::timeout(UPSTREAM_TIMEOUT, work)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))?
}

/// The response to one query: from the table, else from the first upstream that answers
/// (over TCP when the query came over TCP), else SERVFAIL. `None` only for packets that
/// are not queries at all.
pub async fn resolve(
    packet: &[u8],
    table: &CurrentTable,
    config: &ProxyConfig,
    tcp: bool,
) -> Option<Vec<u8>> {
    let current = table.borrow().clone();
    if let Some((r, name)) = answer_from_table(packet, current.as_deref(), config.search.as_deref())
    {
        wait_for_config(config.wants.as_deref(), &name).await;
        return Some(r);
    }
    for &upstream in &config.upstreams {
        let result = if tcp {
            forward_tcp(packet, upstream, config.mark).await
        } else {
            forward_udp(packet, upstream, config.mark).await
        };
        match result {
            Ok(r) => return Some(r),
            Err(error) => tracing::debug!(%upstream, %error, "upstream resolver did not answer"),
        }
    }
    fast::servfail(packet)
}

/// The SERVFAIL answer to a query no resolver answered (`None` for a packet that is not a
/// query).
pub fn servfail(packet: &[u8]) -> Option<Vec<u8>> {
    fast::servfail(packet)
}

/// Serves DNS on the given sockets until the process stops.
pub async fn serve_proxy(
    udp: tokio::net::UdpSocket,
    tcp: tokio::net::TcpListener,
    table: CurrentTable,
    config: ProxyConfig,
) {
    let config = Arc::new(config);
    let udp = Arc::new(udp);
    {
        let (table, config) = (table.clone(), config.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = match tcp.accept().await {
                    Ok(x) => x,
                    Err(error) => {
                        tracing::debug!(%error, "DNS proxy accept");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (table, config) = (table.clone(), config.clone());
                tokio::spawn(async move {
                    let _ = serve_tcp_client(stream, &table, &config).await;
                });
            }
        });
    }
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, peer) = match udp.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(error) => {
                tracing::debug!(%error, "DNS proxy receive");
                continue;
            }
        };
        let packet = &buf[..n];
        // The table's answers go out at once; forwarded queries in their own task.
        let current = table.borrow().clone();
        if let Some((r, name)) =
            answer_from_table(packet, current.as_deref(), config.search.as_deref())
        {
            match config.wants.as_ref().filter(|w| !w.is_in_force(&name)) {
                None => {
                    if let Some(w) = &config.wants {
                        w.touch(&name);
                    }
                    let _ = udp.send_to(&r, peer).await;
                }
                Some(wants) => {
                    let (udp, wants) = (udp.clone(), wants.clone());
                    tokio::spawn(async move {
                        wait_for_config(Some(&wants), &name).await;
                        let _ = udp.send_to(&r, peer).await;
                    });
                }
            }
            continue;
        }
        let packet = packet.to_vec();
        let (udp, table, config) = (udp.clone(), table.clone(), config.clone());
        tokio::spawn(async move {
            if let Some(r) = resolve(&packet, &table, &config, false).await {
                let _ = udp.send_to(&r, peer).await;
            }
        });
    }
}

async fn serve_tcp_client(
    mut stream: tokio::net::TcpStream,
    table: &CurrentTable,
    config: &ProxyConfig,
) -> std::io::Result<()> {
    loop {
        let n = match tokio::time::timeout(Duration::from_secs(10), stream.read_u16()).await {
            Ok(n) => n?,
            Err(_) => return Ok(()),
        };
        let mut packet = vec![0u8; usize::from(n)];
        stream.read_exact(&mut packet).await?;
        let Some(r) = resolve(&packet, table, config, true).await else {
            return Ok(());
        };
        let len = u16::try_from(r.len()).unwrap_or(u16::MAX);
        stream.write_all(&len.to_be_bytes()).await?;
        stream.write_all(&r[..usize::from(len)]).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut b = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            b.push(l.len() as u8);
            b.extend_from_slice(l.as_bytes());
        }
        b.push(0);
        b.extend_from_slice(&qtype.to_be_bytes());
        b.extend_from_slice(&1u16.to_be_bytes());
        b
    }

    fn table() -> NameTable {
        NameTable::from_entries(
            [(
                "httpbin.bar.global".to_string(),
                Ipv4Addr::new(127, 255, 0, 2),
            )],
            &[],
        )
    }

    /// Parses a response with hickory's decoder: what a real client reads.
    fn decode(b: &[u8]) -> hickory_server::proto::op::Message {
        hickory_server::proto::op::Message::from_vec(b).expect("a valid DNS message")
    }

    #[test]
    fn resolv_conf_gives_the_resolvers_and_the_first_search_domain() {
        let (up, search) = read_resolv_conf(
            "# lab\nnameserver 10.10.0.2\nnameserver fd00::1\nsearch Foo.svc.cluster.local. svc.cluster.local\noptions ndots:5\n",
        );
        assert_eq!(
            up,
            [
                "10.10.0.2:53".parse().expect("a"),
                "[fd00::1]:53".parse().expect("b")
            ]
        );
        assert_eq!(search.as_deref(), Some("foo.svc.cluster.local"));
        assert_eq!(read_resolv_conf("nameserver nope\n"), (vec![], None));
    }

    #[test]
    fn mesh_names_and_their_first_search_expansion_are_answered_from_the_table() {
        let t = table();
        let search = Some("foo.svc.cluster.local");
        let r = answer_locally(&query("httpbin.bar.global", 1), Some(&t), search).expect("local");
        let m = decode(&r);
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.answers[0].data.to_string(), "127.255.0.2");

        let r = answer_locally(
            &query("HTTPBIN.bar.global.foo.svc.cluster.local", 1),
            Some(&t),
            search,
        )
        .expect("an alias");
        let m = decode(&r);
        assert_eq!(m.answers.len(), 2, "{m:?}");
        assert_eq!(m.answers[0].data.to_string(), "httpbin.bar.global.");
        assert_eq!(m.answers[1].name.to_string(), "httpbin.bar.global.");
        assert_eq!(m.answers[1].data.to_string(), "127.255.0.2");

        // Other search domains, unknown names, and no table yet: forwarded.
        assert!(answer_locally(
            &query("httpbin.bar.global.svc.cluster.local", 1),
            Some(&t),
            search
        )
        .is_none());
        assert!(answer_locally(&query("example.com", 1), Some(&t), search).is_none());
        assert!(answer_locally(&query("httpbin.bar.global", 1), None, search).is_none());
        // AAAA of a mesh name: an empty answer, not a forward.
        let r = answer_locally(&query("httpbin.bar.global", 28), Some(&t), search).expect("local");
        assert!(decode(&r).answers.is_empty());
    }

    #[tokio::test]
    async fn with_no_resolver_answering_the_client_gets_servfail_at_once() {
        // A port nobody listens on: the kernel refuses at once.
        let free = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let upstream = free.local_addr().expect("addr");
        drop(free);
        let (_tx, rx) = watch::channel(Some(Arc::new(table())));
        let config = ProxyConfig {
            upstreams: vec![upstream],
            search: None,
            mark: None,
            wants: None,
        };
        let started = std::time::Instant::now();
        let r = resolve(&query("example.com", 1), &rx, &config, false)
            .await
            .expect("an answer");
        let m = decode(&r);
        assert_eq!(
            m.metadata.response_code,
            hickory_server::proto::op::ResponseCode::ServFail
        );
        assert_eq!(m.metadata.id, 0xabcd);
        assert!(
            started.elapsed() < UPSTREAM_TIMEOUT,
            "refused, not timed out"
        );
    }

    #[tokio::test]
    async fn unknown_names_are_forwarded_and_the_upstream_answer_relayed() {
        // An upstream that answers everything with one address.
        let up = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let upstream = up.local_addr().expect("addr");
        tokio::spawn(async move {
            let mut b = [0u8; 512];
            while let Ok((n, peer)) = up.recv_from(&mut b).await {
                let t = NameTable::from_entries(
                    [("example.com".to_string(), Ipv4Addr::new(192, 0, 2, 1))],
                    &[],
                );
                if let Some(r) = crate::fast::respond(&b[..n], &t) {
                    let _ = up.send_to(&r, peer).await;
                }
            }
        });
        let (_tx, rx) = watch::channel(Some(Arc::new(table())));
        let config = ProxyConfig {
            upstreams: vec![upstream],
            search: None,
            mark: None,
            wants: None,
        };
        let r = resolve(&query("example.com", 1), &rx, &config, false)
            .await
            .expect("an answer");
        assert_eq!(decode(&r).answers[0].data.to_string(), "192.0.2.1");
    }

    #[tokio::test]
    async fn with_on_demand_scoping_a_mesh_answer_waits_for_the_sidecars_configuration() {
        let (_tx, rx) = watch::channel(Some(Arc::new(table())));
        let wants = crate::demand::Wants::new();
        let config = ProxyConfig {
            upstreams: Vec::new(),
            search: Some("foo.svc.cluster.local".into()),
            mark: None,
            wants: Some(wants.clone()),
        };
        let mut asked = wants.asked();
        // Asked by its search-domain alias: the table's name is what is wanted.
        let q = query("httpbin.bar.global.foo.svc.cluster.local", 1);
        let lookup = tokio::spawn(async move { resolve(&q, &rx, &config, false).await });
        asked.changed().await.expect("the name was asked for");
        assert_eq!(wants.names(), ["httpbin.bar.global"]);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !lookup.is_finished(),
            "held until the sidecar has the service"
        );
        wants.set_in_force(crate::demand::InForce {
            all: false,
            names: Arc::new(["httpbin.bar.global".to_string()].into()),
            ..Default::default()
        });
        let r = lookup.await.expect("joined").expect("an answer");
        assert_eq!(decode(&r).answers[1].data.to_string(), "127.255.0.2");
    }
}

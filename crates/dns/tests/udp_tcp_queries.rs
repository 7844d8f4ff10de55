//! The mesh DNS over real sockets on loopback, with seed 000's cluster1 configuration:
//! Kubernetes names, ServiceEntry VIPs, templates, NXDOMAIN and empty AAAA, a table update
//! taking effect without a restart, and names the mesh does not own forwarded upstream.

use hickory_server::proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_server::proto::rr::{Name, RData, RecordType};
use isthmus_dns::{serve_on, NameTable, Template};
use isthmus_model::{MeshSnapshot, SnapshotInput};
use isthmus_registry::FileRegistry;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

fn table(with_se: bool) -> Arc<NameTable> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/seed000/cluster1");
    let mut reg = FileRegistry::new("cluster1", dir);
    reg.reload();
    let mut cluster = (**reg.current()).clone();
    if !with_se {
        cluster.resources.retain(|k, _| k.kind != "ServiceEntry");
    }
    let snap = MeshSnapshot::build(
        &SnapshotInput {
            local_cluster: "cluster1".into(),
            local_network: "network1".into(),
            cluster_networks: BTreeMap::new(),
            clusters: vec![std::sync::Arc::new(cluster)],
            ..Default::default()
        },
        1,
    );
    let templates: Vec<Template> = vec!["remote=198.18.255.1".parse().expect("template")];
    Arc::new(NameTable::from_snapshot(&snap, &templates))
}

async fn start() -> (SocketAddr, watch::Sender<Arc<NameTable>>) {
    start_with(table(true), Vec::new()).await
}

/// A server of `table` forwarding to `upstreams`.
async fn start_with(
    table: Arc<NameTable>,
    upstreams: Vec<SocketAddr>,
) -> (SocketAddr, watch::Sender<Arc<NameTable>>) {
    let (tx, rx) = watch::channel(table);
    // The same port for UDP and TCP; retry if TCP's is taken.
    for _ in 0..20 {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("udp");
        let addr = udp.local_addr().expect("addr");
        if let Ok(tcp) = tokio::net::TcpListener::bind(addr).await {
            let upstreams = upstreams.clone();
            tokio::spawn(async move { serve_on(udp, tcp, rx, &upstreams).await });
            return (addr, tx);
        }
    }
    panic!("no port free for both UDP and TCP");
}

fn query(name: &str, qtype: RecordType) -> Vec<u8> {
    let mut m = Message::new(4242, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
    m.to_vec().expect("encode")
}

async fn udp(addr: SocketAddr, name: &str, qtype: RecordType) -> Message {
    udp_raw(addr, &query(name, qtype)).await
}

async fn udp_raw(addr: SocketAddr, packet: &[u8]) -> Message {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    sock.send_to(packet, addr).await.expect("send");
    let mut buf = vec![0u8; 2048];
    let n = tokio::time::timeout(Duration::from_secs(3), sock.recv(&mut buf))
        .await
        .expect("answer within 3 s")
        .expect("recv");
    let m = Message::from_vec(&buf[..n]).expect("decode");
    assert_eq!(m.metadata.id, 4242);
    m
}

async fn tcp(addr: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("tcp");
    let q = query(name, qtype);
    let len = u16::try_from(q.len()).expect("short query");
    s.write_all(&len.to_be_bytes()).await.expect("len");
    s.write_all(&q).await.expect("query");
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await.expect("read len");
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf).await.expect("read");
    Message::from_vec(&buf).expect("decode")
}

fn a_records(m: &Message) -> Vec<Ipv4Addr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn answers_mesh_names_and_nothing_else() {
    let (addr, tx) = start().await;

    let m = udp(addr, "httpbin.bar.global.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_records(&m), vec![Ipv4Addr::new(127, 255, 0, 2)]);
    assert!(m.metadata.authoritative);
    assert_eq!(m.answers[0].ttl, isthmus_dns::TTL_SECS);

    // Case-insensitive, as DNS is.
    let m = udp(addr, "HTTPBIN.Bar.Global.", RecordType::A).await;
    assert_eq!(a_records(&m), vec![Ipv4Addr::new(127, 255, 0, 2)]);

    // Kubernetes service name: the ClusterIP of the fixture.
    let m = udp(addr, "sleep.foo.svc.cluster.local.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_records(&m).len(), 1, "{m:?}");

    // AAAA for a known name: empty NOERROR, not an error.
    let m = udp(addr, "httpbin.bar.global.", RecordType::AAAA).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());

    // Template suffix.
    let m = udp(addr, "reviews.default.svc.b.remote.", RecordType::A).await;
    assert_eq!(a_records(&m), vec![Ipv4Addr::new(198, 18, 255, 1)]);

    // Unknown names, inside or outside the mesh's suffixes: NXDOMAIN, nothing forwarded.
    for name in [
        "nosuch.bar.global.",
        "example.com.",
        "httpbin.bar.global.foo.svc.cluster.local.",
    ] {
        let m = udp(addr, name, RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{name}");
        assert!(m.answers.is_empty());
    }

    // Not a standard query (another opcode): the full handler answers, through the relay.
    let mut odd = Message::new(4242, MessageType::Query, OpCode::Status);
    odd.add_query(Query::query(
        Name::from_ascii("httpbin.bar.global.").expect("name"),
        RecordType::A,
    ));
    let m = udp_raw(addr, &odd.to_vec().expect("encode")).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NotImp);

    // Over TCP too (length-prefixed).
    let m = tcp(addr, "httpbin.bar.global.", RecordType::A).await;
    assert_eq!(a_records(&m), vec![Ipv4Addr::new(127, 255, 0, 2)]);

    // The ServiceEntry goes away: its name stops resolving on the next query.
    tx.send(table(false)).expect("update");
    let m = udp(addr, "httpbin.bar.global.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
}

/// The snapshot of cluster c1 holding `yaml` in namespace folder `ns` of a fresh registry
/// folder named after `tag` (removed again).
fn snapshot_of(tag: &str, ns: &str, yaml: &str) -> MeshSnapshot {
    let dir = std::env::temp_dir().join(format!("isthmus-dns-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join(ns)).expect("mkdir");
    std::fs::write(dir.join(ns).join("objects.yaml"), yaml).expect("write");
    let mut reg = FileRegistry::new("c1", &dir);
    reg.reload();
    assert!(
        reg.current().diagnostics.is_empty(),
        "{:?}",
        reg.current().diagnostics
    );
    let snap = MeshSnapshot::build(
        &SnapshotInput {
            local_cluster: "c1".into(),
            local_network: "n1".into(),
            clusters: vec![reg.current().clone()],
            ..Default::default()
        },
        1,
    );
    let _ = std::fs::remove_dir_all(&dir);
    snap
}

#[test]
fn hosts_without_addresses_get_the_allocated_vip_and_wildcards_answer() {
    let snap = snapshot_of(
        "alloc",
        "foo",
        "apiVersion: networking.istio.io/v1beta1\nkind: ServiceEntry\nmetadata: {name: noaddr}\nspec:\n  hosts: [api.remote.global]\n  location: MESH_INTERNAL\n  resolution: DNS\n  ports: [{name: http, number: 8080, protocol: HTTP}]\n  endpoints: [{address: 198.18.1.2, ports: {http: 15443}}]\n---\napiVersion: networking.istio.io/v1beta1\nkind: ServiceEntry\nmetadata: {name: wild}\nspec:\n  hosts: [\"*.svc.b.remote\"]\n  addresses: [198.18.255.9]\n  location: MESH_EXTERNAL\n  resolution: NONE\n  ports: [{name: http, number: 80, protocol: HTTP}]\n",
    );
    let svc = &snap.services["api.remote.global"];
    assert!(svc.vip_allocated);
    let vip: Ipv4Addr = svc.vip.as_deref().expect("vip").parse().expect("ipv4");
    assert_eq!(vip.octets()[..2], [240, 240]);
    let table = NameTable::from_snapshot(&snap, &[]);
    assert_eq!(
        table.lookup("api.remote.global"),
        isthmus_dns::Answer::Found(vec![vip])
    );
    assert_eq!(
        table.lookup("reviews.default.svc.b.remote"),
        isthmus_dns::Answer::Found(vec![Ipv4Addr::new(198, 18, 255, 9)])
    );
    assert_eq!(table.lookup("svc.b.remote"), isthmus_dns::Answer::NxDomain);
}

#[tokio::test]
async fn names_the_mesh_does_not_own_are_forwarded_to_the_upstream_resolver() {
    // The "cluster's upstream resolver": a server of its own names, without upstreams.
    let world = NameTable::from_entries(
        [(
            "api.world.example".to_string(),
            Ipv4Addr::new(203, 0, 113, 7),
        )],
        &[],
    );
    let (upstream, _world_tx) = start_with(Arc::new(world), Vec::new()).await;
    let (addr, _tx) = start_with(table(true), vec![upstream]).await;

    // The mesh's own names: answered here, authoritatively.
    let m = udp(addr, "httpbin.bar.global.", RecordType::A).await;
    assert_eq!(a_records(&m), vec![Ipv4Addr::new(127, 255, 0, 2)]);
    assert!(m.metadata.authoritative);

    // The world's: the upstream's answer, over UDP and TCP, not authoritative here.
    let m = udp(addr, "api.world.example.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_records(&m), vec![Ipv4Addr::new(203, 0, 113, 7)]);
    let m = tcp(addr, "API.World.Example.", RecordType::A).await;
    assert_eq!(a_records(&m), vec![Ipv4Addr::new(203, 0, 113, 7)]);
    assert!(!m.metadata.authoritative);

    // A name nobody has: the upstream's NXDOMAIN.
    let m = udp(addr, "nowhere.example.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let m = tcp(addr, "nowhere.example.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);

    // No upstream answering (nobody listens on its port): SERVFAIL, not silence.
    let free = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let gone = free.local_addr().expect("addr");
    drop(free);
    let (lonely, _tx) = start_with(table(true), vec![gone]).await;
    let m = udp(lonely, "api.world.example.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    let m = udp(lonely, "httpbin.bar.global.", RecordType::A).await;
    assert_eq!(a_records(&m), vec![Ipv4Addr::new(127, 255, 0, 2)]);
}

#[test]
fn a_statefulsets_pods_answer_by_name_under_their_headless_service() {
    let snap = snapshot_of(
        "sts",
        "db",
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  clusterIP: None\n  selector: {app: web}\n  ports: [{name: http, port: 80}]\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: web-0, labels: {app: web}}\nspec: {hostname: web-0, subdomain: web}\nstatus: {podIP: 10.10.0.90, phase: Running}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: web-1, labels: {app: web}}\nspec: {hostname: web-1, subdomain: web}\nstatus: {podIP: 10.10.0.91, phase: Running}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: loner, labels: {app: web}}\nstatus: {podIP: 10.10.0.92, phase: Running}\n",
    );
    let table = NameTable::from_snapshot(&snap, &[]);
    assert_eq!(
        table.lookup("web-0.web.db.svc.cluster.local"),
        isthmus_dns::Answer::Found(vec![Ipv4Addr::new(10, 10, 0, 90)])
    );
    assert_eq!(
        table.lookup("web-1.web.db.svc.cluster.local."),
        isthmus_dns::Answer::Found(vec![Ipv4Addr::new(10, 10, 0, 91)])
    );
    // The service: every pod; a pod without hostname and subdomain has no name of its own.
    let isthmus_dns::Answer::Found(all) = table.lookup("web.db.svc.cluster.local") else {
        panic!("the headless service resolves");
    };
    assert_eq!(all.len(), 3);
    assert_eq!(
        table.lookup("loner.web.db.svc.cluster.local"),
        isthmus_dns::Answer::NxDomain
    );
}

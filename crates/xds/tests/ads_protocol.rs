//! The ADS server's protocol, seen from a client on a loopback port: state of the world
//! (ACK, NACK, stale nonces, pushes on change) and delta (wildcard and named subscriptions,
//! unsubscribe, removals), over TLS with the workload certificate every stream needs, and
//! the refusal of streams without one or with one for another identity. Resources come
//! from the seed 000 configuration.

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use isthmus_model::{ConfigsUpdated, MeshSnapshot, PushRequest, SnapshotInput};
use isthmus_registry::FileRegistry;
use isthmus_xds::MeshUpdate;
use isthmus_xds::{AdsServer, XdsStatus};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity, ServerTlsConfig};

const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const EDS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
const HTTPBIN: &str = "outbound|8000||httpbin.bar.global";
const SLEEP: &str = "outbound|80||sleep.foo.svc.cluster.local";

/// Seed 000's cluster1 at `version`; without the ServiceEntry when `with_se` is false.
fn snapshot(version: u64, with_se: bool) -> Arc<MeshSnapshot> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/seed000/cluster1");
    let mut reg = FileRegistry::new("cluster1", dir);
    reg.reload();
    let mut cluster = (**reg.current()).clone();
    if !with_se {
        cluster.resources.retain(|k, _| k.kind != "ServiceEntry");
    }
    let input = SnapshotInput {
        local_cluster: "cluster1".into(),
        local_network: "network1".into(),
        cluster_networks: BTreeMap::new(),
        clusters: vec![std::sync::Arc::new(cluster)],
        ..Default::default()
    };
    Arc::new(MeshSnapshot::build(&input, version))
}

struct Server {
    client: AggregatedDiscoveryServiceClient<Channel>,
    snapshots: watch::Sender<MeshUpdate>,
    status: Arc<XdsStatus>,
    names: watch::Sender<Arc<isthmus_dns::NameTable>>,
}

/// A mesh CA made for one test: its intermediate for cluster1 under a fresh root.
fn authority() -> isthmus_ca::Authority {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "isthmus-xds-ca-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    isthmus_ca::create_root(&dir.join("root")).expect("root");
    isthmus_ca::create_intermediate(&dir.join("root"), "cluster1", &dir.join("cluster1"))
        .expect("intermediate");
    let ca = isthmus_ca::Authority::load(&dir.join("cluster1")).expect("load");
    let _ = std::fs::remove_dir_all(&dir);
    ca
}

/// Who the test client is: a workload identity, or no certificate at all.
enum ClientCert<'a> {
    Workload(&'a str),
    Without,
}

/// A TLS client of the server at `addr`, with the certificate `cert` names.
async fn connect(
    ca: &isthmus_ca::Authority,
    addr: std::net::SocketAddr,
    cert: ClientCert<'_>,
) -> AggregatedDiscoveryServiceClient<Channel> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.root_pem()))
        .domain_name(isthmus_ca::CONTROL_PLANE_DNS);
    if let ClientCert::Workload(id) = cert {
        let (chain, key) = ca
            .issue_workload(id, Duration::from_secs(600))
            .expect("workload certificate");
        tls = tls.identity(Identity::from_pem(chain, key));
    }
    let channel = Channel::from_shared(format!("https://{addr}"))
        .expect("uri")
        .tls_config(tls)
        .expect("tls")
        .connect()
        .await
        .expect("connect");
    AggregatedDiscoveryServiceClient::new(channel)
}

const SLEEP_ID: &str = "spiffe://cluster.local/ns/foo/sa/sleep";

/// The ADS server on a loopback port, as the control plane serves it: TLS, a client
/// certificate optional at the TLS layer (agents reach the CA without one) and required by
/// every ADS stream.
async fn serve_as(cert: ClientCert<'_>) -> (Server, isthmus_ca::Authority, std::net::SocketAddr) {
    serve_scoped(cert, isthmus_xds::Scoping::default()).await
}

/// [`serve_as`], scoping sidecars as `scoping` says.
async fn serve_scoped(
    cert: ClientCert<'_>,
    scoping: isthmus_xds::Scoping,
) -> (Server, isthmus_ca::Authority, std::net::SocketAddr) {
    let ca = authority();
    let (snapshots, rx) = watch::channel(MeshUpdate::full(snapshot(1, true)));
    let status = Arc::new(XdsStatus::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (names, names_rx) = watch::channel(Arc::new(isthmus_dns::NameTable::from_snapshot(
        &snapshot(1, true),
        &[],
    )));
    let svc = AdsServer::new(rx, status.clone(), "cluster.local")
        .with_name_tables(isthmus_xds::NameTables::new(names_rx))
        .with_scoping(scoping)
        .into_service();
    let (chain, key) = ca
        .issue_server(&[isthmus_ca::CONTROL_PLANE_DNS.to_string()])
        .expect("server certificate");
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(chain, key))
        .client_ca_root(Certificate::from_pem(ca.root_pem()))
        .client_auth_optional(true);
    tokio::spawn(
        tonic::transport::Server::builder()
            .tls_config(tls)
            .expect("tls")
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let client = connect(&ca, addr, cert).await;
    (
        Server {
            client,
            snapshots,
            status,
            names,
        },
        ca,
        addr,
    )
}

/// The server with a client holding sleep's certificate (the node every test uses).
async fn serve() -> Server {
    serve_as(ClientCert::Workload(SLEEP_ID)).await.0
}

fn node() -> Node {
    let mut fields = BTreeMap::new();
    fields.insert(
        "CLUSTER_ID".to_string(),
        Value {
            kind: Some(Kind::StringValue("cluster1".into())),
        },
    );
    fields.insert(
        "SERVICE_ACCOUNT".to_string(),
        Value {
            kind: Some(Kind::StringValue("sleep".into())),
        },
    );
    Node {
        id: "sidecar~127.0.1.1~sleep-0.foo~foo.svc.cluster.local".into(),
        metadata: Some(Struct {
            fields: fields.into_iter().collect(),
        }),
        ..Default::default()
    }
}

async fn next<T>(stream: &mut tonic::Streaming<T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("a response within 5 s")
        .expect("stream open")
        .expect("not an error")
}

async fn nothing<T: std::fmt::Debug>(stream: &mut tonic::Streaming<T>) {
    if let Ok(Some(r)) = tokio::time::timeout(Duration::from_millis(300), stream.next()).await {
        panic!("expected no response, got {r:?}");
    }
}

fn names(r: &DiscoveryResponse) -> Vec<String> {
    use prost::Message;
    r.resources
        .iter()
        .map(|a| {
            envoy_types::pb::envoy::config::cluster::v3::Cluster::decode(a.value.as_slice())
                .expect("a Cluster")
                .name
        })
        .collect()
}

#[tokio::test]
async fn sotw_acks_nacks_stale_nonces_and_pushes_on_change() {
    let mut srv = serve().await;
    let (tx, rx) = mpsc::channel(8);
    let mut stream = srv
        .client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
        .expect("stream")
        .into_inner();
    let req = |version: &str, nonce: &str, error: Option<&str>| DiscoveryRequest {
        node: Some(node()),
        type_url: CDS.into(),
        version_info: version.into(),
        response_nonce: nonce.into(),
        error_detail: error.map(|m| RpcStatus {
            code: 3,
            message: m.into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    tx.send(req("", "", None)).await.expect("send");
    let first = next(&mut stream).await;
    assert_eq!(first.version_info, "1");
    let got = names(&first);
    assert!(got.contains(&HTTPBIN.to_string()), "{got:?}");
    assert!(got.contains(&SLEEP.to_string()), "{got:?}");

    // An ACK is answered with nothing and counted.
    tx.send(req("1", &first.nonce, None)).await.expect("ack");
    nothing(&mut stream).await;
    assert!(srv.status.metrics().contains("isthmus_xds_acks_total 1"));

    // A change is pushed with a new version and a new nonce; the ServiceEntry's cluster is gone.
    srv.snapshots
        .send(MeshUpdate::full(snapshot(2, false)))
        .expect("push");
    let second = next(&mut stream).await;
    assert_eq!(second.version_info, "2");
    assert_ne!(second.nonce, first.nonce);
    let got = names(&second);
    assert!(!got.contains(&HTTPBIN.to_string()), "{got:?}");
    assert!(got.contains(&SLEEP.to_string()), "{got:?}");

    // A reply to the older nonce is stale: ignored, neither counted nor answered.
    tx.send(req("1", &first.nonce, Some("late")))
        .await
        .expect("stale");
    nothing(&mut stream).await;
    assert!(srv.status.metrics().contains("isthmus_xds_nacks_total 0"));

    // A NACK of the current nonce is counted, logged and recorded per proxy.
    tx.send(req("1", &second.nonce, Some("bad cluster")))
        .await
        .expect("nack");
    nothing(&mut stream).await;
    assert!(srv.status.metrics().contains("isthmus_xds_nacks_total 1"));
    let proxies = srv.status.proxies();
    assert_eq!(proxies.len(), 1);
    let json = serde_json::to_string(&proxies).expect("json");
    assert!(json.contains("bad cluster"), "{json}");

    // The next good snapshot is pushed again after a NACK.
    srv.snapshots
        .send(MeshUpdate::full(snapshot(3, true)))
        .expect("push");
    let third = next(&mut stream).await;
    assert_eq!(third.version_info, "3");
    assert!(names(&third).contains(&HTTPBIN.to_string()));

    // A new snapshot version whose resources are the same for this proxy is not pushed.
    tx.send(req("3", &third.nonce, None)).await.expect("ack");
    srv.snapshots
        .send(MeshUpdate::full(snapshot(4, true)))
        .expect("push");
    nothing(&mut stream).await;

    // Closing the stream removes the proxy from the status.
    drop(tx);
    drop(stream);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !srv.status.proxies().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "proxy never closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Seed 000's cluster1 with sleep-0 moved to `ip`.
fn moved(version: u64, ip: &str) -> MeshSnapshot {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/seed000/cluster1");
    let mut reg = FileRegistry::new("cluster1", dir);
    reg.reload();
    let mut cluster = (**reg.current()).clone();
    let pods: Vec<_> = cluster
        .resources
        .values()
        .filter_map(|r| match &r.object {
            isthmus_api::Object::Pod(p) => {
                let mut p = p.clone();
                p.status
                    .set_pod_ip(Some(ip.parse().expect("an IP address")));
                let mut res = (**r).clone();
                res.object = isthmus_api::Object::Pod(p);
                Some(Arc::new(res))
            }
            _ => None,
        })
        .collect();
    cluster.resources.insert_all(pods);
    MeshSnapshot::build(
        &SnapshotInput {
            local_cluster: "cluster1".into(),
            local_network: "network1".into(),
            clusters: vec![Arc::new(cluster)],
            ..Default::default()
        },
        version,
    )
}

/// An endpoint-only change reaches a SotW stream as one EDS response with just the moved
/// service's endpoints, and no CDS push (the patched path).
#[tokio::test]
async fn an_endpoint_move_pushes_only_that_services_endpoints() {
    let mut srv = serve().await;
    let v1 = Arc::new(moved(1, "127.0.1.1"));
    srv.snapshots
        .send(MeshUpdate::full(v1.clone()))
        .expect("v1");
    let (tx, rx) = mpsc::channel(8);
    let mut stream = srv
        .client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
        .expect("stream")
        .into_inner();
    // A client pod that is not itself an endpoint (its resources can be patched).
    let mut client = node();
    client.id = "sidecar~127.0.1.9~client-0.foo~foo.svc.cluster.local".into();
    let req = |type_url: &str, names: Vec<String>, version: &str, nonce: &str| DiscoveryRequest {
        node: Some(client.clone()),
        type_url: type_url.into(),
        resource_names: names,
        version_info: version.into(),
        response_nonce: nonce.into(),
        ..Default::default()
    };
    tx.send(req(CDS, vec![], "", "")).await.expect("cds");
    let cds = next(&mut stream).await;
    tx.send(req(CDS, vec![], "1", &cds.nonce))
        .await
        .expect("ack");
    tx.send(req(EDS, vec![SLEEP.into()], "", ""))
        .await
        .expect("eds");
    let eds = next(&mut stream).await;
    assert_eq!(eds.resources.len(), 1);
    tx.send(req(EDS, vec![SLEEP.into()], "1", &eds.nonce))
        .await
        .expect("ack");
    nothing(&mut stream).await;

    let v2 = Arc::new(moved(2, "127.0.1.7"));
    let push = PushRequest::between(&v1, &v2, ConfigsUpdated::Unknown);
    assert!(!push.full, "only endpoints moved");
    srv.snapshots
        .send(MeshUpdate::new(v2, Arc::new(push)))
        .expect("v2");
    let push = next(&mut stream).await;
    assert_eq!(
        push.type_url, EDS,
        "the clusters did not change: no CDS push"
    );
    assert_eq!(push.version_info, "2");
    use prost::Message;
    let cla = envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment::decode(
        push.resources[0].value.as_slice(),
    )
    .expect("a ClusterLoadAssignment");
    assert_eq!(push.resources.len(), 1);
    assert_eq!(cla.cluster_name, SLEEP);
    assert!(format!("{cla:?}").contains("127.0.1.7"), "{cla:?}");
    tx.send(req(EDS, vec![SLEEP.into()], "2", &push.nonce))
        .await
        .expect("ack");
    nothing(&mut stream).await;
}

#[tokio::test]
async fn a_stream_without_a_node_is_refused() {
    let mut srv = serve().await;
    let (tx, rx) = mpsc::channel(1);
    let mut stream = srv
        .client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
        .expect("stream")
        .into_inner();
    tx.send(DiscoveryRequest {
        type_url: CDS.into(),
        ..Default::default()
    })
    .await
    .expect("send");
    let err = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("an answer")
        .expect("an item")
        .expect_err("refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("node"), "{}", err.message());

    // A malformed node id is refused with the reason.
    let (tx, rx) = mpsc::channel(1);
    let mut stream = srv
        .client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
        .expect("stream")
        .into_inner();
    tx.send(DiscoveryRequest {
        node: Some(Node {
            id: "not-a-node-id".into(),
            ..Default::default()
        }),
        type_url: CDS.into(),
        ..Default::default()
    })
    .await
    .expect("send");
    let err = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("an answer")
        .expect("an item")
        .expect_err("refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
}

fn delta_names(r: &DeltaDiscoveryResponse) -> Vec<String> {
    r.resources.iter().map(|r| r.name.clone()).collect()
}

#[tokio::test]
async fn delta_wildcard_named_subscriptions_unsubscribe_and_removals() {
    let mut srv = serve().await;
    let (tx, rx) = mpsc::channel(8);
    let mut stream = srv
        .client
        .delta_aggregated_resources(ReceiverStream::new(rx))
        .await
        .expect("stream")
        .into_inner();
    let ack = |type_url: &str, nonce: &str| DeltaDiscoveryRequest {
        type_url: type_url.into(),
        response_nonce: nonce.into(),
        ..Default::default()
    };

    // Wildcard CDS: everything.
    tx.send(DeltaDiscoveryRequest {
        node: Some(node()),
        type_url: CDS.into(),
        ..Default::default()
    })
    .await
    .expect("send");
    let cds = next(&mut stream).await;
    let got = delta_names(&cds);
    assert!(got.contains(&HTTPBIN.to_string()), "{got:?}");
    assert!(cds.removed_resources.is_empty());
    assert!(cds.resources.iter().all(|r| !r.version.is_empty()));
    tx.send(ack(CDS, &cds.nonce)).await.expect("ack");
    nothing(&mut stream).await;

    // EDS by name: only what was asked for (the ServiceEntry's DNS cluster carries its
    // endpoints inline, so only Kubernetes services have an assignment).
    tx.send(DeltaDiscoveryRequest {
        type_url: EDS.into(),
        resource_names_subscribe: vec![SLEEP.into()],
        ..Default::default()
    })
    .await
    .expect("subscribe");
    let eds = next(&mut stream).await;
    assert_eq!(delta_names(&eds), vec![SLEEP.to_string()]);
    tx.send(ack(EDS, &eds.nonce)).await.expect("ack");
    nothing(&mut stream).await;

    // A name that has no resource sends nothing (not an error, not a re-send of the others).
    tx.send(DeltaDiscoveryRequest {
        type_url: EDS.into(),
        resource_names_subscribe: vec![HTTPBIN.into()],
        ..Default::default()
    })
    .await
    .expect("subscribe");
    nothing(&mut stream).await;

    // Unsubscribe: nothing is sent.
    tx.send(DeltaDiscoveryRequest {
        type_url: EDS.into(),
        resource_names_unsubscribe: vec![SLEEP.into(), HTTPBIN.into()],
        ..Default::default()
    })
    .await
    .expect("unsubscribe");
    nothing(&mut stream).await;

    // Removing the ServiceEntry: CDS names the removed cluster and re-sends nothing that did
    // not change; EDS has no subscription left, so it gets nothing.
    srv.snapshots
        .send(MeshUpdate::full(snapshot(2, false)))
        .expect("push");
    let cds2 = next(&mut stream).await;
    assert_eq!(cds2.type_url, CDS);
    assert_eq!(cds2.removed_resources, vec![HTTPBIN.to_string()]);
    assert!(cds2.resources.is_empty(), "{:?}", delta_names(&cds2));
    tx.send(ack(CDS, &cds2.nonce)).await.expect("ack");
    nothing(&mut stream).await;

    // Re-subscribing sends the resource again even though the proxy once had it.
    tx.send(DeltaDiscoveryRequest {
        type_url: EDS.into(),
        resource_names_subscribe: vec![SLEEP.into()],
        ..Default::default()
    })
    .await
    .expect("subscribe");
    let eds2 = next(&mut stream).await;
    assert_eq!(delta_names(&eds2), vec![SLEEP.to_string()]);
    tx.send(ack(EDS, &eds2.nonce)).await.expect("ack");

    // Bringing it back re-sends it.
    srv.snapshots
        .send(MeshUpdate::full(snapshot(3, true)))
        .expect("push");
    let cds3 = next(&mut stream).await;
    assert_eq!(delta_names(&cds3), vec![HTTPBIN.to_string()]);
    assert!(srv.status.metrics().contains("isthmus_xds_nacks_total 0"));
}

#[tokio::test]
async fn a_delta_reconnect_gets_only_what_its_initial_versions_miss() {
    let mut srv = serve().await;
    let open = |client: &mut AggregatedDiscoveryServiceClient<Channel>,
                initial: BTreeMap<String, String>| {
        let mut client = client.clone();
        async move {
            let (tx, rx) = mpsc::channel(8);
            tx.send(DeltaDiscoveryRequest {
                node: Some(node()),
                type_url: CDS.into(),
                initial_resource_versions: initial.into_iter().collect(),
                ..Default::default()
            })
            .await
            .expect("send");
            let stream = client
                .delta_aggregated_resources(ReceiverStream::new(rx))
                .await
                .expect("stream")
                .into_inner();
            (tx, stream)
        }
    };
    let (_tx, mut first) = open(&mut srv.client, BTreeMap::new()).await;
    let cds = next(&mut first).await;
    let held: BTreeMap<String, String> = cds
        .resources
        .iter()
        .map(|r| (r.name.clone(), r.version.clone()))
        .collect();
    assert!(held.len() >= 3, "{held:?}");

    // The proxy comes back holding everything but HTTPBIN, SLEEP at an old version, and a
    // cluster that no longer exists.
    let mut initial = held.clone();
    initial.remove(HTTPBIN);
    initial.insert(SLEEP.into(), "0".into());
    initial.insert("outbound|1||gone.foo.svc.cluster.local".into(), "1".into());
    let (_tx2, mut second) = open(&mut srv.client, initial).await;
    let again = next(&mut second).await;
    let mut got = delta_names(&again);
    got.sort();
    let mut want = vec![HTTPBIN.to_string(), SLEEP.to_string()];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(
        again.removed_resources,
        vec!["outbound|1||gone.foo.svc.cluster.local".to_string()]
    );
}

/// The first request of a stream of either variant, and the status that ends it.
async fn first_answer_sotw(
    client: &mut AggregatedDiscoveryServiceClient<Channel>,
    node: Node,
) -> Result<DiscoveryResponse, tonic::Status> {
    let (tx, rx) = mpsc::channel(1);
    let mut stream = client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await?
        .into_inner();
    tx.send(DiscoveryRequest {
        node: Some(node),
        type_url: CDS.into(),
        ..Default::default()
    })
    .await
    .expect("send");
    tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("an answer within 5 s")
        .expect("an item")
}

async fn first_answer_delta(
    client: &mut AggregatedDiscoveryServiceClient<Channel>,
    node: Node,
) -> Result<DeltaDiscoveryResponse, tonic::Status> {
    let (tx, rx) = mpsc::channel(1);
    let mut stream = client
        .delta_aggregated_resources(ReceiverStream::new(rx))
        .await?
        .into_inner();
    tx.send(DeltaDiscoveryRequest {
        node: Some(node),
        type_url: CDS.into(),
        ..Default::default()
    })
    .await
    .expect("send");
    tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("an answer within 5 s")
        .expect("an item")
}

/// A client without a certificate (the TLS port lets it in, for the CA) gets no
/// configuration on either variant: UNAUTHENTICATED, and the refusal is counted.
#[tokio::test]
async fn a_stream_without_a_workload_certificate_gets_nothing() {
    let (mut srv, _ca, _) = serve_as(ClientCert::Without).await;
    let err = first_answer_sotw(&mut srv.client, node())
        .await
        .expect_err("refused");
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    assert!(
        err.message().contains("no client certificate"),
        "{}",
        err.message()
    );
    let err = first_answer_delta(&mut srv.client, node())
        .await
        .expect_err("refused");
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    assert_eq!(srv.status.refused_streams(), 2);
    assert!(srv.status.proxies().is_empty(), "no stream was opened");
    assert!(srv
        .status
        .metrics()
        .contains("isthmus_xds_refused_streams_total 2"));
}

/// A certificate for another workload does not buy its node's configuration: another
/// namespace, another service account, or a service account the registry says the pod
/// does not run as (sleep-0 runs as `sleep`, whatever its metadata claims).
#[tokio::test]
async fn a_certificate_for_another_identity_is_permission_denied() {
    let (mut srv, ca, addr) = serve_as(ClientCert::Workload(
        "spiffe://cluster.local/ns/bar/sa/sleep",
    ))
    .await;
    let err = first_answer_sotw(&mut srv.client, node())
        .await
        .expect_err("another namespace");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert!(
        err.message().contains("sleep-0.foo") && err.message().contains("ns/bar/sa/sleep"),
        "names the node and the certificate: {}",
        err.message()
    );
    let err = first_answer_delta(&mut srv.client, node())
        .await
        .expect_err("another namespace");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");

    let mut httpbin = connect(
        &ca,
        addr,
        ClientCert::Workload("spiffe://cluster.local/ns/foo/sa/httpbin"),
    )
    .await;
    let err = first_answer_sotw(&mut httpbin, node())
        .await
        .expect_err("another service account");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    let mut lying = node();
    if let Some(md) = lying.metadata.as_mut() {
        md.fields.insert(
            "SERVICE_ACCOUNT".into(),
            Value {
                kind: Some(Kind::StringValue("httpbin".into())),
            },
        );
    }
    let err = first_answer_sotw(&mut httpbin, lying)
        .await
        .expect_err("the registry's service account wins over the metadata's");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");

    let mut foreign = connect(
        &ca,
        addr,
        ClientCert::Workload("spiffe://other.example/ns/foo/sa/sleep"),
    )
    .await;
    let err = first_answer_sotw(&mut foreign, node())
        .await
        .expect_err("another trust domain");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert_eq!(srv.status.refused_streams(), 5);

    // The right certificate on the same server is served.
    let mut sleep = connect(&ca, addr, ClientCert::Workload(SLEEP_ID)).await;
    let ok = first_answer_sotw(&mut sleep, node()).await.expect("served");
    assert!(names(&ok).contains(&HTTPBIN.to_string()));
}

/// Seed 000's cluster1 at `version`, with a DestinationRule that turns mTLS off for sleep
/// when `plain` (sleep's cluster changes; its endpoints do not).
fn with_sleep_rule(version: u64, plain: bool) -> Arc<MeshSnapshot> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/seed000/cluster1");
    let mut reg = FileRegistry::new("cluster1", dir);
    reg.reload();
    let mut cluster = (**reg.current()).clone();
    if plain {
        let loaded = isthmus_api::load_str(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: sleep-plain, namespace: foo}\nspec: {host: sleep.foo.svc.cluster.local, trafficPolicy: {tls: {mode: DISABLE}}}\n",
            None,
            "foo",
        );
        assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
        cluster
            .resources
            .insert_all(loaded.resources.into_iter().map(Arc::new).collect());
    }
    Arc::new(MeshSnapshot::build(
        &SnapshotInput {
            local_cluster: "cluster1".into(),
            local_network: "network1".into(),
            clusters: vec![Arc::new(cluster)],
            ..Default::default()
        },
        version,
    ))
}

/// Envoy warms a cluster it is sent again until it gets that cluster's endpoints, even when
/// they did not change (an updated cluster otherwise stays warming until Envoy's initial
/// fetch timeout, 15 s, and the update is not in force): after a CDS push that changes
/// sleep's cluster, sleep's endpoints follow, on a state-of-the-world stream.
#[tokio::test]
async fn sotw_a_cluster_sent_again_is_followed_by_its_endpoints() {
    let srv = serve().await;
    let v1 = with_sleep_rule(1, false);
    srv.snapshots
        .send(MeshUpdate::full(v1.clone()))
        .expect("v1");
    let (tx, rx) = mpsc::channel(8);
    let mut client = srv.client.clone();
    let mut stream = client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
        .expect("stream")
        .into_inner();
    let req = |type_url: &str, names: Vec<String>, version: &str, nonce: &str| DiscoveryRequest {
        node: Some(node()),
        type_url: type_url.into(),
        resource_names: names,
        version_info: version.into(),
        response_nonce: nonce.into(),
        ..Default::default()
    };
    tx.send(req(CDS, vec![], "", "")).await.expect("cds");
    let cds = next(&mut stream).await;
    tx.send(req(CDS, vec![], "1", &cds.nonce))
        .await
        .expect("ack");
    tx.send(req(EDS, vec![SLEEP.into()], "", ""))
        .await
        .expect("eds");
    let eds = next(&mut stream).await;
    tx.send(req(EDS, vec![SLEEP.into()], "1", &eds.nonce))
        .await
        .expect("ack");
    nothing(&mut stream).await;

    let v2 = with_sleep_rule(2, true);
    let push = PushRequest::between(&v1, &v2, ConfigsUpdated::Unknown);
    assert!(push.full, "a DestinationRule changed");
    srv.snapshots
        .send(MeshUpdate::new(v2, Arc::new(push)))
        .expect("v2");
    let cds = next(&mut stream).await;
    assert_eq!(cds.type_url, CDS);
    tx.send(req(CDS, vec![], "2", &cds.nonce))
        .await
        .expect("ack");
    let eds = next(&mut stream).await;
    assert_eq!(eds.type_url, EDS, "the endpoints follow the cluster");
    use prost::Message;
    let cla = envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment::decode(
        eds.resources[0].value.as_slice(),
    )
    .expect("a ClusterLoadAssignment");
    assert_eq!((eds.resources.len(), cla.cluster_name.as_str()), (1, SLEEP));
    tx.send(req(EDS, vec![SLEEP.into()], "2", &eds.nonce))
        .await
        .expect("ack");
    nothing(&mut stream).await;
}

/// The same on a delta stream: sleep's unchanged assignment is sent again after its cluster.
#[tokio::test]
async fn delta_a_cluster_sent_again_is_followed_by_its_endpoints() {
    let srv = serve().await;
    let v1 = with_sleep_rule(1, false);
    srv.snapshots
        .send(MeshUpdate::full(v1.clone()))
        .expect("v1");
    let (tx, rx) = mpsc::channel(8);
    let mut client = srv.client.clone();
    let mut stream = client
        .delta_aggregated_resources(ReceiverStream::new(rx))
        .await
        .expect("stream")
        .into_inner();
    let ack = |type_url: &str, nonce: &str| DeltaDiscoveryRequest {
        type_url: type_url.into(),
        response_nonce: nonce.into(),
        ..Default::default()
    };
    tx.send(DeltaDiscoveryRequest {
        node: Some(node()),
        type_url: CDS.into(),
        ..Default::default()
    })
    .await
    .expect("cds");
    let cds = next(&mut stream).await;
    tx.send(ack(CDS, &cds.nonce)).await.expect("ack");
    tx.send(DeltaDiscoveryRequest {
        type_url: EDS.into(),
        resource_names_subscribe: vec![SLEEP.into()],
        ..Default::default()
    })
    .await
    .expect("eds");
    let eds = next(&mut stream).await;
    tx.send(ack(EDS, &eds.nonce)).await.expect("ack");
    nothing(&mut stream).await;

    let v2 = with_sleep_rule(2, true);
    let push = PushRequest::between(&v1, &v2, ConfigsUpdated::Unknown);
    srv.snapshots
        .send(MeshUpdate::new(v2, Arc::new(push)))
        .expect("v2");
    let cds = next(&mut stream).await;
    assert_eq!(cds.type_url, CDS);
    assert_eq!(
        delta_names(&cds),
        vec![SLEEP.to_string()],
        "only sleep's cluster changed"
    );
    tx.send(ack(CDS, &cds.nonce)).await.expect("ack");
    let eds = next(&mut stream).await;
    assert_eq!(eds.type_url, EDS, "the endpoints follow the cluster");
    assert_eq!(delta_names(&eds), vec![SLEEP.to_string()]);
    tx.send(ack(EDS, &eds.nonce)).await.expect("ack");
    nothing(&mut stream).await;
}

#[tokio::test]
async fn an_agent_follows_the_name_table_and_gets_it_again_only_when_it_changes() {
    use isthmus_dns::{Answer, NameTable};
    use isthmus_xds::NDS_TYPE;
    let mut srv = serve().await;
    let (tx, rx) = mpsc::channel(8);
    tx.send(DiscoveryRequest {
        node: Some(node()),
        type_url: NDS_TYPE.into(),
        ..Default::default()
    })
    .await
    .expect("send");
    let mut stream = srv
        .client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
        .expect("stream")
        .into_inner();
    let table = |r: &DiscoveryResponse| {
        assert_eq!(r.type_url, NDS_TYPE);
        assert_eq!(r.resources.len(), 1, "one table");
        NameTable::from_nds(&r.resources[0].value).expect("a name table")
    };
    let first = next(&mut stream).await;
    assert_eq!(
        table(&first).lookup("httpbin.bar.global"),
        Answer::Found(vec!["127.255.0.2".parse().expect("ip")]),
        "the seed's ServiceEntry address"
    );
    // Listed as an agent, not as a proxy.
    let listed = srv.status.proxies();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].protocol, "nds");
    let metrics = srv.status.metrics();
    assert!(
        metrics.contains("isthmus_nds_connected_agents 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("isthmus_xds_connected_proxies 0"),
        "{metrics}"
    );

    let ack = |r: &DiscoveryResponse| DiscoveryRequest {
        type_url: NDS_TYPE.into(),
        version_info: r.version_info.clone(),
        response_nonce: r.nonce.clone(),
        ..Default::default()
    };
    tx.send(ack(&first)).await.expect("ack");
    nothing(&mut stream).await;
    assert_eq!(
        srv.status.proxies()[0].acked.get(NDS_TYPE),
        Some(&first.version_info)
    );

    // The same names again (a snapshot that changed something else): nothing is sent.
    srv.names
        .send_replace(Arc::new(NameTable::from_snapshot(&snapshot(2, true), &[])));
    nothing(&mut stream).await;
    // A name more: the new table.
    srv.names.send_replace(Arc::new(NameTable::from_entries(
        [("late.bar.global".to_string(), [127, 255, 0, 9].into())],
        &[],
    )));
    let second = next(&mut stream).await;
    assert_ne!(second.version_info, first.version_info);
    assert_eq!(
        table(&second).lookup("late.bar.global"),
        Answer::Found(vec![[127, 255, 0, 9].into()])
    );
    // A NACK is recorded against the agent.
    let mut nack = ack(&second);
    nack.error_detail = Some(RpcStatus {
        code: 3,
        message: "bad table".into(),
        details: vec![],
    });
    tx.send(nack).await.expect("nack");
    nothing(&mut stream).await;
    assert_eq!(
        srv.status.proxies()[0]
            .nacked
            .get(NDS_TYPE)
            .map(String::as_str),
        Some("bad table")
    );
}

/// Envoy puts subscription changes into whatever request it sends next, an ACK of an
/// older response included: a subscription that arrives with a stale nonce still counts
/// (dropping it left a new gateway cluster warming without endpoints until it timed out
/// with none, and only a reconnect brought them).
#[tokio::test]
async fn delta_a_subscription_carried_by_a_stale_ack_is_served() {
    let mut srv = serve().await;
    let (tx, rx) = mpsc::channel(8);
    let mut stream = srv
        .client
        .delta_aggregated_resources(ReceiverStream::new(rx))
        .await
        .expect("stream")
        .into_inner();
    tx.send(DeltaDiscoveryRequest {
        node: Some(node()),
        type_url: CDS.into(),
        ..Default::default()
    })
    .await
    .expect("send");
    let cds = next(&mut stream).await;
    tx.send(DeltaDiscoveryRequest {
        type_url: CDS.into(),
        response_nonce: cds.nonce.clone(),
        ..Default::default()
    })
    .await
    .expect("ack");
    // EDS opened with nothing: an empty answer, whose nonce the proxy will ACK late.
    tx.send(DeltaDiscoveryRequest {
        type_url: EDS.into(),
        ..Default::default()
    })
    .await
    .expect("open eds");
    let first = next(&mut stream).await;
    assert!(first.resources.is_empty(), "{:?}", delta_names(&first));
    tx.send(DeltaDiscoveryRequest {
        type_url: EDS.into(),
        response_nonce: first.nonce.clone(),
        ..Default::default()
    })
    .await
    .expect("ack");
    nothing(&mut stream).await;
    // A nonce this stream never sent for EDS (the answer it ACKs was overtaken), carrying a
    // subscription: the subscription is served, the ACK is not counted.
    tx.send(DeltaDiscoveryRequest {
        type_url: EDS.into(),
        response_nonce: format!("{}0", first.nonce),
        resource_names_subscribe: vec![SLEEP.into()],
        ..Default::default()
    })
    .await
    .expect("subscribe");
    let eds = next(&mut stream).await;
    assert_eq!(eds.type_url, EDS);
    assert_eq!(delta_names(&eds), vec![SLEEP.to_string()]);
}

/// sleep's node as an agent with DNS capture announces it (on-demand scoping applies).
fn node_with_dns_capture() -> Node {
    let mut n = node();
    if let Some(md) = n.metadata.as_mut() {
        md.fields.insert(
            "DNS_CAPTURE".into(),
            Value {
                kind: Some(Kind::StringValue("true".into())),
            },
        );
    }
    n
}

/// An agent's stream: the name table asked for, then `wanted` (on-demand scoping).
async fn agent_stream(
    srv: &mut Server,
    wanted: &[&str],
) -> (
    mpsc::Sender<DiscoveryRequest>,
    tonic::Streaming<DiscoveryResponse>,
) {
    use isthmus_dns::demand::DEMAND_TYPE;
    let (tx, rx) = mpsc::channel(8);
    tx.send(DiscoveryRequest {
        node: Some(node_with_dns_capture()),
        type_url: isthmus_xds::NDS_TYPE.into(),
        ..Default::default()
    })
    .await
    .expect("send");
    tx.send(DiscoveryRequest {
        type_url: DEMAND_TYPE.into(),
        resource_names: wanted.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })
    .await
    .expect("send");
    let stream = srv
        .client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
        .expect("stream")
        .into_inner();
    (tx, stream)
}

/// The next answer to the wanted names (name tables skipped).
async fn next_in_force(stream: &mut tonic::Streaming<DiscoveryResponse>) -> DiscoveryResponse {
    loop {
        let r = next(stream).await;
        if r.type_url == isthmus_dns::demand::DEMAND_TYPE {
            return r;
        }
    }
}

/// No answer to the wanted names within 300 ms (name tables skipped).
async fn no_in_force(stream: &mut tonic::Streaming<DiscoveryResponse>) {
    let wait = tokio::time::sleep(Duration::from_millis(300));
    tokio::pin!(wait);
    loop {
        tokio::select! {
            () = &mut wait => return,
            r = stream.next() => match r {
                Some(Ok(r)) if r.type_url == isthmus_dns::demand::DEMAND_TYPE => {
                    panic!("expected no answer yet, got {r:?}")
                }
                Some(Ok(_)) => {}
                other => panic!("stream ended: {other:?}"),
            }
        }
    }
}

fn in_force_names(r: &DiscoveryResponse) -> Vec<String> {
    r.resources
        .iter()
        .flat_map(|a| isthmus_dns::demand::decode_names(&a.value).expect("names"))
        .collect()
}

#[tokio::test]
async fn on_demand_a_sidecar_gets_a_service_once_resolved_and_the_lookup_waits_for_its_ack() {
    use isthmus_dns::demand::DEMAND_TYPE;
    let scoping = isthmus_xds::Scoping {
        on_demand: true,
        namespace: false,
    };
    let (mut srv, _ca, _) = serve_scoped(ClientCert::Workload(SLEEP_ID), scoping).await;
    let (agent, mut answers) = agent_stream(&mut srv, &[]).await;
    let first = next_in_force(&mut answers).await;
    assert!(in_force_names(&first).is_empty(), "nothing wanted yet");

    // Envoy: nothing of the mesh's services, not even its own namespace's.
    let (tx, rx) = mpsc::channel(8);
    tx.send(DiscoveryRequest {
        node: Some(node_with_dns_capture()),
        type_url: CDS.into(),
        ..Default::default()
    })
    .await
    .expect("send");
    let mut envoy = srv
        .client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
        .expect("stream")
        .into_inner();
    let cds = next(&mut envoy).await;
    let held = names(&cds);
    assert!(!held.iter().any(|n| n == HTTPBIN || n == SLEEP), "{held:?}");
    assert!(held.iter().any(|n| n == "PassthroughCluster"), "{held:?}");
    let ack = |r: &DiscoveryResponse| DiscoveryRequest {
        type_url: r.type_url.clone(),
        version_info: r.version_info.clone(),
        response_nonce: r.nonce.clone(),
        ..Default::default()
    };
    tx.send(ack(&cds)).await.expect("ack");

    // The pod resolves httpbin.bar.global: Envoy is sent its cluster, and the agent's
    // answer waits for Envoy's ACK.
    agent
        .send(DiscoveryRequest {
            type_url: DEMAND_TYPE.into(),
            resource_names: vec!["HTTPBIN.bar.global.".into()],
            response_nonce: first.nonce.clone(),
            ..Default::default()
        })
        .await
        .expect("send");
    let pushed = next(&mut envoy).await;
    assert!(
        names(&pushed).iter().any(|n| n == HTTPBIN),
        "{:?}",
        names(&pushed)
    );
    assert!(!names(&pushed).iter().any(|n| n == SLEEP));
    no_in_force(&mut answers).await;
    tx.send(ack(&pushed)).await.expect("ack");
    let held = next_in_force(&mut answers).await;
    assert_eq!(in_force_names(&held), ["httpbin.bar.global"]);
    // With the service host it brought, which the agent watches for traffic.
    let hosts = isthmus_dns::demand::decode_in_force(&held.resources[0].value).expect("in force");
    assert_eq!(hosts["httpbin.bar.global"], ["httpbin.bar.global"]);
    assert_ne!(held.version_info, first.version_info);
    // The agent's ACK is not a new request.
    agent
        .send(DiscoveryRequest {
            type_url: DEMAND_TYPE.into(),
            resource_names: vec!["httpbin.bar.global".into()],
            response_nonce: held.nonce.clone(),
            version_info: held.version_info.clone(),
            ..Default::default()
        })
        .await
        .expect("ack");
    no_in_force(&mut answers).await;
    nothing(&mut envoy).await;
}

#[tokio::test]
async fn on_demand_envoys_first_configuration_waits_for_its_agents_names() {
    let scoping = isthmus_xds::Scoping {
        on_demand: true,
        namespace: true,
    };
    let (mut srv, _ca, _) = serve_scoped(ClientCert::Workload(SLEEP_ID), scoping).await;
    // Envoy first (a control plane restart: both reconnect, in either order).
    let (tx, rx) = mpsc::channel(8);
    tx.send(DiscoveryRequest {
        node: Some(node_with_dns_capture()),
        type_url: CDS.into(),
        ..Default::default()
    })
    .await
    .expect("send");
    let mut envoy = srv
        .client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
        .expect("stream")
        .into_inner();
    nothing(&mut envoy).await;
    let (_agent, mut answers) = agent_stream(&mut srv, &["httpbin.bar.global"]).await;
    let cds = next(&mut envoy).await;
    let held = names(&cds);
    assert!(
        held.iter().any(|n| n == HTTPBIN),
        "what it used before: {held:?}"
    );
    assert!(
        held.iter().any(|n| n == SLEEP),
        "its own namespace, as asked: {held:?}"
    );
    // Envoy has not answered: the agent's answer waits.
    no_in_force(&mut answers).await;
}

#[tokio::test]
async fn without_on_demand_scoping_every_name_is_in_force_at_once() {
    let mut srv = serve().await;
    let (_agent, mut answers) = agent_stream(&mut srv, &["httpbin.bar.global"]).await;
    let r = next_in_force(&mut answers).await;
    assert_eq!(r.version_info, isthmus_dns::demand::ALL_IN_FORCE);
}

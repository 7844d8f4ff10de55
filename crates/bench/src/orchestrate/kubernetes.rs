//! `isthmus bench kubernetes`: the same synthetic mesh (services x pods in one cluster, with
//! meshNetworks) served once from registry files and once from a real kube-apiserver
//! (objects created through the API, pod addresses set through the status subresource as a
//! kubelet sets them), one control plane after the other on the same cores, with the same
//! simulated Envoys. Rows: time to ready, resident memory and bytes per endpoint, full push,
//! one pod change to every proxy.

use super::{control_plane, mb};
use crate::error::BenchError;
use crate::generate::{self, Shape};
use crate::{process, stats::percentile, xds};
use futures::StreamExt;
use isthmus_kube::local::{locate_binaries, LocalCluster, LocalOptions};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Service, ServiceAccount};
use kube::api::{Api, Patch, PatchParams, PostParams};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What `bench kubernetes` measures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesOptions {
    /// The `isthmus` binary, started as the control plane.
    pub exe: PathBuf,
    /// The Kubernetes binaries (default: found as the lab finds them).
    pub kube_bin: Option<PathBuf>,
    /// Services.
    pub services: u32,
    /// Pods per service.
    pub endpoints: u32,
    /// Simulated proxies (state of the world).
    pub proxies: usize,
    /// One-pod changes to time.
    pub changes: u32,
    /// Working directory.
    pub work: PathBuf,
}

/// One measured control plane.
#[derive(Debug, Clone, Default)]
struct Row {
    ready_s: f64,
    rss_mb: f64,
    /// The allocator's bytes in use (live memory), from the control plane's metrics.
    heap_mb: f64,
    peak_mb: f64,
    full_s: f64,
    change_p50_ms: f64,
    change_p99_ms: f64,
}

/// Runs both measurements and prints the table.
pub fn run(opts: &KubernetesOptions) -> Result<(), BenchError> {
    if opts.services == 0 || opts.endpoints == 0 || opts.proxies == 0 || opts.changes == 0 {
        return Err(BenchError::InvalidOptions(
            "--services, --endpoints, --proxies and --changes must each be at least 1",
        ));
    }
    let bin = locate_binaries(opts.kube_bin.as_deref())
        .map_err(|e| BenchError::Measure(e.to_string()))?;
    tokio::runtime::Runtime::new()?.block_on(measure_both(opts, bin))
}

async fn measure_both(opts: &KubernetesOptions, bin: PathBuf) -> Result<(), BenchError> {
    let shape = Shape {
        clusters: 1,
        services: opts.services,
        endpoints: opts.endpoints,
    };
    let endpoints = shape.total_endpoints();
    let _ = std::fs::remove_dir_all(&opts.work);
    std::fs::create_dir_all(&opts.work)?;
    let written = generate::write(&opts.work.join("mesh"), shape)?;
    println!(
        "mesh: {} services x {} pods = {endpoints} endpoints in one cluster ({} objects)",
        opts.services, opts.endpoints, written.objects
    );

    // Files.
    let files_work = opts.work.join("files");
    std::fs::create_dir_all(&files_work)?;
    let cp = control_plane::start(&opts.exe, &written, &files_work).await?;
    let file_dir = written.registries[0].1.clone();
    let files = measure(
        opts,
        cp,
        |g| {
            let dir = file_dir.clone();
            async move {
                generate::move_endpoint(&dir, g % opts.services, 0, g + 1)
                    .map(|_| ())
                    .map_err(BenchError::from)
            }
        },
        Duration::from_millis(200),
    )
    .await?;

    // The API server.
    let mut options = LocalOptions::loopback(bin, opts.work.join("kube"));
    options.service_cidr = "10.96.0.0/12".into();
    let cluster = tokio::task::block_in_place(|| LocalCluster::start(options))
        .map_err(|e| BenchError::Measure(e.to_string()))?;
    let client = cluster
        .client()
        .await
        .map_err(|e| BenchError::Measure(e.to_string()))?;
    let loaded = Instant::now();
    let requests = load(&client, shape).await?;
    let load_s = loaded.elapsed().as_secs_f64();
    println!(
        "API server: {requests} requests (creates, then pod status) in {load_s:.1}s ({:.0}/s); etcd + kube-apiserver RSS {:.0} MB",
        requests as f64 / load_s,
        cluster
            .pids()
            .iter()
            .filter_map(|(_, pid)| process::memory(*pid))
            .map(|(now, _)| mb(now))
            .sum::<f64>()
    );
    let kube_work = opts.work.join("kube-cp");
    std::fs::create_dir_all(&kube_work)?;
    let cp = control_plane::start_kube(&opts.exe, &cluster.kubeconfig_path(), &kube_work).await?;
    let pods_api = client.clone();
    let kube = measure(
        opts,
        cp,
        move |g| flip_pod(pods_api.clone(), opts.services, g),
        Duration::from_millis(100),
    )
    .await?;
    drop(cluster);

    println!();
    println!("| {endpoints} endpoints | files | API server |");
    println!("|---|---|---|");
    let row = |name: &str, f: &dyn Fn(&Row) -> String| {
        println!("| {name} | {} | {} |", f(&files), f(&kube));
    };
    row("control plane ready (first snapshot)", &|r| {
        format!("{:.2} s", r.ready_s)
    });
    row("RSS when ready", &|r| format!("{:.1} MB", r.rss_mb));
    row("heap in use when ready (live memory)", &|r| {
        format!("{:.1} MB", r.heap_mb)
    });
    row("heap in use per endpoint", &|r| {
        format!("{:.0} bytes", r.heap_mb * 1e6 / endpoints as f64)
    });
    row("bytes per endpoint (RSS / endpoints)", &|r| {
        format!("{:.0}", r.rss_mb * 1e6 / endpoints as f64)
    });
    row(&format!("full push to {} proxies", opts.proxies), &|r| {
        format!("{:.2} s", r.full_s)
    });
    row("peak RSS", &|r| format!("{:.1} MB", r.peak_mb));
    row(
        "one pod change to every proxy, p50 (after the debounce)",
        &|r| format!("{:.0} ms", r.change_p50_ms),
    );
    row("one pod change to every proxy, p99", &|r| {
        format!("{:.0} ms", r.change_p99_ms)
    });
    Ok(())
}

/// Measures one running control plane: ready time and memory, a full push to the proxies,
/// then `opts.changes` changes made by `change(g)` (each one new snapshot), timed from the
/// change to every proxy's update, less `debounce`.
async fn measure<F, Fut>(
    opts: &KubernetesOptions,
    cp: control_plane::BenchControlPlane,
    change: F,
    debounce: Duration,
) -> Result<Row, BenchError>
where
    F: Fn(u32) -> Fut,
    Fut: std::future::Future<Output = Result<(), BenchError>>,
{
    let pid = cp.pid();
    let mut row = Row {
        ready_s: cp.started.elapsed().as_secs_f64(),
        ..Default::default()
    };
    // Settled.
    tokio::time::sleep(Duration::from_secs(2)).await;
    row.rss_mb = mb(process::memory(pid).map(|(now, _)| now).unwrap_or_default());
    row.heap_mb = isthmus_lab::http::get(cp.monitoring, "/metrics")
        .ok()
        .and_then(|(_, body)| {
            body.lines()
                .find_map(|l| l.strip_prefix("isthmus_heap_in_use_bytes "))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .map(mb)
        .unwrap_or_default();
    let start = Instant::now();
    let mut load = xds::start(xds::LoadConfig {
        address: format!("127.0.0.1:{}", cp.port),
        tls: Some(cp.load_tls()),
        proxies: opts.proxies,
        delta: false,
        cluster: "cluster1".into(),
        reconnect: false,
        wanted: None,
    });
    let (full, mut version) =
        xds::wait_full(&mut load, opts.proxies, start, Duration::from_secs(900)).await;
    row.full_s = full
        .iter()
        .flatten()
        .max()
        .copied()
        .unwrap_or_default()
        .as_secs_f64();
    let mut lat = Vec::new();
    for g in 0..opts.changes {
        // The newest version any proxy holds: what came in since the last wait (a source may
        // make more than one version of one change) is counted first.
        while let Ok(e) = load.events.try_recv() {
            if let xds::Event::Endpoints(_, v, _) | xds::Event::Full(_, v, _) = e {
                version = version.max(v);
            }
        }
        let changed_at = Instant::now();
        change(g).await?;
        let got = xds::wait_endpoints(
            &mut load,
            opts.proxies,
            version,
            changed_at,
            Duration::from_secs(60),
        )
        .await;
        let missed = got.iter().filter(|d| d.is_none()).count();
        if missed > 0 {
            return Err(BenchError::Measure(format!(
                "change {g}: {missed} of {} proxies got no endpoint update within 60 s",
                opts.proxies
            )));
        }
        lat.extend(got.iter().flatten().map(|d| d.saturating_sub(debounce)));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    row.change_p50_ms = percentile(&mut lat, 50.0).as_secs_f64() * 1e3;
    row.change_p99_ms = percentile(&mut lat, 99.0).as_secs_f64() * 1e3;
    row.peak_mb = mb(process::memory(pid)
        .map(|(_, peak)| peak)
        .unwrap_or_default());
    println!(
        "ready in {:.2}s, RSS {:.1} MB (heap in use {:.1} MB); full push to {} proxies {:.2}s; one pod change p50 {:.0} ms, p99 {:.0} ms ({} changes); peak RSS {:.1} MB",
        row.ready_s, row.rss_mb, row.heap_mb, opts.proxies, row.full_s, row.change_p50_ms, row.change_p99_ms, opts.changes, row.peak_mb
    );
    Ok(row)
}

/// Change `g` of a series: one pod of service `(g / 2) % services` leaves its service (its
/// `app` label changes), then comes back: one watch event, one endpoint change, each time.
pub(super) async fn flip_pod(
    client: kube::Client,
    services: u32,
    g: u32,
) -> Result<(), BenchError> {
    let (svc, ns) = generate::service_name((g / 2) % services.max(1));
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    let app = if g.is_multiple_of(2) {
        format!("{svc}-away")
    } else {
        svc.clone()
    };
    let patch = serde_json::json!({"metadata": {"labels": {"app": app}}});
    pods.patch(
        &format!("{svc}-0"),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map(|_| ())
    .map_err(|e| BenchError::Measure(format!("patching a pod: {e}")))
}

/// The EndpointSlice of service `s` as kube-controller-manager's EndpointSlice controller
/// writes it (its labels, one ready endpoint per pod with the pod as target), less the pods
/// of `absent`.
fn endpoint_slice(shape: Shape, s: u32, absent: Option<u32>) -> serde_json::Value {
    let (svc, ns) = generate::service_name(s);
    let endpoints: Vec<serde_json::Value> = (0..shape.endpoints)
        .filter(|e| Some(*e) != absent)
        .map(|e| {
            let n = u64::from(s) * u64::from(shape.endpoints) + u64::from(e);
            serde_json::json!({
                "addresses": [generate::pod_ip(n)],
                "conditions": {"ready": true, "serving": true, "terminating": false},
                "nodeName": "bench-node",
                "targetRef": {"kind": "Pod", "name": format!("{svc}-{e}"), "namespace": ns},
            })
        })
        .collect();
    serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": format!("{svc}-bench"),
            "namespace": ns,
            "labels": {
                "kubernetes.io/service-name": svc,
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            },
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints,
    })
}

/// Writes every service's EndpointSlice as the EndpointSlice controller would (istiod reads
/// endpoints from slices; Isthmus reads pods and ignores the controller's slices), 32
/// requests in flight. Returns the number of requests.
pub(super) async fn load_slices(client: &kube::Client, shape: Shape) -> Result<u64, BenchError> {
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    let creates = futures::stream::iter(0..shape.services).map(|s| {
        let client = client.clone();
        async move {
            let (_, ns) = generate::service_name(s);
            let slice: EndpointSlice = serde_json::from_value(endpoint_slice(shape, s, None))
                .map_err(|e| BenchError::Measure(e.to_string()))?;
            Api::<EndpointSlice>::namespaced(client, &ns)
                .create(&PostParams::default(), &slice)
                .await
                .map_err(|e| BenchError::Measure(format!("endpoint slice: {e}")))?;
            Ok::<u64, BenchError>(1)
        }
    });
    let mut creates = std::pin::pin!(creates.buffer_unordered(32));
    let mut requests = 0;
    while let Some(n) = creates.next().await {
        requests += n?;
    }
    Ok(requests)
}

/// [`flip_pod`], with the service's EndpointSlice written at the same moment as the
/// controller would write it (without the pod, then with it again): each control plane
/// sees the change in what it reads, at the same time.
pub(super) async fn flip_pod_and_slice(
    client: kube::Client,
    shape: Shape,
    g: u32,
) -> Result<(), BenchError> {
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    let s = (g / 2) % shape.services.max(1);
    let (svc, ns) = generate::service_name(s);
    let slice = endpoint_slice(shape, s, g.is_multiple_of(2).then_some(0));
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), &ns);
    let name = format!("{svc}-bench");
    let patch_slice = async {
        slices
            .patch(&name, &PatchParams::default(), &Patch::Merge(&slice))
            .await
            .map(|_| ())
            .map_err(|e| BenchError::Measure(format!("patching an endpoint slice: {e}")))
    };
    let (pod, slice) = futures::join!(flip_pod(client, shape.services, g), patch_slice);
    pod.and(slice)
}

/// Creates the mesh of `shape` through the API server: namespaces, the `istio` ConfigMap,
/// Services, Pods (bound to a node, as after scheduling), then each pod's address and phase
/// through the status subresource. Returns the number of requests.
pub(super) async fn load(client: &kube::Client, shape: Shape) -> Result<u64, BenchError> {
    let api_err =
        |what: &'static str| move |e: kube::Error| BenchError::Measure(format!("{what}: {e}"));
    let namespaces = shape.services.div_ceil(100);
    let ns_api: Api<Namespace> = Api::all(client.clone());
    let mut requests = 0u64;
    for n in 0..namespaces {
        let ns: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": format!("ns-{n}")}}))
                .map_err(|e| BenchError::Measure(e.to_string()))?;
        ns_api
            .create(&PostParams::default(), &ns)
            .await
            .map_err(api_err("namespace"))?;
        requests += 1;
    }
    let system: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "istio-system"}}))
            .map_err(|e| BenchError::Measure(e.to_string()))?;
    ns_api
        .create(&PostParams::default(), &system)
        .await
        .map_err(api_err("namespace"))?;
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "istio", "namespace": "istio-system"},
        "data": {"meshNetworks": "networks:\n  network1:\n    endpoints:\n    - fromRegistry: cluster1\n    gateways:\n    - address: 198.18.1.1\n      port: 15443\n"}
    }))
    .map_err(|e| BenchError::Measure(e.to_string()))?;
    Api::<ConfigMap>::namespaced(client.clone(), "istio-system")
        .create(&PostParams::default(), &cm)
        .await
        .map_err(api_err("configmap"))?;
    requests += 2;
    // Every object, then every pod status, 32 requests in flight.
    let creates = futures::stream::iter(0..shape.services).map(|s| {
        let client = client.clone();
        async move {
            let (svc, ns) = generate::service_name(s);
            let service: Service = serde_json::from_value(serde_json::json!({
                "metadata": {"name": svc},
                "spec": {"ports": [{"name": "http", "port": 8080}], "selector": {"app": svc}}
            }))
            .map_err(|e| BenchError::Measure(e.to_string()))?;
            Api::<Service>::namespaced(client.clone(), &ns)
                .create(&PostParams::default(), &service)
                .await
                .map_err(api_err("service"))?;
            // The pods' service account, as in the files (the API server checks it exists).
            let account: ServiceAccount =
                serde_json::from_value(serde_json::json!({"metadata": {"name": svc}}))
                    .map_err(|e| BenchError::Measure(e.to_string()))?;
            Api::<ServiceAccount>::namespaced(client.clone(), &ns)
                .create(&PostParams::default(), &account)
                .await
                .map_err(api_err("service account"))?;
            let pods: Api<Pod> = Api::namespaced(client, &ns);
            for e in 0..shape.endpoints {
                let pod: Pod = serde_json::from_value(serde_json::json!({
                    "metadata": {"name": format!("{svc}-{e}"), "labels": {"app": svc}},
                    "spec": {"nodeName": "bench-node", "serviceAccountName": svc,
                             "automountServiceAccountToken": false,
                             "containers": [{"name": "app", "image": "bench"}]}
                }))
                .map_err(|e| BenchError::Measure(e.to_string()))?;
                pods.create(&PostParams::default(), &pod)
                    .await
                    .map_err(api_err("pod"))?;
            }
            Ok::<u64, BenchError>(2 + u64::from(shape.endpoints))
        }
    });
    let mut creates = std::pin::pin!(creates.buffer_unordered(32));
    while let Some(n) = creates.next().await {
        requests += n?;
    }
    let statuses = futures::stream::iter(0..shape.services).map(|s| {
        let client = client.clone();
        async move {
            let (svc, ns) = generate::service_name(s);
            let pods: Api<Pod> = Api::namespaced(client, &ns);
            for e in 0..shape.endpoints {
                let n = u64::from(s) * u64::from(shape.endpoints) + u64::from(e);
                let ip = generate::pod_ip(n);
                let status = serde_json::json!({"status": {
                    "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                    "conditions": [{"type": "Ready", "status": "True"}]
                }});
                pods.patch_status(
                    &format!("{svc}-{e}"),
                    &PatchParams::default(),
                    &Patch::Merge(&status),
                )
                .await
                .map_err(api_err("pod status"))?;
            }
            Ok::<u64, BenchError>(u64::from(shape.endpoints))
        }
    });
    let mut statuses = std::pin::pin!(statuses.buffer_unordered(32));
    while let Some(n) = statuses.next().await {
        requests += n?;
    }
    Ok(requests)
}

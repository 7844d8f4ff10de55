//! Istio's init step: iptables rules in the pod's network namespace that send the
//! application's outbound TCP to Envoy's 15001 and inbound TCP to 15006, keeping the
//! original destination (REDIRECT), while Envoy's own traffic (uid/gid 1337) and the
//! agent's connection to the control plane pass untouched. With DNS capture, the pod's
//! queries to its resolvers (UDP and TCP port 53) go to the agent's DNS proxy instead, and
//! the proxy's own forwarded queries (marked [`DNS_MARK`]) pass.

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};

/// The uid and gid Envoy runs as, excluded from capture (Istio's 1337).
pub const PROXY_UID: u32 = 1337;

/// The socket mark of the agent's forwarded DNS queries, excluded from capture.
pub const DNS_MARK: u32 = 1337;

/// Istio's DNS capture port.
pub const DNS_PORT: u16 = 15053;

/// Port-53 traffic to capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsCapture {
    /// The pod's resolvers (its resolv.conf nameservers): queries to them are captured.
    pub resolvers: Vec<std::net::Ipv4Addr>,
    /// Where the agent's DNS proxy listens (15053).
    pub port: u16,
}

/// What to capture.
#[derive(Debug, Clone)]
pub struct CaptureConfig {
    /// Outbound capture port (15001).
    pub outbound_port: u16,
    /// Inbound capture port (15006).
    pub inbound_port: u16,
    /// Inbound ports never captured (Envoy's own: 15000, 15008, 15020, 15021, 15090).
    pub exclude_inbound_ports: Vec<u16>,
    /// Destinations never captured: the control plane the agent itself talks to.
    pub exclude_outbound: Vec<SocketAddr>,
    /// DNS capture, when the agent serves the pod's DNS.
    pub dns: Option<DnsCapture>,
    /// The uid and gid whose traffic is never captured (the proxy's: Envoy, and the agent
    /// when it runs as the proxy's user, as in an injected pod).
    pub proxy_uid: u32,
}

impl CaptureConfig {
    /// Istio's defaults, excluding the control plane at `control_plane`.
    pub fn istio(control_plane: Option<SocketAddr>) -> Self {
        CaptureConfig {
            outbound_port: 15001,
            inbound_port: 15006,
            exclude_inbound_ports: vec![15000, 15008, 15020, 15021, 15090],
            exclude_outbound: control_plane.into_iter().collect(),
            dns: None,
            proxy_uid: PROXY_UID,
        }
    }

    /// The rules, in `iptables-restore` format (applied in one transaction).
    pub fn rules(&self) -> String {
        let mut r = String::from(
            "*nat\n:ISTIO_INBOUND - [0:0]\n:ISTIO_IN_REDIRECT - [0:0]\n:ISTIO_OUTPUT - [0:0]\n:ISTIO_REDIRECT - [0:0]\n",
        );
        if self.dns.is_some() {
            r.push_str(":ISTIO_DNS - [0:0]\n");
        }
        r.push_str("-A PREROUTING -p tcp -j ISTIO_INBOUND\n");
        if let Some(dns) = &self.dns {
            // Before TCP capture, so that TCP queries to a resolver reach the DNS proxy and
            // not Envoy; the proxy's own queries (marked) and Envoy's pass.
            r.push_str("-A OUTPUT -p udp --dport 53 -j ISTIO_DNS\n");
            r.push_str("-A OUTPUT -p tcp --dport 53 -j ISTIO_DNS\n");
            r.push_str(&format!(
                "-A ISTIO_DNS -m mark --mark {DNS_MARK} -j RETURN\n"
            ));
            r.push_str(&format!(
                "-A ISTIO_DNS -m owner --uid-owner {} -j RETURN\n",
                self.proxy_uid
            ));
            for ip in &dns.resolvers {
                for proto in ["udp", "tcp"] {
                    r.push_str(&format!(
                        "-A ISTIO_DNS -d {ip}/32 -p {proto} -j REDIRECT --to-ports {}\n",
                        dns.port
                    ));
                }
            }
        }
        r.push_str("-A OUTPUT -p tcp -j ISTIO_OUTPUT\n");
        for p in &self.exclude_inbound_ports {
            r.push_str(&format!("-A ISTIO_INBOUND -p tcp --dport {p} -j RETURN\n"));
        }
        r.push_str("-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT\n");
        r.push_str(&format!(
            "-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports {}\n",
            self.inbound_port
        ));
        // Envoy's inbound passthrough source address.
        r.push_str("-A ISTIO_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN\n");
        r.push_str(&format!(
            "-A ISTIO_OUTPUT -m owner --uid-owner {} -j RETURN\n",
            self.proxy_uid
        ));
        r.push_str(&format!(
            "-A ISTIO_OUTPUT -m owner --gid-owner {} -j RETURN\n",
            self.proxy_uid
        ));
        r.push_str("-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN\n");
        if self.dns.is_some() {
            r.push_str(&format!(
                "-A ISTIO_OUTPUT -m mark --mark {DNS_MARK} -j RETURN\n"
            ));
        }
        for a in &self.exclude_outbound {
            r.push_str(&format!(
                "-A ISTIO_OUTPUT -d {}/32 -p tcp --dport {} -j RETURN\n",
                a.ip(),
                a.port()
            ));
        }
        r.push_str("-A ISTIO_OUTPUT -j ISTIO_REDIRECT\n");
        r.push_str(&format!(
            "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports {}\n",
            self.outbound_port
        ));
        r.push_str("COMMIT\n");
        r
    }
}

/// `isthmus iptables`: what an injected pod's `istio-init` container runs (Istio's
/// `istio-iptables`): installs the capture rules in the pod's network namespace and exits.
#[derive(Debug, Clone, clap::Args)]
pub struct IptablesArgs {
    /// Where outbound TCP goes (Envoy's 15001).
    #[arg(long, default_value_t = 15001)]
    pub outbound_port: u16,
    /// Where inbound TCP goes (Envoy's 15006).
    #[arg(long, default_value_t = 15006)]
    pub inbound_port: u16,
    /// The uid and gid whose traffic passes uncaptured (the proxy's).
    #[arg(long, default_value_t = PROXY_UID)]
    pub proxy_uid: u32,
    /// Inbound ports never captured, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "15020,15021,15090")]
    pub exclude_inbound_ports: Vec<u16>,
    /// Outbound destinations never captured (IP:PORT), comma separated.
    #[arg(long, value_delimiter = ',')]
    pub exclude_outbound: Vec<SocketAddr>,
    /// Send the pod's DNS queries to its resolvers (from /etc/resolv.conf) to the proxy's
    /// DNS on 15053.
    #[arg(long)]
    pub redirect_dns: bool,
}

impl IptablesArgs {
    /// The capture these flags ask for; `resolv_conf` is the pod's /etc/resolv.conf.
    pub fn capture(&self, resolv_conf: &str) -> CaptureConfig {
        let mut c = CaptureConfig::istio(None);
        c.outbound_port = self.outbound_port;
        c.inbound_port = self.inbound_port;
        c.proxy_uid = self.proxy_uid;
        c.exclude_inbound_ports = self.exclude_inbound_ports.clone();
        // Envoy's admin port is never reachable from outside, captured or not.
        if !c.exclude_inbound_ports.contains(&15000) {
            c.exclude_inbound_ports.insert(0, 15000);
        }
        c.exclude_outbound = self.exclude_outbound.clone();
        if self.redirect_dns {
            let (upstreams, _) = isthmus_dns::proxy::read_resolv_conf(resolv_conf);
            c.dns = Some(DnsCapture {
                resolvers: upstreams
                    .iter()
                    .filter_map(|u| match u.ip() {
                        std::net::IpAddr::V4(ip) => Some(ip),
                        std::net::IpAddr::V6(_) => None,
                    })
                    .collect(),
                port: DNS_PORT,
            });
        }
        c
    }
}

/// Capture could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// `iptables-restore` is missing or could not run.
    #[error(
        "cannot run iptables-restore (install the `iptables` package; capture needs root): {0}"
    )]
    Spawn(std::io::Error),
    /// It ran and refused the rules.
    #[error("iptables-restore refused the capture rules: {0}")]
    Refused(String),
}

/// Applies the rules to the current network namespace, replacing earlier Istio chains.
pub fn apply(config: &CaptureConfig) -> Result<(), CaptureError> {
    // Flush first so that a restarted agent does not stack duplicate jumps.
    let _ = Command::new("iptables")
        .args(["-t", "nat", "-F"])
        .stderr(Stdio::null())
        .status();
    let _ = Command::new("iptables")
        .args(["-t", "nat", "-X"])
        .stderr(Stdio::null())
        .status();
    let mut child = Command::new("iptables-restore")
        .arg("--noflush")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(CaptureError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(config.rules().as_bytes())
            .map_err(CaptureError::Spawn)?;
    }
    let out = child.wait_with_output().map_err(CaptureError::Spawn)?;
    if !out.status.success() {
        return Err(CaptureError::Refused(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_redirect_apps_and_spare_envoy_and_the_control_plane() {
        let rules = CaptureConfig::istio(Some("10.10.0.2:15012".parse().expect("addr"))).rules();
        let lines: Vec<&str> = rules.lines().collect();
        let pos = |needle: &str| {
            lines
                .iter()
                .position(|l| *l == needle)
                .unwrap_or_else(|| panic!("missing `{needle}` in\n{rules}"))
        };
        let envoy = pos("-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN");
        let cp = pos("-A ISTIO_OUTPUT -d 10.10.0.2/32 -p tcp --dport 15012 -j RETURN");
        let redirect = pos("-A ISTIO_OUTPUT -j ISTIO_REDIRECT");
        assert!(envoy < redirect && cp < redirect, "exclusions come first");
        pos("-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001");
        pos("-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006");
        assert!(
            pos("-A ISTIO_INBOUND -p tcp --dport 15021 -j RETURN")
                < pos("-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT")
        );
        assert_eq!(lines.last(), Some(&"COMMIT"));
        assert!(!rules.contains("ISTIO_DNS"), "no DNS capture unless asked");
    }

    #[test]
    fn istio_init_flags_capture_dns_to_the_resolvers_and_spare_the_proxy_user() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: IptablesArgs,
        }
        let cli = Cli::try_parse_from([
            "iptables",
            "--redirect-dns",
            "--exclude-inbound-ports",
            "15020,15021",
        ])
        .expect("flags");
        let c = cli
            .args
            .capture("search sample.svc.cluster.local\nnameserver 10.10.0.2\n");
        assert_eq!(c.exclude_inbound_ports, [15000, 15020, 15021]);
        let dns = c.dns.clone().expect("DNS capture");
        assert_eq!(
            dns.resolvers,
            ["10.10.0.2".parse::<std::net::Ipv4Addr>().expect("ip")]
        );
        assert_eq!(dns.port, 15053);
        let rules = c.rules();
        assert!(
            rules.contains("-A ISTIO_DNS -m owner --uid-owner 1337 -j RETURN"),
            "{rules}"
        );
        assert!(
            rules.contains("-A ISTIO_DNS -d 10.10.0.2/32 -p udp -j REDIRECT --to-ports 15053"),
            "{rules}"
        );
        assert!(
            rules.contains("-A ISTIO_INBOUND -p tcp --dport 15000 -j RETURN"),
            "{rules}"
        );
        let plain = Cli::try_parse_from(["iptables"])
            .expect("flags")
            .args
            .capture("");
        assert!(plain.dns.is_none());
        assert_eq!(plain.exclude_inbound_ports, [15000, 15020, 15021, 15090]);
    }

    #[test]
    fn dns_capture_sends_queries_to_the_resolvers_to_the_proxy_and_spares_its_own() {
        let mut config = CaptureConfig::istio(None);
        config.dns = Some(DnsCapture {
            resolvers: vec!["10.10.0.2".parse().expect("ip")],
            port: DNS_PORT,
        });
        let rules = config.rules();
        let lines: Vec<&str> = rules.lines().collect();
        let pos = |needle: &str| {
            lines
                .iter()
                .position(|l| *l == needle)
                .unwrap_or_else(|| panic!("missing `{needle}` in\n{rules}"))
        };
        let tcp_dns = pos("-A OUTPUT -p tcp --dport 53 -j ISTIO_DNS");
        assert!(
            tcp_dns < pos("-A OUTPUT -p tcp -j ISTIO_OUTPUT"),
            "DNS before Envoy"
        );
        pos("-A OUTPUT -p udp --dport 53 -j ISTIO_DNS");
        let spared = pos("-A ISTIO_DNS -m mark --mark 1337 -j RETURN");
        let udp = pos("-A ISTIO_DNS -d 10.10.0.2/32 -p udp -j REDIRECT --to-ports 15053");
        pos("-A ISTIO_DNS -d 10.10.0.2/32 -p tcp -j REDIRECT --to-ports 15053");
        assert!(spared < udp);
        // The proxy's TCP queries are not sent to Envoy either.
        assert!(
            pos("-A ISTIO_OUTPUT -m mark --mark 1337 -j RETURN")
                < pos("-A ISTIO_OUTPUT -j ISTIO_REDIRECT")
        );
    }
}

//! Istio's init step: iptables rules in the pod's network namespace that send the
//! application's outbound TCP to Envoy's 15001 and inbound TCP to 15006, keeping the
//! original destination (REDIRECT), while Envoy's own traffic (uid/gid 1337) and the
//! agent's connection to the control plane pass untouched.

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};

/// The uid and gid Envoy runs as, excluded from capture (Istio's 1337).
pub const PROXY_UID: u32 = 1337;

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
}

impl CaptureConfig {
    /// Istio's defaults, excluding the control plane at `control_plane`.
    pub fn istio(control_plane: Option<SocketAddr>) -> Self {
        CaptureConfig {
            outbound_port: 15001,
            inbound_port: 15006,
            exclude_inbound_ports: vec![15000, 15008, 15020, 15021, 15090],
            exclude_outbound: control_plane.into_iter().collect(),
        }
    }

    /// The rules, in `iptables-restore` format (applied in one transaction).
    pub fn rules(&self) -> String {
        let mut r = String::from(
            "*nat\n:ISTIO_INBOUND - [0:0]\n:ISTIO_IN_REDIRECT - [0:0]\n:ISTIO_OUTPUT - [0:0]\n:ISTIO_REDIRECT - [0:0]\n\
             -A PREROUTING -p tcp -j ISTIO_INBOUND\n-A OUTPUT -p tcp -j ISTIO_OUTPUT\n",
        );
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
            "-A ISTIO_OUTPUT -m owner --uid-owner {PROXY_UID} -j RETURN\n"
        ));
        r.push_str(&format!(
            "-A ISTIO_OUTPUT -m owner --gid-owner {PROXY_UID} -j RETURN\n"
        ));
        r.push_str("-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN\n");
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
    }
}

//! A readable text form of generated resources, with every packed `Any` decoded in place.
//! Golden files and `proxy-config` output use it.

use crate::pb::*;
use crate::resources::ProxyResources;
use prost::Message;
use std::fmt::Write;

fn decode_any(type_url: &str, bytes: &[u8]) -> Option<String> {
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager as Hcm;
    macro_rules! try_types {
        ($($t:ty),*) => {{
            $(if type_url == <$t as prost::Name>::type_url() {
                return <$t>::decode(bytes).ok().map(|m| format!("{m:#?}"));
            })*
        }};
    }
    // A server's private key in line (a gateway's `credentialName`) is never printed, as
    // Envoy's own config dump redacts it.
    if type_url == <DownstreamTlsContext as prost::Name>::type_url() {
        let mut ctx = DownstreamTlsContext::decode(bytes).ok()?;
        for cert in ctx
            .common_tls_context
            .iter_mut()
            .flat_map(|c| c.tls_certificates.iter_mut())
        {
            if let Some(key) = cert.private_key.as_mut().filter(|k| {
                matches!(k.specifier, Some(envoy_types::pb::envoy::config::core::v3::data_source::Specifier::InlineBytes(_)))
            }) {
                key.specifier = Some(envoy_types::pb::envoy::config::core::v3::data_source::Specifier::InlineString("[redacted]".into()));
            }
        }
        return Some(format!("{ctx:#?}"));
    }
    try_types!(Hcm, TcpProxy, UpstreamTlsContext);
    if let Some(rbac) = crate::rbac::describe(type_url, bytes) {
        return Some(rbac);
    }
    if let Some(jwt) = crate::jwt::describe(type_url, bytes) {
        return Some(jwt);
    }
    if bytes.is_empty() {
        return Some("{}".into());
    }
    None
}

/// Expands `Any { type_url, value: [bytes] }` blocks of a pretty Debug text into the
/// decoded message, recursively.
pub fn expand_any(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        if trimmed.starts_with("type_url: \"")
            && i + 1 < lines.len()
            && lines[i + 1].trim_start().starts_with("value: [")
        {
            let url = trimmed
                .trim_start_matches("type_url: \"")
                .trim_end_matches("\",");
            let indent = &line[..line.len() - trimmed.len()];
            let mut bytes = Vec::new();
            let mut j = i + 1;
            let inline = lines[j].trim_start().trim_start_matches("value: [");
            if inline.starts_with(']') {
                j += 1;
            } else {
                j += 1;
                while j < lines.len() && !lines[j].trim_start().starts_with(']') {
                    if let Ok(b) = lines[j].trim().trim_end_matches(',').parse::<u8>() {
                        bytes.push(b);
                    }
                    j += 1;
                }
                j += 1;
            }
            let _ = writeln!(out, "{indent}type_url: \"{url}\",");
            match decode_any(url, &bytes) {
                Some(decoded) => {
                    let expanded = expand_any(&decoded);
                    let mut first = true;
                    for l in expanded.lines() {
                        if first {
                            let _ = writeln!(out, "{indent}value: {l}");
                            first = false;
                        } else {
                            let _ = writeln!(out, "{indent}{l}");
                        }
                    }
                }
                None => {
                    let _ = writeln!(out, "{indent}value: <{} bytes>", bytes.len());
                }
            }
            i = j;
            continue;
        }
        out.push_str(line);
        out.push('\n');
        i += 1;
    }
    out
}

/// Renders all of a proxy's resources.
pub fn render(res: &ProxyResources) -> String {
    let mut out = String::new();
    let mut section = |title: &str, items: Vec<(String, String)>| {
        let _ = writeln!(out, "### {title}");
        for (name, body) in items {
            let _ = writeln!(out, "## {name}");
            out.push_str(&expand_any(&body));
        }
    };
    section(
        "clusters",
        res.clusters
            .iter()
            .map(|c| (c.name.clone(), format!("{c:#?}")))
            .collect(),
    );
    section(
        "endpoints",
        res.endpoints
            .iter()
            .map(|c| (c.cluster_name.clone(), format!("{c:#?}")))
            .collect(),
    );
    section(
        "listeners",
        res.listeners
            .iter()
            .map(|c| (c.name.clone(), format!("{c:#?}")))
            .collect(),
    );
    section(
        "routes",
        res.routes
            .iter()
            .map(|c| (c.name.clone(), format!("{c:#?}")))
            .collect(),
    );
    out
}

//! What every proxy reports for Istio's workload metrics (see
//! [`isthmus_api::telemetry`]): a JSON line per HTTP request or TCP connection on Envoy's
//! stdout, for its agent to count, and the peer header each side adds and the other moves
//! into metadata.
//!
//! The lines are written with a text format shaped as JSON (a `json_format` is a protobuf
//! `Struct`, a hash map whose encoding order changes from process to process, and would
//! change every listener's version after a control plane restart). Every value is Envoy's
//! own (codes, sizes, cluster names, certificate URIs) but the peer value, which a client
//! can set: it comes first, so that keys it might forge are overridden by the real ones
//! after it.

use crate::pb::*;
use envoy_types::pb::envoy::config::accesslog::v3::{access_log, AccessLog};
use envoy_types::pb::envoy::config::core::v3::{
    data_source, header_value_option::HeaderAppendAction, substitution_format_string, DataSource,
    HeaderValue, HeaderValueOption, SubstitutionFormatString,
};
use envoy_types::pb::envoy::extensions::access_loggers::stream::v3::{
    stdout_access_log, StdoutAccessLog,
};
use envoy_types::pb::envoy::extensions::filters::http::header_to_metadata::v3::{
    config::{KeyValuePair, Rule, ValueType},
    Config as HeaderToMetadata,
};
use isthmus_api::telemetry::{fields as f, MARKER, PEER_ENV, PEER_HEADER, PEER_METADATA};

/// Which side of a request a proxy reports as (Istio's `reporter` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reporter {
    /// The proxy sent the request (a client's sidecar, a gateway).
    Source,
    /// The proxy received it for its workload (inbound).
    Destination,
}

impl Reporter {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reporter::Source => "source",
            Reporter::Destination => "destination",
        }
    }
}

/// The name of the filter that moves the peer header into metadata.
pub const PEER_FILTER: &str = "envoy.filters.http.header_to_metadata";

/// The line format of an HTTP connection manager (`http`) or TCP proxy (`tcp`).
fn line_format(reporter: Reporter, protocol: &str) -> String {
    let (ns, key) = PEER_METADATA;
    let http = if protocol == f::HTTP {
        format!(r#","{}":"%PROTOCOL%""#, f::PROTOCOL)
    } else {
        format!(r#","{}":"%ACCESS_LOG_TYPE%""#, f::LOG_TYPE)
    };
    format!(
        concat!(
            r#"{{"{peer}":"%DYNAMIC_METADATA({ns}:{key})%","{marker}":"{protocol}","#,
            r#""{reporter_key}":"{reporter}","{code}":%RESPONSE_CODE%,"{flags}":"%RESPONSE_FLAGS%","#,
            r#""{duration}":%DURATION%,"{rx}":%BYTES_RECEIVED%,"{tx}":%BYTES_SENT%,"#,
            r#""{cluster}":"%UPSTREAM_CLUSTER%","{down}":"%DOWNSTREAM_PEER_URI_SAN%","#,
            r#""{up}":"%UPSTREAM_PEER_URI_SAN%"{http}}}"#,
            "\n"
        ),
        peer = f::PEER,
        marker = MARKER,
        reporter_key = f::REPORTER,
        reporter = reporter.as_str(),
        code = f::CODE,
        flags = f::FLAGS,
        duration = f::DURATION,
        rx = f::RECEIVED,
        tx = f::SENT,
        cluster = f::CLUSTER,
        down = f::DOWNSTREAM_PEER,
        up = f::UPSTREAM_PEER,
        ns = ns,
        key = key,
        protocol = protocol,
        http = http,
    )
}

/// The access log of an HTTP connection manager (`protocol` [`f::HTTP`]) or a TCP proxy
/// ([`f::TCP`]): one telemetry line on stdout.
pub fn access_log(reporter: Reporter, protocol: &str) -> AccessLog {
    let format = SubstitutionFormatString {
        format: Some(substitution_format_string::Format::TextFormatSource(
            DataSource {
                specifier: Some(data_source::Specifier::InlineString(line_format(
                    reporter, protocol,
                ))),
                ..Default::default()
            },
        )),
        ..Default::default()
    };
    AccessLog {
        name: "envoy.access_loggers.stdout".into(),
        config_type: Some(access_log::ConfigType::TypedConfig(any(&StdoutAccessLog {
            access_log_format: Some(stdout_access_log::AccessLogFormat::LogFormat(format)),
        }))),
        ..Default::default()
    }
}

/// The filter that takes the peer's header off what arrives (a request at the destination,
/// a response at the source), keeping its value in metadata for the access log.
pub fn peer_filter(reporter: Reporter) -> HttpFilter {
    let (ns, key) = PEER_METADATA;
    let rule = Rule {
        header: PEER_HEADER.into(),
        on_header_present: Some(KeyValuePair {
            metadata_namespace: ns.into(),
            key: key.into(),
            r#type: ValueType::String as i32,
            ..Default::default()
        }),
        remove: true,
        ..Default::default()
    };
    let config = match reporter {
        Reporter::Destination => HeaderToMetadata {
            request_rules: vec![rule],
            ..Default::default()
        },
        Reporter::Source => HeaderToMetadata {
            response_rules: vec![rule],
            ..Default::default()
        },
    };
    HttpFilter {
        name: PEER_FILTER.into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(any(&config))),
        ..Default::default()
    }
}

/// The header a proxy adds to what it sends its peer (requests at the source, responses at
/// the destination): its own `CLUSTER;NAMESPACE;WORKLOAD`, from its environment, so that
/// the configuration stays the same for every proxy of a shape. A header the app set is
/// replaced.
pub fn peer_header() -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: PEER_HEADER.into(),
            value: format!("%ENVIRONMENT({PEER_ENV})%"),
            ..Default::default()
        }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..Default::default()
    }
}

/// Adds the telemetry line to a TCP proxy: once when its upstream connection is
/// established (`istio_tcp_connections_opened_total`) and once when it ends (bytes and
/// `istio_tcp_connections_closed_total`).
pub fn log_tcp(proxy: &mut TcpProxy, reporter: Reporter) {
    proxy.access_log.push(access_log(reporter, f::TCP));
    proxy.access_log_options = Some(tcp_proxy::TcpAccessLogOptions {
        flush_access_log_on_connected: true,
        ..Default::default()
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_with_envoys_values_filled_in_is_json_with_every_field() {
        for (reporter, protocol) in [(Reporter::Source, f::HTTP), (Reporter::Destination, f::TCP)] {
            let filled = line_format(reporter, protocol)
                .replace(
                    "%DYNAMIC_METADATA(isthmus.peer:id)%",
                    "cluster2;foo;httpbin",
                )
                .replace("%RESPONSE_CODE%", "200")
                .replace("%DURATION%", "3")
                .replace("%BYTES_RECEIVED%", "0")
                .replace("%BYTES_SENT%", "120")
                .replace('%', "");
            let v: serde_json::Value = serde_json::from_str(filled.trim_end()).expect("json");
            assert_eq!(v[MARKER], protocol);
            assert_eq!(v[f::REPORTER], reporter.as_str());
            assert_eq!(v[f::CODE], 200);
            assert_eq!(v[f::SENT], 120);
            assert_eq!(v[f::PEER], "cluster2;foo;httpbin");
            for k in [f::FLAGS, f::CLUSTER, f::DOWNSTREAM_PEER, f::UPSTREAM_PEER] {
                assert!(v[k].is_string(), "{k} in {v}");
            }
            assert!(filled.ends_with("}\n"), "one line each: {filled:?}");
        }
    }
}

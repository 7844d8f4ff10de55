//! Discovery responses written to the wire from shared bytes.
//!
//! A resource is encoded once per proxy shape, as the protobuf entry of a response's
//! repeated `resources` field, and every stream that sends it hands the same reference-
//! counted bytes to HTTP/2: a response is a short header (gRPC framing, version, type, nonce)
//! followed by those shared parts, so a push to 1,000 proxies does not hold 1,000 copies.
//! Protobuf allows a message's fields in any order, and a repeated field's entries need
//! not be adjacent, which is what makes the concatenation a valid message.

use bytes::{BufMut, Bytes, BytesMut};
use envoy_types::pb::google::protobuf::Any;
use prost::Message;

/// Wire type 2 (length-delimited) tags of the fields written here.
mod tag {
    /// `DiscoveryResponse.version_info`, `DeltaDiscoveryResponse.system_version_info`,
    /// `Resource.version`.
    pub const FIELD_1: u8 = 0x0a;
    /// `resources` in both responses; `Resource.resource`.
    pub const FIELD_2: u8 = 0x12;
    /// `Resource.name`.
    pub const FIELD_3: u8 = 0x1a;
    /// `type_url` in both responses.
    pub const FIELD_4: u8 = 0x22;
    /// `nonce` in both responses.
    pub const FIELD_5: u8 = 0x2a;
    /// `DeltaDiscoveryResponse.removed_resources`.
    pub const FIELD_6: u8 = 0x32;
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_varint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// Bytes of a length-delimited field with a payload of `len` bytes.
fn field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

fn put_field_header(buf: &mut BytesMut, tag: u8, len: usize) {
    buf.put_u8(tag);
    put_varint(buf, len as u64);
}

fn put_str(buf: &mut BytesMut, tag: u8, s: &str) {
    put_field_header(buf, tag, s.len());
    buf.put_slice(s.as_bytes());
}

/// Appends `any` to `buf` as a `resources` entry (field 2); returns the length of the
/// entry's header, after which the encoded `Any` starts.
pub fn put_resource_entry(buf: &mut BytesMut, any: &Any) -> usize {
    let len = any.encoded_len();
    let before = buf.len();
    put_field_header(buf, tag::FIELD_2, len);
    let header = buf.len() - before;
    buf.reserve(len);
    // Cannot fail: the buffer was grown to fit.
    let _ = any.encode(buf);
    header
}

/// Bytes a `resources` entry of `any` takes (see [`put_resource_entry`]).
pub fn resource_entry_len(any: &Any) -> usize {
    field_len(any.encoded_len())
}

/// One response, as the gRPC message (5-byte length prefix and protobuf) it is on the wire,
/// in parts that are shared with other streams where they can be.
#[derive(Debug, Clone, Default)]
pub struct WireMessage {
    parts: Vec<Bytes>,
}

impl WireMessage {
    /// A `DiscoveryResponse` whose `resources` are `entries`, each a complete field-2 entry
    /// (one resource, or many concatenated) as [`put_resource_entry`] writes them.
    pub fn sotw(version: &str, type_url: &str, nonce: &str, entries: Vec<Bytes>) -> WireMessage {
        let body: usize = entries.iter().map(Bytes::len).sum();
        let header = field_len(version.len()) + field_len(type_url.len()) + field_len(nonce.len());
        let mut head = BytesMut::with_capacity(5 + header);
        put_grpc_prefix(&mut head, header + body);
        put_str(&mut head, tag::FIELD_1, version);
        put_str(&mut head, tag::FIELD_4, type_url);
        put_str(&mut head, tag::FIELD_5, nonce);
        let mut parts = Vec::with_capacity(1 + entries.len());
        parts.push(head.freeze());
        parts.extend(entries);
        WireMessage { parts }
    }

    /// A `DeltaDiscoveryResponse` carrying `resources` and naming `removed`: each resource a
    /// small header of its own (entry tag, version, name, `Any` tag), then its shared bytes.
    pub fn delta(
        system_version: &str,
        type_url: &str,
        nonce: &str,
        resources: &[DeltaEntry<'_>],
        removed: &[String],
    ) -> WireMessage {
        let mut heads = BytesMut::new();
        let mut spans = Vec::with_capacity(resources.len());
        for r in resources {
            let start = heads.len();
            put_delta_head(&mut heads, r);
            spans.push(start..heads.len());
        }
        let heads = heads.freeze();
        let mut body = Vec::with_capacity(2 * resources.len());
        for (r, span) in resources.iter().zip(spans) {
            body.push(heads.slice(span));
            body.push(r.any.clone());
        }
        Self::delta_message(system_version, type_url, nonce, body, removed)
    }

    /// A `DeltaDiscoveryResponse` whose resources are `body`, as [`delta_body`] writes them.
    pub fn delta_shared(
        system_version: &str,
        type_url: &str,
        nonce: &str,
        body: Bytes,
        removed: &[String],
    ) -> WireMessage {
        Self::delta_message(system_version, type_url, nonce, vec![body], removed)
    }

    fn delta_message(
        system_version: &str,
        type_url: &str,
        nonce: &str,
        body: Vec<Bytes>,
        removed: &[String],
    ) -> WireMessage {
        let header = field_len(system_version.len())
            + field_len(type_url.len())
            + field_len(nonce.len())
            + removed.iter().map(|r| field_len(r.len())).sum::<usize>();
        let total = header + body.iter().map(Bytes::len).sum::<usize>();
        let mut head = BytesMut::with_capacity(5 + header);
        put_grpc_prefix(&mut head, total);
        put_str(&mut head, tag::FIELD_1, system_version);
        put_str(&mut head, tag::FIELD_4, type_url);
        put_str(&mut head, tag::FIELD_5, nonce);
        for r in removed {
            put_str(&mut head, tag::FIELD_6, r);
        }
        let mut parts = Vec::with_capacity(1 + body.len());
        parts.push(head.freeze());
        parts.extend(body);
        WireMessage { parts }
    }

    /// Total bytes on the wire, gRPC prefix included.
    pub fn len(&self) -> usize {
        self.parts.iter().map(Bytes::len).sum()
    }

    /// Whether the message has no bytes at all (never true for a built response).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The parts, in order.
    pub fn into_parts(self) -> Vec<Bytes> {
        self.parts
    }

    /// The protobuf message without the gRPC prefix, in one buffer (tests and tools).
    pub fn to_protobuf(&self) -> Bytes {
        let mut all = BytesMut::with_capacity(self.len());
        for p in &self.parts {
            all.put_slice(p);
        }
        all.freeze().slice(5..)
    }
}

/// A delta resource's version on the wire: its 64-bit hash in 16 hex digits.
const VERSION_HEX: usize = 16;

fn put_hex(buf: &mut BytesMut, v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..16).rev() {
        buf.put_u8(DIGITS[((v >> (shift * 4)) & 0xf) as usize]);
    }
}

/// One resource of a delta response.
#[derive(Debug, Clone)]
pub struct DeltaEntry<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its version (a hash of its bytes), written as 16 hex digits.
    pub version: u64,
    /// The encoded `Any`, shared.
    pub any: Bytes,
}

/// The bytes of a delta `resources` entry of `r` before its `Any`.
fn put_delta_head(buf: &mut BytesMut, r: &DeltaEntry<'_>) {
    let inner = field_len(VERSION_HEX) + field_len(r.name.len()) + field_len(r.any.len());
    put_field_header(buf, tag::FIELD_2, inner);
    put_field_header(buf, tag::FIELD_1, VERSION_HEX);
    put_hex(buf, r.version);
    put_str(buf, tag::FIELD_3, r.name);
    put_field_header(buf, tag::FIELD_2, r.any.len());
}

/// Every entry of `resources` in one buffer: the body of a delta response carrying them all,
/// written once and shared by every stream that sends that set.
pub fn delta_body(resources: &[DeltaEntry<'_>]) -> Bytes {
    let mut buf = BytesMut::new();
    for r in resources {
        put_delta_head(&mut buf, r);
        buf.put_slice(&r.any);
    }
    buf.freeze()
}

/// gRPC's message prefix: not compressed, then the length, big-endian.
fn put_grpc_prefix(buf: &mut BytesMut, len: usize) {
    buf.put_u8(0);
    // Responses are far below 4 GiB (the encoding limit is 256 MiB); saturate rather than wrap.
    buf.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::service::discovery::v3::{
        DeltaDiscoveryResponse, DiscoveryResponse, Resource,
    };

    fn any(n: usize) -> Any {
        Any {
            type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster".into(),
            value: vec![7; n],
        }
    }

    fn entry(a: &Any) -> Bytes {
        let mut b = BytesMut::new();
        let h = put_resource_entry(&mut b, a);
        assert_eq!(b.len(), resource_entry_len(a));
        assert_eq!(&b[h..], a.encode_to_vec().as_slice());
        b.freeze()
    }

    #[test]
    fn sotw_message_decodes_as_the_response_prost_would_build() {
        // Sizes around the one-byte varint boundary, and one large resource.
        let anys = [any(0), any(60), any(200), any(70_000)];
        let msg = WireMessage::sotw("42", "t/x", "7", anys.iter().map(entry).collect());
        let wire = msg.clone().into_parts().concat();
        assert_eq!(wire[0], 0, "not compressed");
        let len = u32::from_be_bytes([wire[1], wire[2], wire[3], wire[4]]) as usize;
        assert_eq!(len + 5, msg.len());
        let got = DiscoveryResponse::decode(msg.to_protobuf()).expect("decodes");
        let want = DiscoveryResponse {
            version_info: "42".into(),
            resources: anys.to_vec(),
            type_url: "t/x".into(),
            nonce: "7".into(),
            ..Default::default()
        };
        assert_eq!(got, want);
    }

    #[test]
    fn concatenated_entries_are_one_part() {
        let anys = [any(3), any(300)];
        let mut b = BytesMut::new();
        for a in &anys {
            put_resource_entry(&mut b, a);
        }
        let msg = WireMessage::sotw("1", "t", "n", vec![b.freeze()]);
        let got = DiscoveryResponse::decode(msg.to_protobuf()).expect("decodes");
        assert_eq!(got.resources, anys.to_vec());
    }

    #[test]
    fn delta_message_decodes_as_the_response_prost_would_build() {
        let anys = [any(1), any(500)];
        let encoded: Vec<Bytes> = anys
            .iter()
            .map(|a| Bytes::from(a.encode_to_vec()))
            .collect();
        let entries = vec![
            DeltaEntry {
                name: "a",
                version: 0xab,
                any: encoded[0].clone(),
            },
            DeltaEntry {
                name: "outbound|80||b.ns.svc.cluster.local",
                version: 0x0123_4567_89ab_cdef,
                any: encoded[1].clone(),
            },
        ];
        let removed = vec!["gone".to_string(), "also-gone".to_string()];
        let msg = WireMessage::delta("9", "t/y", "3", &entries, &removed);
        let shared = WireMessage::delta_shared("9", "t/y", "3", delta_body(&entries), &removed);
        assert_eq!(
            shared.to_protobuf(),
            msg.to_protobuf(),
            "one body or many parts"
        );
        let got = DeltaDiscoveryResponse::decode(msg.to_protobuf()).expect("decodes");
        let want = DeltaDiscoveryResponse {
            system_version_info: "9".into(),
            resources: vec![
                Resource {
                    name: "a".into(),
                    version: "00000000000000ab".into(),
                    resource: Some(anys[0].clone()),
                    ..Default::default()
                },
                Resource {
                    name: "outbound|80||b.ns.svc.cluster.local".into(),
                    version: "0123456789abcdef".into(),
                    resource: Some(anys[1].clone()),
                    ..Default::default()
                },
            ],
            type_url: "t/y".into(),
            removed_resources: removed,
            nonce: "3".into(),
            ..Default::default()
        };
        assert_eq!(got, want);
    }

    #[test]
    fn varints_match_the_protobuf_encoding() {
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u32::MAX as u64,
            u64::MAX,
        ] {
            let mut b = BytesMut::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v));
            assert_eq!(
                prost::encoding::decode_varint(&mut b.freeze()).ok(),
                Some(v)
            );
        }
    }
}

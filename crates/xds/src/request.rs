//! The state-of-the-world request as the server reads it.
//!
//! Envoy's SotW requests for endpoints name every EDS cluster, and every ACK repeats the
//! list: thousands of names per ACK per proxy, almost always the same as last time. Decoding
//! them as one object each was a third of the control plane's CPU on a change pushed to
//! 1,000 proxies. Here the request is parsed by hand: the names are only counted and hashed
//! ([`NamesKey`]), and read as strings, from the kept message, when that key differs from
//! what the stream last saw. The other fields are those of
//! `envoy.service.discovery.v3.DiscoveryRequest`, decoded as usual; unknown fields are
//! skipped.

use bytes::Bytes;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::rpc::Status as RpcStatus;
use prost::Message;
use std::sync::Arc;
use tonic::Status;

/// `DiscoveryRequest` with its `resource_names` left in the message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SotwRequest {
    /// The version the proxy last accepted.
    pub version_info: String,
    /// Who the proxy is (first request of a stream).
    pub node: Option<Box<Node>>,
    /// The resource type.
    pub type_url: String,
    /// The nonce of the response this request answers.
    pub response_nonce: String,
    /// Set when the proxy rejected that response (a NACK).
    pub error_detail: Option<Box<RpcStatus>>,
    /// Identifies the list of names asked for.
    pub names: NamesKey,
    /// The message, to read the names from when they are needed.
    raw: Bytes,
}

/// The count and a hash of the names a request asks for, in order: equal keys mean the
/// same list (a collision would only keep a proxy from getting the names it changed to,
/// and needs the same count and a 64-bit match).
///
/// The hash is of the names' encoded entries (tag, length, bytes) as they stand in the
/// message, read in one pass by four independent lanes: a thousand names (40 KB) are
/// hashed in a few microseconds, which matters because every ACK of every proxy repeats
/// them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NamesKey {
    /// How many names.
    pub count: usize,
    hash: u64,
}

const P1: u64 = 0x9e37_79b1_85eb_ca87;
const P2: u64 = 0xc2b2_ae3d_27d4_eb4f;
const P3: u64 = 0x1656_67b1_9e37_79f9;
const P4: u64 = 0x85eb_ca77_c2b2_ae63;

/// One lane's step over eight bytes (the rounds of xxHash64).
fn round(acc: u64, word: u64) -> u64 {
    acc.wrapping_add(word.wrapping_mul(P2))
        .rotate_left(31)
        .wrapping_mul(P1)
}

fn word(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w[..b.len()].copy_from_slice(b);
    u64::from_le_bytes(w)
}

/// Builds a [`NamesKey`] from the names' entries, fed in pieces: the result does not
/// depend on where the pieces split, only on the bytes.
struct NamesHasher {
    count: usize,
    /// The run of name entries not yet hashed, in the message (Envoy writes them one after
    /// another, so a request's names are usually one run, hashed at once).
    run: std::ops::Range<usize>,
    lanes: [u64; 4],
    /// Bytes not yet making a 32-byte stripe.
    pending: [u8; 32],
    pending_len: usize,
    total: u64,
}

impl NamesHasher {
    fn new() -> Self {
        NamesHasher {
            count: 0,
            run: 0..0,
            lanes: [P1.wrapping_add(P2), P2, 0, 0u64.wrapping_sub(P1)],
            pending: [0; 32],
            pending_len: 0,
            total: 0,
        }
    }

    fn stripe(&mut self, s: &[u8]) {
        for (lane, w) in self.lanes.iter_mut().zip(s.chunks_exact(8)) {
            *lane = round(*lane, word(w));
        }
    }

    /// Adds the name entry at `entry` of `raw` (the message every call is given).
    fn entry(&mut self, raw: &[u8], entry: std::ops::Range<usize>) {
        self.count += 1;
        if self.run.end != entry.start {
            let run = std::mem::replace(&mut self.run, entry.start..entry.start);
            self.write(&raw[run]);
        }
        self.run.end = entry.end;
    }

    fn write(&mut self, mut bytes: &[u8]) {
        self.total += bytes.len() as u64;
        if self.pending_len > 0 {
            let take = (32 - self.pending_len).min(bytes.len());
            self.pending[self.pending_len..self.pending_len + take].copy_from_slice(&bytes[..take]);
            self.pending_len += take;
            bytes = &bytes[take..];
            if self.pending_len < 32 {
                return;
            }
            let full = self.pending;
            self.stripe(&full);
            self.pending_len = 0;
        }
        let mut stripes = bytes.chunks_exact(32);
        for s in &mut stripes {
            self.stripe(s);
        }
        let rest = stripes.remainder();
        self.pending[..rest.len()].copy_from_slice(rest);
        self.pending_len = rest.len();
    }

    /// The key of every entry added from `raw`.
    fn finish(mut self, raw: &[u8]) -> NamesKey {
        let run = std::mem::take(&mut self.run);
        self.write(&raw[run]);
        if self.count == 0 {
            return NamesKey::default();
        }
        let [a, b, c, d] = self.lanes;
        let mut h = a
            .rotate_left(1)
            .wrapping_add(b.rotate_left(7))
            .wrapping_add(c.rotate_left(12))
            .wrapping_add(d.rotate_left(18));
        for lane in self.lanes {
            h = (h ^ round(0, lane)).wrapping_mul(P1).wrapping_add(P4);
        }
        h ^= self.total;
        for w in self.pending[..self.pending_len].chunks(8) {
            h = (h ^ round(0, word(w)))
                .rotate_left(27)
                .wrapping_mul(P1)
                .wrapping_add(P4);
        }
        h ^= h >> 33;
        h = h.wrapping_mul(P2);
        h ^= h >> 29;
        h = h.wrapping_mul(P3);
        h ^= h >> 32;
        NamesKey {
            count: self.count,
            hash: h,
        }
    }
}

fn malformed(what: &str) -> Status {
    Status::invalid_argument(format!("malformed DiscoveryRequest: {what}"))
}

fn varint(buf: &mut &[u8]) -> Result<u64, Status> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let Some((&b, rest)) = buf.split_first() else {
            return Err(malformed("truncated varint"));
        };
        *buf = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok(v);
        }
    }
    Err(malformed("varint longer than 10 bytes"))
}

fn take<'a>(buf: &mut &'a [u8], len: usize) -> Result<&'a [u8], Status> {
    if len > buf.len() {
        return Err(malformed("field longer than the message"));
    }
    let (v, rest) = buf.split_at(len);
    *buf = rest;
    Ok(v)
}

fn utf8(v: &[u8], field: &str) -> Result<String, Status> {
    String::from_utf8(v.to_vec()).map_err(|_| malformed(&format!("{field} is not UTF-8")))
}

/// Calls `each` with every length-delimited field of `raw` (its number, where its entry
/// starts and ends in `raw`, and its bytes), skipping the others.
fn fields(
    raw: &[u8],
    mut each: impl FnMut(u64, std::ops::Range<usize>, &[u8]) -> Result<(), Status>,
) -> Result<(), Status> {
    let mut buf = raw;
    while !buf.is_empty() {
        let at = raw.len() - buf.len();
        let key = varint(&mut buf)?;
        match key & 7 {
            0 => {
                varint(&mut buf)?;
            }
            1 => {
                take(&mut buf, 8)?;
            }
            2 => {
                let len =
                    usize::try_from(varint(&mut buf)?).map_err(|_| malformed("field length"))?;
                let v = take(&mut buf, len)?;
                each(key >> 3, at..raw.len() - buf.len(), v)?;
            }
            5 => {
                take(&mut buf, 4)?;
            }
            _ => return Err(malformed("unsupported wire type")),
        }
    }
    Ok(())
}

impl SotwRequest {
    /// Parses an encoded `DiscoveryRequest`.
    pub fn parse(raw: Bytes) -> Result<SotwRequest, Status> {
        let mut req = SotwRequest::default();
        let mut names = NamesHasher::new();
        fields(&raw, |field, entry, v| {
            match field {
                1 => req.version_info = utf8(v, "version_info")?,
                2 => {
                    let node = req.node.get_or_insert_with(Box::default);
                    node.merge(v)
                        .map_err(|e| malformed(&format!("node: {e}")))?;
                }
                3 => names.entry(&raw, entry),
                4 => req.type_url = utf8(v, "type_url")?,
                5 => req.response_nonce = utf8(v, "response_nonce")?,
                6 => {
                    let status = req.error_detail.get_or_insert_with(Box::default);
                    status
                        .merge(v)
                        .map_err(|e| malformed(&format!("error_detail: {e}")))?;
                }
                _ => {}
            }
            Ok(())
        })?;
        req.names = names.finish(&raw);
        req.raw = raw;
        Ok(req)
    }

    /// The names asked for, as strings: `known`'s where it has the name (so that thousands
    /// of names are not held again per proxy), new ones otherwise. A name that is not UTF-8
    /// is refused, as the protobuf `string` type requires.
    pub fn names_with(
        &self,
        known: impl Fn(&str) -> Option<Arc<str>>,
    ) -> Result<Vec<Arc<str>>, Status> {
        let mut names = Vec::with_capacity(self.names.count);
        fields(&self.raw, |field, _, v| {
            if field == 3 {
                let s = std::str::from_utf8(v).map_err(|_| {
                    Status::invalid_argument(format!(
                        "{}: a resource name is not UTF-8",
                        self.type_url
                    ))
                })?;
                names.push(known(s).unwrap_or_else(|| Arc::from(s)));
            }
            Ok(())
        })?;
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;

    fn request(names: &[&str]) -> DiscoveryRequest {
        DiscoveryRequest {
            version_info: "3".into(),
            node: Some(Node {
                id: "sidecar~10.0.0.1~a.ns~ns.svc.cluster.local".into(),
                ..Default::default()
            }),
            resource_names: names.iter().map(|n| n.to_string()).collect(),
            type_url: "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment".into(),
            response_nonce: "7".into(),
            error_detail: Some(RpcStatus {
                code: 13,
                message: "bad cluster".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn parse(r: &DiscoveryRequest) -> SotwRequest {
        SotwRequest::parse(Bytes::from(r.encode_to_vec())).expect("parses")
    }

    #[test]
    fn reads_what_envoy_sends() {
        let sent = request(&["outbound|80||a.ns.svc.cluster.local", "b"]);
        let got = parse(&sent);
        assert_eq!(got.version_info, sent.version_info);
        assert_eq!(got.node.as_deref(), sent.node.as_ref());
        assert_eq!(got.type_url, sent.type_url);
        assert_eq!(got.response_nonce, sent.response_nonce);
        assert_eq!(got.error_detail.as_deref(), sent.error_detail.as_ref());
        assert_eq!(got.names.count, 2);
        let shared: Arc<str> = Arc::from("b");
        let names = got
            .names_with(|n| (n == "b").then(|| shared.clone()))
            .expect("utf-8");
        assert_eq!(
            names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            sent.resource_names
        );
        assert!(
            Arc::ptr_eq(&names[1], &shared),
            "a known name is not copied"
        );
    }

    #[test]
    fn the_names_key_tells_lists_apart() {
        let key = |names: &[&str]| parse(&request(names)).names;
        let base = key(&["outbound|80||a.ns.svc.cluster.local", "b"]);
        assert_eq!(base, key(&["outbound|80||a.ns.svc.cluster.local", "b"]));
        assert_ne!(
            base,
            key(&["b", "outbound|80||a.ns.svc.cluster.local"]),
            "order"
        );
        assert_ne!(base, key(&["outbound|80||a.ns.svc.cluster.local"]), "count");
        assert_ne!(
            base,
            key(&["outbound|80||a.ns.svc.cluster.locaL", "b"]),
            "content"
        );
        // Names that differ only in where one ends and the next begins.
        assert_ne!(key(&["ab", "c"]), key(&["a", "bc"]));
        assert_ne!(key(&["a\0"]), key(&["a"]));
        assert_eq!(key(&[]), NamesKey::default());
    }

    #[test]
    fn the_names_key_is_of_the_names_not_of_where_they_stand() {
        let names: Vec<String> = (0..300)
            .map(|i| format!("outbound|80||svc-{i}.ns-{}.svc.cluster.local", i % 7))
            .collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let whole = parse(&request(&refs)).names;
        assert_eq!(whole.count, 300);
        // The same names with other fields between them (protobuf allows any order).
        let mut raw = Vec::new();
        for (i, n) in names.iter().enumerate() {
            prost::encoding::string::encode(3, n, &mut raw);
            if i % 50 == 0 {
                prost::encoding::string::encode(5, &"7".to_string(), &mut raw);
            }
        }
        let split = SotwRequest::parse(Bytes::from(raw)).expect("parses").names;
        assert_eq!(split, whole);
        // Fed to the hasher in pieces of every size: the same key.
        let mut entries = Vec::new();
        for n in &names {
            prost::encoding::string::encode(3, n, &mut entries);
        }
        for piece in [1, 7, 31, 32, 33, 1000] {
            let mut h = NamesHasher::new();
            h.count = 300;
            for p in entries.chunks(piece) {
                h.write(p);
            }
            assert_eq!(h.finish(&[]), whole, "pieces of {piece}");
        }
        // One byte changed anywhere in a long list changes the key.
        let mut changed = names.clone();
        changed[299].push('x');
        let refs: Vec<&str> = changed.iter().map(String::as_str).collect();
        assert_ne!(parse(&request(&refs)).names, whole);
    }

    #[test]
    fn unknown_fields_are_skipped_and_garbage_is_refused() {
        // Field 7 (resource_locators) and a varint field 15 the server does not read.
        let mut raw = request(&["a"]).encode_to_vec();
        raw.extend_from_slice(&[0x3a, 0x02, 0x0a, 0x00, 0x78, 0x96, 0x01]);
        let got = SotwRequest::parse(Bytes::from(raw)).expect("parses");
        assert_eq!(got.names.count, 1);
        for bad in [
            &[0x0a, 0x05, b'a'][..],
            &[0x0a],
            &[0x0b],
            &[0x22, 0x01, 0xff],
        ] {
            let err = SotwRequest::parse(Bytes::copy_from_slice(bad)).expect_err("refused");
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad:?}");
            assert!(err.message().contains("malformed"), "{}", err.message());
        }
    }

    #[test]
    fn a_name_that_is_not_utf8_is_refused() {
        let mut raw = Vec::new();
        raw.extend_from_slice(&[0x1a, 0x02, 0xff, 0xfe]);
        let req = SotwRequest::parse(Bytes::from(raw)).expect("names are read later");
        let err = req.names_with(|_| None).expect_err("not UTF-8");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("not UTF-8"), "{}", err.message());
    }
}

//! The UDP fast path. Almost every query a mesh DNS sees is the same shape: one question,
//! class IN, maybe an EDNS OPT record. Those are parsed in place and answered straight from
//! the name table into a reused buffer (the question is echoed as asked, answers point at it
//! with a compression pointer). Anything else (other opcodes, several questions, unusual
//! records, malformed packets) is relayed to the full hickory-server handler listening on a
//! loopback socket, so it gets the same answers as before.

use crate::handler::TTL_SECS;
use crate::table::NameTable;

/// DNS header length.
const HEADER: usize = 12;
/// Type A.
const TYPE_A: u16 = 1;
/// Type CNAME.
const TYPE_CNAME: u16 = 5;
/// Type ANY.
const TYPE_ANY: u16 = 255;
/// Type OPT (EDNS).
const TYPE_OPT: u16 = 41;
/// Class IN.
const CLASS_IN: u16 = 1;
/// Our EDNS UDP payload size.
const EDNS_PAYLOAD: u16 = 1232;

/// A query the fast path answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Query {
    /// Transaction id.
    id: u16,
    /// Recursion desired (echoed).
    rd: bool,
    /// End of the question section in the packet.
    question_end: usize,
    /// Query type.
    pub(crate) qtype: u16,
    /// The client's EDNS payload size, when it sent OPT.
    edns: Option<u16>,
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]))
}

/// The fast path's answer to `packet` from `table`, or `None` when it leaves the packet to
/// the full handler: what the UDP server does with every datagram (a fuzz target's entry).
pub fn respond(packet: &[u8], table: &NameTable) -> Option<Vec<u8>> {
    let mut name = String::new();
    let q = parse(packet, &mut name)?;
    let mut out = Vec::new();
    answer(&q, packet, &name, table, &mut out);
    Some(out)
}

/// Parses a standard query; the lower-cased dotted name goes to `name`. `None` for anything
/// the fast path leaves to the full handler.
pub(crate) fn parse(b: &[u8], name: &mut String) -> Option<Query> {
    if b.len() < HEADER {
        return None;
    }
    let flags = u16_at(b, 2)?;
    let qr = flags & 0x8000 != 0;
    let opcode = (flags >> 11) & 0xf;
    let (qd, an, ns, ar) = (u16_at(b, 4)?, u16_at(b, 6)?, u16_at(b, 8)?, u16_at(b, 10)?);
    if qr || opcode != 0 || qd != 1 || an != 0 || ns != 0 || ar > 1 {
        return None;
    }
    name.clear();
    let mut i = HEADER;
    loop {
        let len = *b.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        // A compression pointer or an extended label type: not in a normal query.
        if len & 0xc0 != 0 {
            return None;
        }
        let label = b.get(i..i + len)?;
        if !name.is_empty() {
            name.push('.');
        }
        for &c in label {
            // Names with dots or odd bytes inside a label go the careful way.
            if c == b'.' || !c.is_ascii_graphic() {
                return None;
            }
            name.push(c.to_ascii_lowercase() as char);
        }
        i += len;
        if name.len() > 253 {
            return None;
        }
    }
    let qtype = u16_at(b, i)?;
    let qclass = u16_at(b, i + 2)?;
    if qclass != CLASS_IN {
        return None;
    }
    let question_end = i + 4;
    let mut edns = None;
    if ar == 1 {
        // Only an OPT record for the root, version 0, with nothing after it.
        let o = question_end;
        if *b.get(o)? != 0 || u16_at(b, o + 1)? != TYPE_OPT {
            return None;
        }
        let payload = u16_at(b, o + 3)?;
        let version = *b.get(o + 6)?;
        let rdlen = u16_at(b, o + 9)? as usize;
        if version != 0 || o + 11 + rdlen != b.len() {
            return None;
        }
        edns = Some(payload.max(512));
    } else if question_end != b.len() {
        return None;
    }
    Some(Query {
        id: u16_at(b, 0)?,
        rd: flags & 0x0100 != 0,
        question_end,
        qtype,
        edns,
    })
}

/// Writes the response to `q` (whose packet is `packet` and name `name`) into `out`.
pub(crate) fn answer(q: &Query, packet: &[u8], name: &str, table: &NameTable, out: &mut Vec<u8>) {
    match table.lookup_normalized(name) {
        None => write_response(q, packet, 3, None, &[], out),
        Some(a) => write_response(q, packet, 0, None, a, out),
    }
}

/// Writes a response to `q` with `rcode` and, for A and ANY queries, `addrs`; with `alias`,
/// the question's name is answered as a CNAME of it and the addresses are `alias`'s (the
/// agent's answer to a name with a search domain appended). Answers that do not fit the
/// client's buffer set TC and are left out.
pub(crate) fn write_response(
    q: &Query,
    packet: &[u8],
    rcode: u16,
    alias: Option<&str>,
    addrs: &[std::net::Ipv4Addr],
    out: &mut Vec<u8>,
) {
    out.clear();
    let addrs = if matches!(q.qtype, TYPE_A | TYPE_ANY) {
        addrs
    } else {
        &[]
    };
    // The alias in wire format: labels, then the root.
    let alias_wire: Vec<u8> = alias.map(encode_name).unwrap_or_default();
    let cname_len = if alias.is_some() {
        12 + alias_wire.len()
    } else {
        0
    };
    let limit = usize::from(q.edns.unwrap_or(512)).min(4096);
    let opt_len = if q.edns.is_some() { 11 } else { 0 };
    let fits = q.question_end + cname_len + addrs.len() * 16 + opt_len <= limit;
    let answers: &[std::net::Ipv4Addr] = if fits { addrs } else { &[] };
    let with_cname = fits && alias.is_some();
    // QR, opcode 0, AA, TC when the answers do not fit, RD echoed, RA off.
    let flags: u16 =
        0x8000 | 0x0400 | if fits { 0 } else { 0x0200 } | if q.rd { 0x0100 } else { 0 } | rcode;
    out.extend_from_slice(&q.id.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    let count = answers.len() + usize::from(with_cname);
    out.extend_from_slice(&(count as u16).to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&u16::from(q.edns.is_some()).to_be_bytes());
    out.extend_from_slice(&packet[HEADER..q.question_end]);
    // Answers name the question (a pointer to offset 12) or, after a CNAME, its target.
    let mut owner: [u8; 2] = [0xc0, 0x0c];
    if with_cname {
        out.extend_from_slice(&[0xc0, 0x0c]);
        out.extend_from_slice(&TYPE_CNAME.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&TTL_SECS.to_be_bytes());
        out.extend_from_slice(&(alias_wire.len() as u16).to_be_bytes());
        let at = out.len();
        out.extend_from_slice(&alias_wire);
        // Messages are at most 4096 bytes here, so the offset fits a pointer.
        owner = [0xc0 | ((at >> 8) as u8 & 0x3f), (at & 0xff) as u8];
    }
    for a in answers {
        out.extend_from_slice(&owner);
        out.extend_from_slice(&TYPE_A.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&TTL_SECS.to_be_bytes());
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&a.octets());
    }
    if q.edns.is_some() {
        out.push(0);
        out.extend_from_slice(&TYPE_OPT.to_be_bytes());
        out.extend_from_slice(&EDNS_PAYLOAD.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
    }
}

/// A dotted name (from the table: ASCII labels of at most 63 bytes) in wire format.
fn encode_name(name: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(name.len() + 2);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        let label = &label.as_bytes()[..label.len().min(63)];
        b.push(label.len() as u8);
        b.extend_from_slice(label);
    }
    b.push(0);
    b
}

/// A recursive A query for `name` with id `id` (what a stub resolver sends).
pub fn a_query(id: u16, name: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEADER + name.len() + 6);
    b.extend_from_slice(&id.to_be_bytes());
    // RD; one question.
    b.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    b.extend_from_slice(&encode_name(name));
    b.extend_from_slice(&1u16.to_be_bytes());
    b.extend_from_slice(&1u16.to_be_bytes());
    b
}

/// The IPv4 addresses an answer carries (empty when it is no valid DNS message).
pub fn a_answers(packet: &[u8]) -> Vec<std::net::Ipv4Addr> {
    use hickory_server::proto::rr::RData;
    hickory_server::proto::op::Message::from_vec(packet)
        .map(|m| {
            m.answers
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some(a.0),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A SERVFAIL answer to `packet` (the question echoed when it parses): what a client gets
/// when no upstream resolver answered, so that it moves on at once instead of timing out.
pub(crate) fn servfail(packet: &[u8]) -> Option<Vec<u8>> {
    let mut name = String::new();
    if let Some(q) = parse(packet, &mut name) {
        let mut out = Vec::new();
        write_response(&q, packet, 2, None, &[], &mut out);
        return Some(out);
    }
    let id = packet.get(0..2)?;
    let flags = u16_at(packet, 2)?;
    if flags & 0x8000 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(HEADER);
    out.extend_from_slice(id);
    // QR, the opcode and RD echoed, SERVFAIL.
    out.extend_from_slice(&(0x8000 | (flags & 0x7900) | 2).to_be_bytes());
    out.extend_from_slice(&[0; 8]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn query(name: &str, qtype: u16, edns: bool) -> Vec<u8> {
        let mut b = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)];
        for l in name.split('.') {
            b.push(l.len() as u8);
            b.extend_from_slice(l.as_bytes());
        }
        b.push(0);
        b.extend_from_slice(&qtype.to_be_bytes());
        b.extend_from_slice(&CLASS_IN.to_be_bytes());
        if edns {
            b.extend_from_slice(&[0, 0, 41, 0x10, 0x00, 0, 0, 0, 0, 0, 0]);
        }
        b
    }

    fn table() -> NameTable {
        NameTable::from_entries(
            [(
                "httpbin.bar.svc.cluster.local".to_string(),
                Ipv4Addr::new(10, 96, 0, 7),
            )],
            &[],
        )
    }

    fn respond(packet: &[u8]) -> Vec<u8> {
        let mut name = String::new();
        let q = parse(packet, &mut name).expect("a fast-path query");
        let mut out = Vec::new();
        answer(&q, packet, &name, &table(), &mut out);
        out
    }

    #[test]
    fn a_query_is_answered_with_the_question_echoed_as_asked() {
        let p = query("HTTPBIN.bar.svc.cluster.local", TYPE_A, false);
        let r = respond(&p);
        assert_eq!(&r[0..2], &[0x12, 0x34]);
        assert_eq!(u16_at(&r, 2), Some(0x8500), "QR, AA, RD, NOERROR");
        assert_eq!(u16_at(&r, 6), Some(1));
        assert_eq!(&r[HEADER..p.len()], &p[HEADER..], "question as asked");
        assert_eq!(&r[r.len() - 4..], &[10, 96, 0, 7]);
    }

    #[test]
    fn unknown_names_other_types_and_edns() {
        let r = respond(&query("nope.svc.cluster.local", TYPE_A, false));
        assert_eq!(u16_at(&r, 2), Some(0x8503), "NXDOMAIN");
        assert_eq!(u16_at(&r, 6), Some(0));
        let r = respond(&query("httpbin.bar.svc.cluster.local", 28, false));
        assert_eq!(
            u16_at(&r, 2),
            Some(0x8500),
            "AAAA of a known name: empty NOERROR"
        );
        assert_eq!(u16_at(&r, 6), Some(0));
        let r = respond(&query("httpbin.bar.svc.cluster.local", TYPE_A, true));
        assert_eq!(
            u16_at(&r, 10),
            Some(1),
            "an OPT record answers an OPT record"
        );
        assert_eq!(u16_at(&r, r.len() - 10), Some(TYPE_OPT));
    }

    #[test]
    fn anything_unusual_goes_the_careful_way() {
        let mut name = String::new();
        let mut p = query("a.b", TYPE_A, false);
        p[2] |= 0x80; // a response, not a query
        assert_eq!(parse(&p, &mut name), None);
        let mut p = query("a.b", TYPE_A, false);
        p[5] = 2; // two questions
        assert_eq!(parse(&p, &mut name), None);
        let mut p = query("a.b", TYPE_A, false);
        p.push(0); // trailing garbage
        assert_eq!(parse(&p, &mut name), None);
        assert_eq!(parse(&[0; 5], &mut name), None);
        let mut p = query("a.b", TYPE_A, false);
        let n = p.len();
        p[n - 1] = 3; // class CH
        assert_eq!(parse(&p, &mut name), None);
    }

    #[test]
    fn a_query_is_answered_from_the_table_and_its_addresses_read_back() {
        let t = NameTable::from_entries([("a.global".to_string(), [10, 0, 0, 7].into())], &[]);
        let q = a_query(0x1234, "a.global");
        let r = super::respond(&q, &t).expect("a mesh name");
        assert_eq!(r[..2], [0x12, 0x34]);
        assert_eq!(a_answers(&r), [std::net::Ipv4Addr::new(10, 0, 0, 7)]);
        assert!(a_answers(b"junk").is_empty());
    }
}

//! The DNS fast path and the agent's DNS proxy: any datagram is answered or left to the full
//! handler (forwarded, for the agent), never a panic, and an answer is a DNS message at
//! least as long as a header; the agent's SERVFAIL for a query no resolver answered too.
#![no_main]

use std::sync::OnceLock;

fn table() -> &'static isthmus_dns::NameTable {
    static TABLE: OnceLock<isthmus_dns::NameTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let templates = ["remote=198.18.255.1"
            .parse::<isthmus_dns::Template>()
            .expect("a valid template")];
        isthmus_dns::NameTable::from_entries(
            [
                ("httpbin.bar.global".to_string(), [127, 255, 0, 2].into()),
                (
                    "sleep.foo.svc.cluster.local".to_string(),
                    [10, 96, 0, 7].into(),
                ),
            ],
            &templates,
        )
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some(answer) = isthmus_dns::fast::respond(data, table()) {
        assert!(answer.len() >= 12, "an answer has a header");
    }
    let search = Some("foo.svc.cluster.local");
    if let Some(answer) = isthmus_dns::proxy::answer_locally(data, Some(table()), search) {
        assert!(answer.len() >= 12, "an answer has a header");
    }
    if let Some(answer) = isthmus_dns::proxy::servfail(data) {
        assert!(answer.len() >= 12, "an answer has a header");
    }
});

//! The CA's CSR handling: any text sent as a CSR is signed (when it is a valid CSR for the
//! identity) or refused with an error, never a panic.
#![no_main]

use std::sync::OnceLock;

fn authority() -> &'static isthmus_ca::Authority {
    static CA: OnceLock<isthmus_ca::Authority> = OnceLock::new();
    CA.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("isthmus-fuzz-ca-{}", std::process::id()));
        let root = dir.join("root");
        isthmus_ca::authority::create_root(&root).expect("a root CA");
        let out = dir.join("cluster1");
        isthmus_ca::authority::create_intermediate(&root, "cluster1", &out)
            .expect("an intermediate");
        isthmus_ca::Authority::load(&out).expect("the CA loads")
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(pem) = std::str::from_utf8(data) {
        let _ = authority().sign_workload(
            pem,
            "spiffe://cluster.local/ns/foo/sa/sleep",
            std::time::Duration::from_secs(3600),
        );
    }
});

//! The hand-written state-of-the-world DiscoveryRequest parser: any message body is a
//! request or an error status, never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(req) = isthmus_xds::request::SotwRequest::parse(bytes::Bytes::copy_from_slice(data)) {
        let _ = req.names_with(|n| Some(std::sync::Arc::<str>::from(n)));
    }
});

//! The gRPC message framing of request streams: any body bytes give whole messages or a
//! status that ends the stream, never a panic or an allocation beyond the limit.
#![no_main]

use futures::StreamExt;

fn keep(b: bytes::Bytes) -> Result<bytes::Bytes, tonic::Status> {
    Ok(b)
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let body = tonic::body::Body::new(http_body_util::Full::new(bytes::Bytes::copy_from_slice(
        data,
    )));
    let mut requests = isthmus_xds::incoming::Requests::new(body, keep, 64 * 1024);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        while let Some(item) = requests.next().await {
            match item {
                Ok(message) => assert!(message.len() <= 64 * 1024),
                Err(_) => break,
            }
        }
    });
});

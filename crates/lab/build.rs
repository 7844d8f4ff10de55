//! Generates the gRPC client and server of the lab's gRPC demo app (`isthmus.lab.Echo`:
//! `Unary` and server-streaming `ServerStream`) from a description in Rust: no `.proto`
//! compiler is needed. The messages are hand-written prost types in `src/grpc_echo.rs`.

fn main() {
    let method = |name: &str, route: &str| {
        tonic_build::manual::Method::builder()
            .name(name)
            .route_name(route)
            .input_type("crate::grpc_echo::EchoRequest")
            .output_type("crate::grpc_echo::EchoReply")
            .codec_path("tonic_prost::ProstCodec")
    };
    let service = tonic_build::manual::Service::builder()
        .name("Echo")
        .package("isthmus.lab")
        .method(method("unary", "Unary").build())
        .method(
            method("server_stream", "ServerStream")
                .server_streaming()
                .build(),
        )
        .build();
    tonic_build::manual::Builder::new().compile(&[service]);
}

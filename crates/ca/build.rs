//! Generates the gRPC client and server of Istio's certificate service
//! (`istio.v1.auth.IstioCertificateService/CreateCertificate`) from a description in Rust:
//! no `.proto` compiler is needed. The messages are hand-written prost types in
//! `src/proto.rs`, field numbers as in Istio's `security/proto/pb/ca.proto`.

fn main() {
    let service = tonic_build::manual::Service::builder()
        .name("IstioCertificateService")
        .package("istio.v1.auth")
        .method(
            tonic_build::manual::Method::builder()
                .name("create_certificate")
                .route_name("CreateCertificate")
                .input_type("crate::proto::IstioCertificateRequest")
                .output_type("crate::proto::IstioCertificateResponse")
                .codec_path("tonic_prost::ProstCodec")
                .build(),
        )
        .build();
    tonic_build::manual::Builder::new().compile(&[service]);
}

//! Messages of Istio's `istio.v1.auth` certificate service (`ca.proto`).

/// A certificate request.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct IstioCertificateRequest {
    /// PEM-encoded CSR.
    #[prost(string, tag = "1")]
    pub csr: ::prost::alloc::string::String,
    /// Requested lifetime in seconds.
    #[prost(int64, tag = "3")]
    pub validity_duration: i64,
}

/// The signed chain: leaf first, root last.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct IstioCertificateResponse {
    /// PEM certificates.
    #[prost(string, repeated, tag = "1")]
    pub cert_chain: ::prost::alloc::vec::Vec<::prost::alloc::string::String>,
}

//! TLS for every https page rackload reads (the targets, and the BMCs' Redfish pages):
//! Mozilla's roots (webpki-roots) plus any PEM the run gives, or no verification at all
//! when asked (`--insecure`, for testing).

use std::sync::Arc;

/// Why the TLS configuration could not be made; `option` is the run option at fault.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct TlsError {
    pub option: &'static str,
    pub reason: String,
}

fn bad_option(option: &'static str, reason: impl Into<String>) -> TlsError {
    TlsError {
        option,
        reason: reason.into(),
    }
}

/// A certificate verifier that accepts any server (`tls_insecure`, for testing).
#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The TLS client configuration: Mozilla's roots (webpki-roots) plus the certificates of
/// `ca_pem`, or none checked when `insecure`.
pub fn client_config(insecure: bool, ca_pem: &[u8]) -> Result<rustls::ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad_option("tls", e.to_string()))?;
    if insecure {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
            .with_no_client_auth());
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if !ca_pem.is_empty() {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut n = 0;
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            let cert =
                cert.map_err(|e| bad_option("tls-ca", format!("not a PEM certificate: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| bad_option("tls-ca", e.to_string()))?;
            n += 1;
        }
        if n == 0 {
            return Err(bad_option("tls-ca", "holds no PEM certificate"));
        }
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

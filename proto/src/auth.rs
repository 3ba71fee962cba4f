//! Who may talk to a coordinator, and how a worker knows it dialled the right one.
//!
//! Two ways to close the fabric, usable together: mutual TLS (rustls; the coordinator
//! presents a certificate its clients' CA verifies, and accepts only client certificates
//! its own CA signed) or a shared bearer token (`authorization: Bearer …` on every call,
//! checked in constant time). With a token alone, the coordinator also proves it knows the
//! token: the worker's hello carries a random nonce and the welcome answers it with an
//! HMAC-SHA256 keyed by the token, checked before the worker accepts any plan. Plaintext is
//! allowed only on loopback unless the operator says `--insecure`: off loopback, an open
//! fabric could be aimed by anyone, and a token would cross the network in clear.

use std::net::IpAddr;

use ring::hmac;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};
use tonic::{Request, Status};

/// Bad security settings (all user input).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    Settings(String),
}

/// PEM material for one side of mutual TLS.
#[derive(Clone, Debug, Default)]
pub struct TlsFiles {
    /// This side's certificate chain and key (PEM).
    pub cert: Option<String>,
    pub key: Option<String>,
    /// The CA that signs the other side's certificates (PEM).
    pub ca: Option<String>,
}

/// A PEM file or a token, read under [`rackload_input::caps::CONFIG`].
fn read(what: &'static str, path: &str) -> Result<Vec<u8>, AuthError> {
    rackload_input::read_capped(
        std::path::Path::new(path),
        rackload_input::caps::CONFIG,
        what,
    )
    .map_err(|e| AuthError::Settings(format!("{what}: {e}")))
}

impl TlsFiles {
    pub fn is_empty(&self) -> bool {
        self.cert.is_none() && self.key.is_none() && self.ca.is_none()
    }

    /// The coordinator's TLS: its certificate and key, and the CA its clients' certificates
    /// must chain to (all three are required).
    pub fn server(&self) -> Result<Option<ServerTlsConfig>, AuthError> {
        if self.is_empty() {
            return Ok(None);
        }
        let (Some(cert), Some(key), Some(ca)) = (&self.cert, &self.key, &self.ca) else {
            return Err(AuthError::Settings(
                "mutual TLS needs all of --tls-cert, --tls-key and --tls-ca (the CA of the clients' certificates)".into(),
            ));
        };
        let identity = Identity::from_pem(read("--tls-cert", cert)?, read("--tls-key", key)?);
        Ok(Some(
            ServerTlsConfig::new()
                .identity(identity)
                .client_ca_root(Certificate::from_pem(read("--tls-ca", ca)?)),
        ))
    }

    /// A client's TLS: the CA that signed the coordinator's certificate, and this client's
    /// own certificate and key.
    pub fn client(&self) -> Result<Option<ClientTlsConfig>, AuthError> {
        if self.is_empty() {
            return Ok(None);
        }
        let Some(ca) = &self.ca else {
            return Err(AuthError::Settings(
                "TLS to the coordinator needs --tls-ca (the CA that signed its certificate)".into(),
            ));
        };
        let mut tls =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read("--tls-ca", ca)?));
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                tls = tls.identity(Identity::from_pem(
                    read("--tls-cert", cert)?,
                    read("--tls-key", key)?,
                ));
            }
            (None, None) => {}
            _ => {
                return Err(AuthError::Settings(
                    "give both --tls-cert and --tls-key (this client's certificate), or neither"
                        .into(),
                ));
            }
        }
        Ok(Some(tls))
    }
}

/// How a client reaches a coordinator.
#[derive(Clone, Debug, Default)]
pub struct ClientAuth {
    pub token: Option<String>,
    pub tls: TlsFiles,
    /// Allow plaintext (with or without a token) to a coordinator off loopback.
    pub insecure: bool,
}

fn host_is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl ClientAuth {
    /// A channel endpoint for `url` under these credentials. Refuses, before any packet is
    /// sent, plaintext to a coordinator off loopback (unless `insecure`): a token would
    /// cross the network in clear, and without one anyone could aim the fabric;
    /// `https://` without a CA, and TLS files on an `http://` URL.
    pub fn endpoint(&self, url: &str) -> Result<tonic::transport::Endpoint, AuthError> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| AuthError::Settings(format!("coordinator URL {url:?}: {e}")))?;
        let host = uri.host().unwrap_or_default();
        let tls = self.tls.client()?;
        match (uri.scheme_str(), &tls) {
            (Some("https"), None) => {
                return Err(AuthError::Settings(format!(
                    "{url} is https: give the CA that signed the coordinator's certificate (--tls-ca)"
                )));
            }
            (Some("http"), Some(_)) => {
                return Err(AuthError::Settings(format!(
                    "TLS files were given but {url} is http://; use https://"
                )));
            }
            (Some("http"), None) if !self.insecure && !host_is_loopback(host) => {
                let why = if self.token.is_some() {
                    "the token would cross the network in clear"
                } else {
                    "without a token anyone could aim the fabric"
                };
                return Err(AuthError::Settings(format!(
                    "refusing plaintext to {url} (not loopback): {why}. Use https:// with --tls-ca/--tls-cert/--tls-key, or say --insecure"
                )));
            }
            (Some("http" | "https"), _) => {}
            _ => {
                return Err(AuthError::Settings(format!(
                    "coordinator URL {url:?} must start with http:// or https://"
                )));
            }
        }
        let mut endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())
            .map_err(|e| AuthError::Settings(format!("coordinator URL {url:?}: {e}")))?;
        if let Some(tls) = tls {
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| AuthError::Settings(format!("TLS settings: {e}")))?;
        }
        Ok(endpoint)
    }

    /// Adds the bearer token to every call.
    pub fn interceptor(&self) -> Result<BearerToken, AuthError> {
        let value = match &self.token {
            Some(t) => Some(MetadataValue::try_from(format!("Bearer {t}")).map_err(|_| {
                AuthError::Settings("the token is not a valid header value".into())
            })?),
            None => None,
        };
        Ok(BearerToken(value))
    }
}

/// Client interceptor: `authorization: Bearer TOKEN` (nothing without a token).
#[derive(Clone, Debug)]
pub struct BearerToken(Option<MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for BearerToken {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            let mut v = v.clone();
            v.set_sensitive(true);
            req.metadata_mut().insert("authorization", v);
        }
        Ok(req)
    }
}

/// Every call must carry the token (when one is set): a tower layer on the server.
#[derive(Clone)]
pub struct RequireToken(Option<hmac::Key>);

impl std::fmt::Debug for RequireToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RequireToken")
    }
}

/// A key derived from the token, so that comparing presented tokens takes constant time.
fn key_of(token: &str) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, token.as_bytes())
}

impl RequireToken {
    pub fn new(token: Option<&str>) -> RequireToken {
        RequireToken(token.map(key_of))
    }
}

impl RequireToken {
    /// Checks the `authorization` header of a call; the status says why it is refused.
    pub fn check(&self, headers: &http::HeaderMap) -> Result<(), Status> {
        let Some(key) = &self.0 else {
            return Ok(());
        };
        let presented = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        // Compare MACs of a fixed message keyed by each token: constant time, and the
        // expected token never leaves its key.
        let ok = presented.is_some_and(|p| {
            let want = hmac::sign(key, b"rackload-token-check");
            hmac::verify(&key_of(p), b"rackload-token-check", want.as_ref()).is_ok()
        });
        if ok {
            Ok(())
        } else if presented.is_none() {
            Err(Status::unauthenticated(
                "this coordinator requires a token: give --token or RACKLOAD_TOKEN",
            ))
        } else {
            Err(Status::unauthenticated("wrong token"))
        }
    }
}

/// The token check as a tower layer on the gRPC server: a call without the right token
/// is answered `unauthenticated` before any service sees it.
impl<S> tower::Layer<S> for RequireToken {
    type Service = RequireTokenService<S>;
    fn layer(&self, inner: S) -> RequireTokenService<S> {
        RequireTokenService {
            check: self.clone(),
            inner,
        }
    }
}

/// A service behind [`RequireToken`].
#[derive(Clone, Debug)]
pub struct RequireTokenService<S> {
    check: RequireToken,
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for RequireTokenService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        futures_util::future::Either<S::Future, std::future::Ready<Result<S::Response, S::Error>>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        match self.check.check(req.headers()) {
            Ok(()) => futures_util::future::Either::Left(self.inner.call(req)),
            Err(status) => {
                futures_util::future::Either::Right(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}

const PROOF_CONTEXT: &[u8] = b"rackload-coordinator-proof";

/// The coordinator's answer to a worker's hello nonce: HMAC-SHA256(token, context ‖ nonce).
pub fn proof(token: &str, nonce: &[u8]) -> Vec<u8> {
    let mut msg = PROOF_CONTEXT.to_vec();
    msg.extend_from_slice(nonce);
    hmac::sign(&key_of(token), &msg).as_ref().to_vec()
}

/// Whether `proof` shows knowledge of `token` for `nonce` (constant time).
pub fn verify_proof(token: &str, nonce: &[u8], proof: &[u8]) -> bool {
    let mut msg = PROOF_CONTEXT.to_vec();
    msg.extend_from_slice(nonce);
    hmac::verify(&key_of(token), &msg, proof).is_ok()
}

/// A fresh random nonce for a hello.
pub fn nonce() -> Vec<u8> {
    use ring::rand::SecureRandom as _;
    let mut n = vec![0u8; 32];
    let _ = ring::rand::SystemRandom::new().fill(&mut n);
    n
}

/// Refuses to listen in plaintext off loopback (unless `insecure`): without a token anyone
/// who reaches it could aim the workers, and with one the token would travel in clear.
pub fn check_listen(
    addr: std::net::SocketAddr,
    tls: bool,
    token: bool,
    insecure: bool,
) -> Result<(), AuthError> {
    if tls || insecure || addr.ip().is_loopback() {
        return Ok(());
    }
    let why = if token {
        "the token would cross the network in clear"
    } else {
        "anyone who reaches it could aim the workers"
    };
    Err(AuthError::Settings(format!(
        "refusing to serve the fabric on {addr} in plaintext: {why}. Give --tls-cert/--tls-key/--tls-ca, or say --insecure"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(check: &RequireToken, header: Option<&str>) -> Result<(), Status> {
        let mut headers = http::HeaderMap::new();
        if let Some(h) = header {
            headers.insert(http::header::AUTHORIZATION, h.parse().expect("ascii"));
        }
        check.check(&headers)
    }

    #[test]
    fn tokens_are_checked_and_the_proof_binds_token_and_nonce() {
        let check = RequireToken::new(Some("s3cret"));
        assert!(call(&check, Some("Bearer s3cret")).is_ok());
        assert!(call(&check, Some("Bearer s3cre")).is_err());
        assert!(call(&check, None).is_err());
        assert!(call(&RequireToken::new(None), None).is_ok());
        let n = nonce();
        assert_eq!(n.len(), 32);
        assert_ne!(n, nonce());
        let p = proof("s3cret", &n);
        assert!(verify_proof("s3cret", &n, &p));
        assert!(!verify_proof("other", &n, &p));
        assert!(!verify_proof("s3cret", &nonce(), &p));
    }

    #[test]
    fn plaintext_without_a_token_stays_on_loopback() {
        let open = ClientAuth::default();
        assert!(open.endpoint("http://127.0.0.1:7400").is_ok());
        assert!(open.endpoint("http://localhost:7400").is_ok());
        assert!(open.endpoint("http://[::1]:7400").is_ok());
        let e = open
            .endpoint("http://10.0.0.5:7400")
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("--insecure")));
        let token = ClientAuth {
            token: Some("t".into()),
            ..ClientAuth::default()
        };
        let e = token
            .endpoint("http://10.0.0.5:7400")
            .err()
            .map(|e| e.to_string());
        assert!(
            e.is_some_and(|e| e.contains("in clear") && e.contains("--insecure")),
            "a token alone never travels in plaintext off loopback"
        );
        assert!(token.endpoint("http://127.0.0.1:7400").is_ok());
        let token_insecure = ClientAuth {
            insecure: true,
            ..token
        };
        assert!(token_insecure.endpoint("http://10.0.0.5:7400").is_ok());
        let insecure = ClientAuth {
            insecure: true,
            ..ClientAuth::default()
        };
        assert!(insecure.endpoint("http://coord.example:7400").is_ok());
        assert!(
            open.endpoint("https://127.0.0.1:7400").is_err(),
            "https needs a CA"
        );
        let ip = |s: &str| s.parse::<std::net::SocketAddr>().expect("addr");
        assert!(check_listen(ip("127.0.0.1:7400"), false, false, false).is_ok());
        assert!(check_listen(ip("0.0.0.0:7400"), false, false, false).is_err());
        assert!(check_listen(ip("0.0.0.0:7400"), false, true, false).is_err());
        assert!(check_listen(ip("0.0.0.0:7400"), true, true, false).is_ok());
        assert!(check_listen(ip("0.0.0.0:7400"), false, false, true).is_ok());
    }
}

//! STARTTLS terminated by the recorder (`record --tls terminate`).
//!
//! To the client the proxy is the TLS server, with a self-signed certificate made at start-up,
//! as `serve --starttls` has; to the upstream it is a TLS client. The upstream's certificate is
//! checked against the certificates of a PEM file (`--upstream-ca`), or, for a private test
//! server with a throw-away certificate, not at all (`--upstream-insecure`), which the user has to
//! ask for by name.

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::smarthost::tls::self_signed_acceptor;

/// How the upstream's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamTrust {
    /// Against the certificates in this PEM file.
    Ca(PathBuf),
    /// Not at all (a private test upstream with a throw-away certificate).
    Insecure,
}

/// Setting up TLS termination failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("{0}")]
    Server(#[from] crate::smarthost::tls::TlsSetupError),
    #[error("cannot read the upstream CA file {path}: {message}")]
    Ca { path: PathBuf, message: String },
    #[error("{path} holds no certificate; give a PEM file with the upstream's CA certificate")]
    NoCertificate { path: PathBuf },
    #[error("cannot build the TLS client configuration: {0}")]
    Client(#[from] rustls::Error),
    #[error("{name:?} is not a valid TLS server name: give a DNS name or an IP address")]
    ServerName { name: String },
}

/// Both TLS ends of a terminating recorder.
pub struct TlsTerminate {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
    upstream_name: ServerName<'static>,
}

impl TlsTerminate {
    /// `hostname` names the proxy's own certificate; `upstream_name` is the name the upstream's
    /// certificate must carry (its address when no name is given).
    pub fn new(
        hostname: &str,
        upstream_name: &str,
        trust: &UpstreamTrust,
    ) -> Result<Self, TlsSetupError> {
        let acceptor = self_signed_acceptor(hostname)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()?;
        let config = match trust {
            UpstreamTrust::Ca(path) => builder
                .with_root_certificates(roots(path)?)
                .with_no_client_auth(),
            UpstreamTrust::Insecure => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth(),
        };
        let upstream_name = match upstream_name.parse::<IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(upstream_name.to_owned()).map_err(|_| {
                TlsSetupError::ServerName {
                    name: upstream_name.to_owned(),
                }
            })?,
        };
        Ok(TlsTerminate {
            acceptor,
            connector: TlsConnector::from(Arc::new(config)),
            upstream_name,
        })
    }

    /// The TLS handshake with the upstream, as its client.
    pub async fn connect<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: S,
    ) -> io::Result<tokio_rustls::client::TlsStream<S>> {
        self.connector
            .connect(self.upstream_name.clone(), stream)
            .await
    }

    /// The TLS handshake with the client, as its server.
    pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: S,
    ) -> io::Result<tokio_rustls::server::TlsStream<S>> {
        self.acceptor.accept(stream).await
    }
}

fn roots(path: &Path) -> Result<RootCertStore, TlsSetupError> {
    let ca_error = |message: String| TlsSetupError::Ca {
        path: path.to_owned(),
        message,
    };
    let mut store = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| ca_error(e.to_string()))? {
        let cert = cert.map_err(|e| ca_error(e.to_string()))?;
        store.add(cert).map_err(|e| ca_error(e.to_string()))?;
    }
    if store.is_empty() {
        return Err(TlsSetupError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(store)
}

/// Accepts any certificate, still checking that the handshake is signed by its key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

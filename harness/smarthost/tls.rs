//! STARTTLS for the smart host: a self-signed certificate made at start-up.
//!
//! A test smart host has no certificate of its own and clients under test are told not to verify
//! it; what matters is that the TLS layer is real (rustls, ring provider: no C build).

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

/// Making the certificate or the TLS configuration failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot generate a self-signed certificate for {name:?}: {source}")]
    Certificate { name: String, source: rcgen::Error },
    #[error("cannot build the TLS server configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// An acceptor with a fresh self-signed certificate for `hostname`, `localhost` and 127.0.0.1.
pub fn self_signed_acceptor(hostname: &str) -> Result<TlsAcceptor, TlsSetupError> {
    let names = vec![
        hostname.to_owned(),
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
    ];
    let certified =
        rcgen::generate_simple_self_signed(names).map_err(|source| TlsSetupError::Certificate {
            name: hostname.to_owned(),
            source,
        })?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

//! TLS from a PEM certificate chain and key (PKCS#8, PKCS#1 RSA or SEC1 EC), optionally
//! required of every connection and with client certificates checked against a CA. Any failure
//! here stops the server from starting: a server configured for TLS never falls back to
//! plaintext.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pgwire::tokio::TlsAcceptor;
use pgwire::tokio::tokio_rustls::rustls;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

use crate::error::{Error, Result};

/// The `[tls]` table of the config file (or `--tls-cert` / `--tls-key` / `--tls-require` /
/// `--tls-client-ca`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Refuse plaintext connections (PostgreSQL's `hostssl` lines only).
    #[serde(default)]
    pub require: bool,
    /// Require a client certificate signed by one of these CAs (PEM); implies `require`
    /// (PostgreSQL's `clientcert=verify-ca`).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

impl TlsConfig {
    /// TLS that plaintext connections may still do without, and no client certificates.
    pub fn new(cert: PathBuf, key: PathBuf) -> Self {
        Self { cert, key, require: false, client_ca: None }
    }
}

/// What the server needs from a TLS setup: the acceptor, the certificate's PEM for SCRAM's
/// channel binding (SCRAM-SHA-256-PLUS hashes the server certificate), and whether plaintext
/// connections are refused.
pub struct Tls {
    pub acceptor: TlsAcceptor,
    pub cert_pem: Vec<u8>,
    pub require: bool,
}

impl Tls {
    pub fn load(config: &TlsConfig) -> Result<Self> {
        let cert_pem = read(&config.cert, "certificate")?;
        let key_pem = read(&config.key, "key")?;
        let certs = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| tls_error(&config.cert, &format!("not a PEM certificate: {e}")))?;
        if certs.is_empty() {
            return Err(tls_error(&config.cert, "no certificate in the file"));
        }
        let key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| tls_error(&config.key, &format!("no PKCS#8, RSA or EC private key: {e}")))?;
        // Named explicitly: the dependency tree enables both of rustls's providers, and rustls
        // refuses to guess between them.
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Config(format!("TLS: {e}")))?;
        let builder = match &config.client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let pem = read(path, "client CA")?;
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(&pem) {
                    let cert = cert.map_err(|e| tls_error(path, &format!("not a PEM certificate: {e}")))?;
                    roots.add(cert).map_err(|e| tls_error(path, &format!("not a usable CA certificate: {e}")))?;
                }
                if roots.is_empty() {
                    return Err(tls_error(path, "no CA certificate in the file"));
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| tls_error(path, &format!("cannot verify client certificates with it: {e}")))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut server = builder
            .with_single_cert(certs, key)
            .map_err(|e| Error::Config(format!("TLS: the certificate and key do not make a usable pair: {e}")))?;
        // PostgreSQL 17's direct TLS (sslnegotiation=direct) requires this ALPN name.
        server.alpn_protocols = vec![b"postgresql".to_vec()];
        let require = config.require || config.client_ca.is_some();
        Ok(Self { acceptor: TlsAcceptor::from(Arc::new(server)), cert_pem, require })
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| tls_error(path, &format!("cannot read the {what}: {e}")))
}

fn tls_error(path: &Path, message: &str) -> Error {
    Error::Config(format!("TLS: {}: {message}", path.display()))
}

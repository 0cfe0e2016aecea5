//! HTTPS certificates: the files of `[http_server.tls]` read and checked
//! (rustls on aws-lc-rs, TLS 1.2 and 1.3, optional client certificates), and
//! the set in force, which a reload replaces for new connections. Below the
//! HTTP layer and `reload`, which both use it.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::{ConfigError, TlsConfig};

/// The TLS settings in force; a reload swaps them, and new connections get
/// the new certificate while open ones keep theirs.
pub struct Tls {
    config: ArcSwap<rustls::ServerConfig>,
    loaded: parking_lot::Mutex<LoadedTls>,
}

/// A certificate, key and client CAs read from their files, checked.
#[derive(Clone)]
pub struct LoadedTls {
    config: Arc<rustls::ServerConfig>,
    /// The files' bytes, to tell whether a reload changed anything.
    fingerprint: Vec<u8>,
    /// What the certificate is, for logs and reload reports.
    pub summary: String,
}

impl Tls {
    /// TLS with the certificate `loaded`.
    pub fn new(loaded: LoadedTls) -> Arc<Tls> {
        Arc::new(Tls { config: ArcSwap::new(loaded.config.clone()), loaded: parking_lot::Mutex::new(loaded) })
    }

    /// Puts `loaded` in force for new connections; whether it differs from
    /// the files in force.
    pub fn replace(&self, loaded: LoadedTls) -> bool {
        let mut cur = self.loaded.lock();
        if cur.fingerprint == loaded.fingerprint {
            return false;
        }
        self.config.store(loaded.config.clone());
        *cur = loaded;
        true
    }

    pub(crate) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.load_full())
    }
}

/// Reads and checks the files of `[http_server.tls]`; errors name the key.
pub fn load_tls(t: &TlsConfig) -> Result<LoadedTls, ConfigError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let read = |key: &str, p: &Path| {
        std::fs::read(p).map_err(|e| ConfigError(format!("http_server.tls.{key}: cannot read {}: {e}", p.display())))
    };
    let certs_in = |key: &str, p: &Path, bytes: &[u8]| -> Result<Vec<CertificateDer<'static>>, ConfigError> {
        let certs: Vec<_> = CertificateDer::pem_slice_iter(bytes).collect::<Result<_, _>>().map_err(|e| {
            ConfigError(format!("http_server.tls.{key}: {} is not a PEM certificate file: {e}", p.display()))
        })?;
        if certs.is_empty() {
            return Err(ConfigError(format!(
                "http_server.tls.{key}: {} holds no certificate (\"-----BEGIN CERTIFICATE-----\")",
                p.display()
            )));
        }
        Ok(certs)
    };
    let cert_bytes = read("cert", &t.cert)?;
    let key_bytes = read("key", &t.key)?;
    let chain = certs_in("cert", &t.cert, &cert_bytes)?;
    let key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| {
        ConfigError(format!(
            "http_server.tls.key: {} holds no PEM private key (PKCS#8, PKCS#1 or SEC1): {e}",
            t.key.display()
        ))
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ConfigError(format!("http_server.tls: {e}")))?;
    let mut fingerprint = [cert_bytes.as_slice(), &key_bytes].concat();
    let builder = match &t.client_ca {
        None => builder.with_no_client_auth(),
        Some(p) => {
            let ca_bytes = read("client_ca", p)?;
            let mut roots = rustls::RootCertStore::empty();
            for c in certs_in("client_ca", p, &ca_bytes)? {
                roots.add(c).map_err(|e| {
                    ConfigError(format!("http_server.tls.client_ca: {}: a certificate is not usable: {e}", p.display()))
                })?;
            }
            fingerprint.extend_from_slice(&ca_bytes);
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| ConfigError(format!("http_server.tls.client_ca: {}: {e}", p.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let summary = format!("{} ({} certificate(s) in the chain)", t.cert.display(), chain.len());
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        ConfigError(format!(
            "http_server.tls.key: {} does not go with the certificate in {}: {e}",
            t.key.display(),
            t.cert.display()
        ))
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(LoadedTls { config: Arc::new(config), fingerprint, summary })
}

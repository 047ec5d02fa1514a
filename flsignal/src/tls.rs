//! TLS on the listener itself (`--tls-cert`, `--tls-key`), for servers
//! without a terminator in front. The certificate can be replaced while
//! the server runs ([`ServerCertificate::reload`], on SIGHUP): handshakes
//! ask for the current one, so established connections keep the session
//! they have and new ones get the new certificate.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::error::TlsError;

/// The certificate and key files, and what was last loaded from them.
#[derive(Debug)]
pub struct ServerCertificate {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ServerCertificate {
    /// Loads the PEM certificate chain and private key; errors are one
    /// line that names the flag and the file.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<ServerCertificate, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let current = load_certified_key(cert_path, key_path, &provider)?;
        Ok(ServerCertificate {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            provider,
            current: RwLock::new(Arc::new(current)),
        })
    }

    /// Reads the files again. On failure the certificate in use stays and
    /// the error is returned for the caller to report.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = load_certified_key(&self.cert_path, &self.key_path, &self.provider)?;
        *self.current.write() = Arc::new(fresh);
        Ok(())
    }

    /// The DER of the certificate new handshakes present.
    pub fn end_entity(&self) -> Option<CertificateDer<'static>> {
        self.current.read().cert.first().cloned()
    }

    /// An acceptor whose handshakes use whatever certificate is current.
    pub fn acceptor(self: &Arc<Self>) -> Result<TlsAcceptor, TlsError> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Setup)?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        // WebSockets and the page need HTTP/1.1 only.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

impl ResolvesServerCert for ServerCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().clone())
    }
}

fn load_certified_key(cert_path: &Path, key_path: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let path = || cert_path.to_owned();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .map_err(|source| TlsError::CertUnreadable { path: path(), source })?
        .collect::<Result<_, _>>()
        .map_err(|source| TlsError::CertNotPem { path: path(), source })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: path() });
    }
    let path = || key_path.to_owned();
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|error| match error {
        rustls_pki_types::pem::Error::Io(source) => TlsError::KeyUnreadable { path: path(), source },
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::NoKey { path: path() },
        source => TlsError::KeyNotPem { path: path(), source },
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|source| TlsError::Mismatch {
        key: key_path.to_owned(),
        cert: cert_path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let (cert, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
        std::fs::write(&cert, certified.cert.pem()).unwrap();
        std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
        (cert, key)
    }

    fn error_of(cert: &Path, key: &Path) -> String {
        format!("{:#}", ServerCertificate::load(cert, key).unwrap_err())
    }

    #[test]
    fn unreadable_or_mismatched_files_are_one_line_errors() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let (cert, key) = write_pair(dir, "a");
        let (_, other_key) = write_pair(dir, "b");
        let missing = dir.join("missing.pem");
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not pem\n").unwrap();
        for (cert, key, expected) in [
            (&missing, &key, "--tls-cert"),
            (&junk, &key, "no certificate"),
            (&cert, &missing, "--tls-key"),
            (&cert, &junk, "no private key"),
            (&cert, &other_key, "does not fit"),
        ] {
            let error = error_of(cert, key);
            assert!(error.contains(expected), "{error}");
            assert_eq!(error.lines().count(), 1, "{error}");
        }
        assert!(ServerCertificate::load(&cert, &key).is_ok());
    }

    #[test]
    fn a_bad_reload_keeps_the_certificate_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let (cert, key) = write_pair(dir, "a");
        let loaded = ServerCertificate::load(&cert, &key).unwrap();
        let first = loaded.end_entity();
        std::fs::write(&cert, "garbage").unwrap();
        assert!(loaded.reload().is_err());
        assert_eq!(loaded.end_entity(), first);
        let (new_cert, new_key) = write_pair(dir, "b");
        std::fs::rename(new_cert, &cert).unwrap();
        std::fs::rename(new_key, &key).unwrap();
        loaded.reload().unwrap();
        assert_ne!(loaded.end_entity(), first);
    }
}

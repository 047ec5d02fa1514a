//! TLS for `wss://` signalling URLs: public servers sit behind a TLS
//! terminator. The system's trusted roots, plus the certificates of
//! `--signal-ca` for a private CA or a self-signed server.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// The client configuration every `wss://` connection uses.
pub fn client_config(extra_ca: Option<&Path>) -> anyhow::Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    // A system store that cannot be read, or holds certificates rustls
    // refuses, still leaves the rest (and `--signal-ca`) usable.
    let native = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(added, errors = native.errors.len(), "system root certificates");
    if let Some(path) = extra_ca {
        let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .with_context(|| format!("--signal-ca {}: cannot read it", path.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("--signal-ca {}: not PEM certificates", path.display()))?;
        anyhow::ensure!(
            !certificates.is_empty(),
            "--signal-ca {}: no certificate in it",
            path.display()
        );
        for certificate in certificates {
            roots
                .add(certificate)
                .with_context(|| format!("--signal-ca {}: a certificate rustls cannot use", path.display()))?;
        }
    }
    let config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .context("TLS set-up")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_ca_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let error = client_config(Some(&missing)).unwrap_err();
        assert!(format!("{error:#}").contains("--signal-ca"), "{error:#}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let error = client_config(Some(&empty)).unwrap_err();
        assert!(format!("{error:#}").contains("no certificate"), "{error:#}");
    }

    #[test]
    fn without_a_ca_file_the_system_roots_do() {
        assert!(client_config(None).is_ok());
    }
}

//! TLS for tests: self-signed certificates made on the spot, and `wss://`
//! clients that trust exactly the ones they are given.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, Context};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::MaybeTlsStream;

use crate::{Client, PATIENCE};

/// A self-signed certificate for `localhost` and its key.
pub struct SelfSigned {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl SelfSigned {
    pub fn new() -> SelfSigned {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("rcgen");
        SelfSigned {
            cert_pem: certified.cert.pem(),
            key_pem: certified.signing_key.serialize_pem(),
            der: certified.cert.der().clone(),
        }
    }

    /// Writes `NAME.crt` and `NAME.key` into `dir`; their paths.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
        std::fs::write(&cert, &self.cert_pem).expect("write certificate");
        std::fs::write(&key, &self.key_pem).expect("write key");
        (cert, key)
    }
}

impl Default for SelfSigned {
    fn default() -> Self {
        Self::new()
    }
}

/// A client configuration that trusts `certificates` and nothing else.
pub fn trusting(certificates: &[&SelfSigned]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for certificate in certificates {
        roots.add(certificate.der.clone()).expect("a usable certificate");
    }
    let config = ClientConfig::builder_with_provider(Arc::new(tokio_rustls::rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// Opens `wss://localhost:PORT/` to 127.0.0.1 with `config` and reads the
/// challenge.
pub async fn connect_wss(port: u16, config: Arc<ClientConfig>) -> anyhow::Result<Client> {
    connect_wss_after(port, config, b"").await
}

/// [`connect_wss`] with `preamble` (a PROXY header, say) sent before TLS.
pub async fn connect_wss_after(port: u16, config: Arc<ClientConfig>, preamble: &[u8]) -> anyhow::Result<Client> {
    use tokio::io::AsyncWriteExt;
    let url = format!("wss://localhost:{port}/");
    let open = async {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).await?;
        tcp.write_all(preamble).await?;
        let name = ServerName::try_from("localhost")?;
        let tls = TlsConnector::from(config).connect(name, tcp).await?;
        let (socket, _) = tokio_tungstenite::client_async(&url, MaybeTlsStream::Rustls(tls)).await?;
        anyhow::Ok(socket)
    };
    let socket = tokio::time::timeout(PATIENCE, open)
        .await
        .context("wss connect timed out")??;
    Client::from_socket(socket, &url).await
}

/// The certificate the server presented to `client`.
pub fn presented_certificate(client: &Client) -> anyhow::Result<CertificateDer<'static>> {
    let MaybeTlsStream::Rustls(tls) = client.socket.get_ref() else {
        return Err(anyhow!("not a TLS connection"));
    };
    tls.get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|certificate| certificate.clone().into_owned())
        .ok_or_else(|| anyhow!("no certificate presented"))
}

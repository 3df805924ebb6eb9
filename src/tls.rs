//! rustls configuration (aws-lc-rs provider): client trust for upstreams
//! and the identity provider, and the server side for TLS termination.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The TLS acceptor the proxy listener uses for each new connection; a
/// reload replaces it.
pub type TlsSwap = Arc<ArcSwap<tokio_rustls::TlsAcceptor>>;

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// rustls refused the material.
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
    /// A URL to connect to that names no host.
    #[error("{0}")]
    Url(String),
}

fn file_error(path: &Path, message: impl ToString) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// Client config trusting the system roots plus an optional extra PEM bundle.
pub fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    // A missing or partly unreadable system store is not fatal: an operator
    // may trust only `caFile`, and the handshake fails closed without roots.
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        for cert in read_certs(path)? {
            roots
                .add(cert)
                .map_err(|e| file_error(path, format!("bad CA certificate: {e}")))?;
        }
    }
    Ok(rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// An HTTP-or-HTTPS connector trusting the system roots plus `ca_file`,
/// for upstreams and for the identity provider alike. With `h2_only` it
/// offers only `h2` in ALPN: an upstream configured for HTTP/2 over TLS
/// that cannot speak it fails at connect instead of being sent frames it
/// does not expect; otherwise it offers HTTP/1.1.
pub fn https_connector(
    ca_file: Option<&Path>,
    connect_timeout: Duration,
    h2_only: bool,
) -> Result<HttpsConnector<HttpConnector>, TlsError> {
    let builder = HttpsConnectorBuilder::new()
        .with_tls_config(client_config(ca_file)?)
        .https_or_http();
    let tcp = http_connector(connect_timeout);
    Ok(if h2_only {
        builder.enable_http2().wrap_connector(tcp)
    } else {
        builder.enable_http1().wrap_connector(tcp)
    })
}

/// The TCP side of every outgoing connection.
fn http_connector(connect_timeout: Duration) -> HttpConnector {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    // Requests are written whole; Nagle would only hold back their last segment.
    http.set_nodelay(true);
    // Pooled connections and tunnels sit idle for long stretches: probes find
    // a peer that vanished (a rescheduled pod, a dropped NAT entry) before a
    // request is sent into the void.
    http.set_keepalive(Some(TCP_KEEPALIVE));
    http.set_connect_timeout(Some(connect_timeout));
    http
}

/// Idle time before the first TCP keepalive probe.
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);

/// Server config from PEM certificate chain and key files.
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs = read_certs(cert_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| file_error(key_file, format!("no usable private key: {e}")))?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no PEM certificate found"));
    }
    Ok(certs)
}

/// Installs aws-lc-rs as the process-wide rustls provider. Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// For callers that need an io::Error.
impl From<TlsError> for io::Error {
    fn from(e: TlsError) -> Self {
        io::Error::other(e.to_string())
    }
}

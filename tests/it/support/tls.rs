//! Certificates made in the test, and an HTTPS upstream.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use super::TempDir;

/// The names every test certificate is for.
fn loopback_names() -> Vec<String> {
    vec!["127.0.0.1".to_string(), "localhost".to_string()]
}

/// A TLS server offering only `alpn`, with `cert` and its `key` (DER).
fn acceptor(cert: Vec<u8>, key: Vec<u8>, alpn: &[u8]) -> TlsAcceptor {
    idp_gate::internals::tls::install_crypto_provider();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key));
    let mut server = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(cert)], key)
        .unwrap();
    server.alpn_protocols = vec![alpn.to_vec()];
    TlsAcceptor::from(Arc::new(server))
}

/// A self-signed certificate for 127.0.0.1 and localhost.
pub struct SelfSigned(rcgen::CertifiedKey<rcgen::KeyPair>);

impl SelfSigned {
    pub fn new() -> SelfSigned {
        SelfSigned(rcgen::generate_simple_self_signed(loopback_names()).unwrap())
    }

    /// Writes `tls.crt` and `tls.key` (PEM) into `dir`; returns their paths.
    pub fn write(&self, dir: &TempDir) -> (PathBuf, PathBuf) {
        (
            dir.write("tls.crt", self.0.cert.pem()),
            dir.write("tls.key", self.0.signing_key.serialize_pem()),
        )
    }

    /// The certificate, DER.
    pub fn der(&self) -> Vec<u8> {
        self.0.cert.der().to_vec()
    }

    /// A TLS server with this certificate, offering only `alpn`.
    pub fn acceptor(&self, alpn: &[u8]) -> TlsAcceptor {
        acceptor(self.der(), self.0.signing_key.serialize_der(), alpn)
    }
}

/// A certificate authority made for one test.
pub struct TestCa {
    /// Its certificate, PEM: what a `caFile` holds to trust it.
    pub pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        TestCa {
            pem,
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A server certificate for 127.0.0.1 and localhost signed by this CA,
    /// as an acceptor offering HTTP/1.1.
    pub fn acceptor(&self) -> TlsAcceptor {
        let params = rcgen::CertificateParams::new(loopback_names()).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        acceptor(cert.der().to_vec(), key.serialize_der(), b"http/1.1")
    }
}

/// An HTTPS upstream answering every request `200 tls-ok`, with the HTTP
/// version it was asked in as `x-seen-version`.
pub struct HttpsHello {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for HttpsHello {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HttpsHello {
    pub async fn start(tls: TlsAcceptor) -> HttpsHello {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            // Connections live in this set, so dropping the server closes them.
            let mut conns = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let tls = tls.clone();
                conns.spawn(async move {
                    let Ok(stream) = tls.accept(stream).await else {
                        return;
                    };
                    let svc = service_fn(|req: Request<Incoming>| async move {
                        let mut resp = Response::new(Full::new(Bytes::from_static(b"tls-ok")));
                        let version = format!("{:?}", req.version());
                        resp.headers_mut()
                            .insert("x-seen-version", HeaderValue::from_str(&version).unwrap());
                        Ok::<_, Infallible>(resp)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
                while conns.try_join_next().is_some() {}
            }
        });
        HttpsHello {
            addr,
            accepted,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// How many connections it has accepted.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

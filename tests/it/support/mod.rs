//! Shared helpers for the integration tests: a real JWKS/discovery HTTP
//! server, the real echo upstream, the real gateway started through
//! `app::start` on 127.0.0.1:0, an HTTP client, token and metric helpers.

#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use idp_gate::app::{self, Running};
use idp_gate::config::Config;
use idp_gate::demo::echo;
use idp_gate::demo::keys::{KeyRing, SigningKey};
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};

/// The audience every test token carries (an Auth0 API identifier).
pub const AUDIENCE: &str = "https://apk.example.com/api";
/// A client secret long enough for HS256 (≥ 32 bytes).
pub const CLIENT_SECRET: &str = "a-client-secret-that-is-long-enough-0123456789";

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Request body type of the test client.
pub type ReqBody = BoxBody<Bytes, BoxError>;

// ---------------------------------------------------------------- bodies

pub fn empty() -> ReqBody {
    Empty::<Bytes>::new().map_err(|n| match n {}).boxed()
}

pub fn full(b: impl Into<Bytes>) -> ReqBody {
    Full::new(b.into()).map_err(|n| match n {}).boxed()
}

/// A request body fed by a channel, so it is generated while it is sent.
pub struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

/// A streamed body of `chunks` chunks of `chunk_size` fresh bytes each,
/// produced on the fly by a task (never held in memory as a whole).
pub fn streaming_body(chunks: usize, chunk_size: usize) -> ReqBody {
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        for i in 0..chunks {
            let chunk = Bytes::from(vec![(i % 251) as u8; chunk_size]);
            if tx.send(chunk).await.is_err() {
                return;
            }
        }
    });
    ChannelBody { rx }.boxed()
}

// ---------------------------------------------------------------- client

pub type HttpClient = Client<HttpConnector, ReqBody>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A collected response.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }

    /// For echo replies: the header the upstream received.
    pub fn upstream_header(&self, name: &str) -> Option<String> {
        match &self.json()["headers"][name] {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }

    /// Asserts that neither body nor any header contains `secret`.
    pub fn assert_not_echoed(&self, secret: &str) {
        assert!(
            !self.text().contains(secret),
            "the body echoes the token: {}",
            self.text()
        );
        for (name, value) in &self.headers {
            assert!(
                !String::from_utf8_lossy(value.as_bytes()).contains(secret),
                "header {name} echoes the token"
            );
        }
    }
}

pub async fn send(client: &HttpClient, req: Request<ReqBody>) -> Resp {
    let resp = tokio::time::timeout(Duration::from_secs(30), client.request(req))
        .await
        .expect("request timed out")
        .expect("request failed");
    collect(resp).await
}

pub async fn collect(resp: Response<Incoming>) -> Resp {
    let (parts, body) = resp.into_parts();
    Resp {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.expect("response body").to_bytes(),
    }
}

// ---------------------------------------------------------------- JWKS server

/// What `/jwks.json` serves.
#[derive(Clone)]
pub enum JwksSource {
    /// The ring's current public keys (so `rotate()` shows up live).
    Ring(Arc<KeyRing>),
    /// Any JSON.
    Json(Value),
}

struct JwksState {
    source: Mutex<JwksSource>,
    /// `Some(status)`: answer every request with it.
    fail: Mutex<Option<u16>>,
    cache_control: Mutex<Option<String>>,
    /// `None`: the default discovery document (issuer = this server + "/").
    discovery: Mutex<Option<Value>>,
    fetches: AtomicUsize,
    fetch_times: Mutex<Vec<Instant>>,
    discovery_fetches: AtomicUsize,
    /// Answer `/jwks.json` only after this long (a slow provider).
    delay: Mutex<Duration>,
    base: String,
}

/// A real HTTP server publishing a JWKS at `/jwks.json` and an OpenID
/// discovery document at `/.well-known/openid-configuration`.
pub struct JwksServer {
    pub addr: SocketAddr,
    pub base: String,
    state: Arc<JwksState>,
    task: JoinHandle<()>,
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl JwksServer {
    pub async fn start(source: JwksSource) -> JwksServer {
        JwksServer::start_with(source, None).await
    }

    /// The same server over HTTPS, with `tls`'s certificate.
    pub async fn start_tls(source: JwksSource, tls: tokio_rustls::TlsAcceptor) -> JwksServer {
        JwksServer::start_with(source, Some(tls)).await
    }

    async fn start_with(source: JwksSource, tls: Option<tokio_rustls::TlsAcceptor>) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let base = format!("{scheme}://{addr}");
        let state = Arc::new(JwksState {
            source: Mutex::new(source),
            fail: Mutex::new(None),
            cache_control: Mutex::new(None),
            discovery: Mutex::new(None),
            fetches: AtomicUsize::new(0),
            fetch_times: Mutex::new(Vec::new()),
            discovery_fetches: AtomicUsize::new(0),
            delay: Mutex::new(Duration::ZERO),
            base: base.clone(),
        });
        let st = state.clone();
        let task = tokio::spawn(async move {
            // Connections live in this set, so dropping the server closes them.
            let mut conns = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let st = st.clone();
                let tls = tls.clone();
                conns.spawn(async move {
                    let svc = service_fn(move |req| {
                        let st = st.clone();
                        async move {
                            let resp = jwks_answer(&st, req.uri().path());
                            let delay = *st.delay.lock().unwrap();
                            if req.uri().path() == "/jwks.json" && !delay.is_zero() {
                                tokio::time::sleep(delay).await;
                            }
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                        }
                        Some(acceptor) => {
                            // A client that does not trust us gives up here.
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                            }
                        }
                    }
                });
                while conns.try_join_next().is_some() {}
            }
        });
        JwksServer {
            addr,
            base,
            state,
            task,
        }
    }

    pub async fn with_ring(ring: Arc<KeyRing>) -> JwksServer {
        JwksServer::start(JwksSource::Ring(ring)).await
    }

    /// The issuer this server stands for: its base URL with a trailing slash (Auth0-style).
    pub fn issuer(&self) -> String {
        format!("{}/", self.base)
    }

    pub fn jwks_url(&self) -> String {
        format!("{}/jwks.json", self.base)
    }

    /// How many times `/jwks.json` was requested.
    pub fn fetches(&self) -> usize {
        self.state.fetches.load(Ordering::SeqCst)
    }

    pub fn fetch_times(&self) -> Vec<Instant> {
        self.state.fetch_times.lock().unwrap().clone()
    }

    pub fn discovery_fetches(&self) -> usize {
        self.state.discovery_fetches.load(Ordering::SeqCst)
    }

    /// Answer everything with `status` until [`JwksServer::recover`].
    pub fn fail(&self, status: u16) {
        *self.state.fail.lock().unwrap() = Some(status);
    }

    pub fn recover(&self) {
        *self.state.fail.lock().unwrap() = None;
    }

    pub fn serve(&self, source: JwksSource) {
        *self.state.source.lock().unwrap() = source;
    }

    pub fn set_cache_control(&self, value: Option<&str>) {
        *self.state.cache_control.lock().unwrap() = value.map(str::to_string);
    }

    /// Every later `/jwks.json` answer is delayed by `d`.
    pub fn set_delay(&self, d: Duration) {
        *self.state.delay.lock().unwrap() = d;
    }

    pub fn set_discovery(&self, doc: Value) {
        *self.state.discovery.lock().unwrap() = Some(doc);
    }

    /// Waits (bounded) until `/jwks.json` has been requested at least `n` times.
    pub async fn wait_fetches(&self, n: usize, within: Duration) -> bool {
        poll_until(within, || self.fetches() >= n).await
    }
}

fn jwks_answer(st: &JwksState, path: &str) -> Response<BoxBody<Bytes, Infallible>> {
    let counted = match path {
        "/jwks.json" => {
            st.fetches.fetch_add(1, Ordering::SeqCst);
            st.fetch_times.lock().unwrap().push(Instant::now());
            true
        }
        "/.well-known/openid-configuration" => {
            st.discovery_fetches.fetch_add(1, Ordering::SeqCst);
            true
        }
        _ => false,
    };
    let reply = |status: u16, body: String| {
        let mut resp = Response::new(Full::new(Bytes::from(body)).boxed());
        *resp.status_mut() = StatusCode::from_u16(status).unwrap();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        resp
    };
    if !counted {
        return reply(404, r#"{"error":"not_found"}"#.into());
    }
    if let Some(status) = *st.fail.lock().unwrap() {
        return reply(status, r#"{"error":"down"}"#.into());
    }
    let mut resp = if path == "/jwks.json" {
        let doc = match &*st.source.lock().unwrap() {
            JwksSource::Ring(ring) => ring.jwks(),
            JwksSource::Json(v) => v.clone(),
        };
        reply(200, doc.to_string())
    } else {
        let doc = st.discovery.lock().unwrap().clone().unwrap_or_else(|| {
            json!({
                "issuer": format!("{}/", st.base),
                "jwks_uri": format!("{}/jwks.json", st.base),
            })
        });
        reply(200, doc.to_string())
    };
    if let Some(cc) = &*st.cache_control.lock().unwrap() {
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, cc.parse().unwrap());
    }
    resp
}

// ---------------------------------------------------------------- TLS

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
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
        idp_gate::internals::tls::install_crypto_provider();
        let params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let mut server = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![CertificateDer::from(cert.der().to_vec())], key)
            .unwrap();
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        tokio_rustls::TlsAcceptor::from(Arc::new(server))
    }
}

/// An HTTPS upstream answering every request `200 tls-ok`.
pub struct HttpsHello {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for HttpsHello {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HttpsHello {
    pub async fn start(tls: tokio_rustls::TlsAcceptor) -> HttpsHello {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let tls = tls.clone();
                conns.spawn(async move {
                    let Ok(stream) = tls.accept(stream).await else {
                        return;
                    };
                    let svc = service_fn(|_| async {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"tls-ok"))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
                while conns.try_join_next().is_some() {}
            }
        });
        HttpsHello { addr, task }
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }
}

// ---------------------------------------------------------------- echo upstream

/// The real echo upstream (`demo::echo`), on its own port.
pub struct Echo {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Echo {
    pub async fn start() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(echo::serve(listener, async move {
            let _ = stopped.await;
        }));
        Echo {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting and closes idle connections.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// A loopback address free right now, for a process that binds it itself.
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// An address where nothing listens (bound, then released).
pub async fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a
}

// ---------------------------------------------------------------- gateway

/// The real gateway, started with `app::start` on loopback ports.
pub struct Gate {
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub client: HttpClient,
    running: Option<Running>,
}

/// Parses config text the way the binary does (no environment variables).
pub fn parse_config(text: &str) -> Config {
    match Config::from_yaml(text, Path::new("test.yaml"), &|_| None) {
        Ok(c) => c,
        Err(e) => panic!("test config is invalid: {e}\n{text}"),
    }
}

impl Gate {
    /// Starts a gateway with `yaml` (YAML or JSON). `listen`, `admin.listen`
    /// and `shutdownGraceSeconds` are filled in unless given.
    pub async fn start(yaml: &str) -> Gate {
        let mut v: serde_yaml::Value = serde_yaml::from_str(yaml).expect("test YAML");
        let map = v.as_mapping_mut().expect("a YAML mapping");
        let key = |s: &str| serde_yaml::Value::String(s.into());
        if !map.contains_key(key("listen")) {
            map.insert(key("listen"), key("127.0.0.1:0"));
        }
        if !map.contains_key(key("shutdownGraceSeconds")) {
            map.insert(key("shutdownGraceSeconds"), serde_yaml::Value::from(1));
        }
        if !map.contains_key(key("admin")) {
            let mut admin = serde_yaml::Mapping::new();
            admin.insert(key("listen"), key("127.0.0.1:0"));
            map.insert(key("admin"), serde_yaml::Value::Mapping(admin));
        }
        let text = serde_yaml::to_string(&v).unwrap();
        let config = parse_config(&text);
        let running = app::start(config).await.expect("gateway starts");
        Gate {
            proxy: running.proxy_addr,
            admin: running.admin_addr,
            client: client(),
            running: Some(running),
        }
    }

    /// Starts a gateway serving the config file at `path` and watching it
    /// for changes, as `idp-gate run` does (no SIGHUP handler).
    pub async fn start_file(path: &Path) -> Gate {
        let config = match Config::load(path) {
            Ok(c) => c,
            Err(e) => panic!("test config is invalid: {e}"),
        };
        let running = app::start_watching(config, path.to_path_buf(), None)
            .await
            .expect("gateway starts");
        Gate {
            proxy: running.proxy_addr,
            admin: running.admin_addr,
            client: client(),
            running: Some(running),
        }
    }

    /// Starts and waits until `/readyz` answers 200.
    pub async fn start_ready(yaml: &str) -> Gate {
        let gate = Gate::start(yaml).await;
        gate.wait_ready(Duration::from_secs(15)).await;
        gate
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().unwrap()
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.proxy, path_and_query)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    /// GET on the proxy, with `Authorization: Bearer <token>` if given.
    pub async fn get(&self, path: &str, token: Option<&str>) -> Resp {
        let mut req = Request::get(self.url(path));
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        self.send(req.body(empty()).unwrap()).await
    }

    /// GET with extra headers.
    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        let mut req = Request::get(self.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req.body(empty()).unwrap()).await
    }

    pub async fn send(&self, req: Request<ReqBody>) -> Resp {
        send(&self.client, req).await
    }

    pub async fn admin_get(&self, path: &str) -> Resp {
        self.send(Request::get(self.admin_url(path)).body(empty()).unwrap())
            .await
    }

    pub async fn readyz(&self) -> Resp {
        self.admin_get("/readyz").await
    }

    /// Polls `/readyz` until 200; panics after `within`.
    pub async fn wait_ready(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let r = self.readyz().await;
            if r.status == StatusCode::OK {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not ready within {within:?}: {} {}",
                r.status,
                r.text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn metrics_text(&self) -> String {
        let r = self.admin_get("/metrics").await;
        assert_eq!(r.status, StatusCode::OK);
        r.text()
    }

    /// Sum of the series of `name` whose labels include `labels` (0 if none).
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_value(&self.metrics_text().await, name, labels)
    }

    pub async fn auth_failures(&self, reason: &str) -> f64 {
        self.metric("idp_gate_auth_failures_total", &[("reason", reason)])
            .await
    }

    /// Sends `req` and asserts a refusal by the gateway: `status`, the JSON
    /// `error_description` equal to `reason`, `WWW-Authenticate` as the
    /// contract says, the token (if any) never echoed, and
    /// `auth_failures_total{reason}` up by one.
    pub async fn expect_refusal(
        &self,
        req: Request<ReqBody>,
        status: u16,
        reason: &str,
        token: Option<&str>,
    ) -> Resp {
        let before = self.auth_failures(reason).await;
        let r = self.send(req).await;
        assert_eq!(r.status.as_u16(), status, "body: {}", r.text());
        let body = r.json();
        assert_eq!(body["error_description"], reason, "body: {body}");
        assert!(body["request_id"].is_string(), "body: {body}");
        assert_eq!(
            r.header("x-request-id").as_deref(),
            body["request_id"].as_str()
        );
        let www = r.header("www-authenticate");
        match status {
            401 if reason == "missing_token" => {
                assert_eq!(www.as_deref(), Some(r#"Bearer realm="idp-gate""#));
            }
            401 => {
                let www = www.expect("WWW-Authenticate on 401");
                assert!(www.starts_with("Bearer realm=\"idp-gate\""), "{www}");
                assert!(www.contains(r#"error="invalid_token""#), "{www}");
                assert!(
                    www.contains(&format!(r#"error_description="{reason}""#)),
                    "{www}"
                );
            }
            403 => {
                let www = www.expect("WWW-Authenticate on 403");
                assert!(www.starts_with("Bearer "), "{www}");
                assert!(www.contains(r#"error="insufficient_scope""#), "{www}");
            }
            503 => {
                assert!(r.header("retry-after").is_some(), "503 without Retry-After");
            }
            _ => {}
        }
        if let Some(t) = token {
            r.assert_not_echoed(t);
            // Not even the signature part alone.
            if let Some(sig) = t.rsplit('.').next().filter(|s| s.len() > 16) {
                r.assert_not_echoed(sig);
            }
        }
        let after = self.auth_failures(reason).await;
        assert_eq!(
            after,
            before + 1.0,
            "auth_failures_total{{reason=\"{reason}\"}} did not move by one"
        );
        r
    }

    /// `GET path` with a bearer token, expecting a refusal (see [`Gate::expect_refusal`]).
    pub async fn expect_token_refused(
        &self,
        path: &str,
        token: &str,
        status: u16,
        reason: &str,
    ) -> Resp {
        let req = Request::get(self.url(path))
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(empty())
            .unwrap();
        self.expect_refusal(req, status, reason, Some(token)).await
    }

    /// `GET path` with a bearer token, expecting the echo upstream's 200.
    pub async fn expect_ok(&self, path: &str, token: &str) -> Resp {
        let r = self.get(path, Some(token)).await;
        assert_eq!(r.status, StatusCode::OK, "body: {}", r.text());
        r
    }

    /// Drains and waits for the servers to stop.
    pub async fn shutdown(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown();
            tokio::time::timeout(Duration::from_secs(15), r.wait())
                .await
                .expect("gateway stops");
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        if let Some(r) = &self.running {
            r.shutdown();
        }
    }
}

/// Polls `cond` every 25 ms for at most `within`.
pub async fn poll_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

// ---------------------------------------------------------------- metrics text

/// Parses `name{k="v",...} value` lines; sums the series of `name` whose
/// labels include every pair in `labels`.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut sum = 0.0;
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = match line.rsplit_once(' ') {
            Some(x) => x,
            None => continue,
        };
        let (n, lbls) = match series.split_once('{') {
            Some((n, rest)) => (n, parse_labels(rest.trim_end_matches('}'))),
            None => (series, Vec::new()),
        };
        if n != name {
            continue;
        }
        if labels
            .iter()
            .all(|(k, v)| lbls.iter().any(|(lk, lv)| lk == k && lv == v))
        {
            sum += value.parse::<f64>().unwrap_or(0.0);
        }
    }
    sum
}

fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            chars.next();
            if c == '=' {
                break;
            }
            if c != ',' {
                key.push(c);
            }
        }
        if key.is_empty() {
            return out;
        }
        if chars.next() != Some('"') {
            return out;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(o) => value.push(o),
                    None => {}
                },
                '"' => break,
                o => value.push(o),
            }
        }
        out.push((key.trim().to_string(), value));
    }
}

// ---------------------------------------------------------------- tokens

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn jti() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Auth0-shaped access-token claims: `iss` (with its trailing slash),
/// `aud`, `exp` in 5 minutes, `iat`, `sub`, `email`, `org_id` (omitted if
/// `org` is empty), `scope` (space-separated) and an empty `permissions`.
pub fn claims(issuer: &str, org: &str, scopes: &[&str]) -> Value {
    let now = now();
    let mut c = json!({
        "iss": issuer,
        "aud": AUDIENCE,
        "sub": "auth0|user-1",
        "email": "alice@example.com",
        "iat": now,
        "exp": now + 300,
        "scope": scopes.join(" "),
        "permissions": [],
        "jti": jti(),
    });
    if !org.is_empty() {
        c["org_id"] = json!(org);
    }
    c
}

/// A token signed by `key` (header `{alg, typ, kid}`).
pub fn sign(key: &SigningKey, claims: &Value) -> String {
    key.sign(claims).expect("signing")
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn b64_json(v: &Value) -> String {
    b64(v.to_string().as_bytes())
}

/// `header.payload.signature` from parts.
pub fn compact(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64_json(header),
        b64_json(claims),
        b64(signature)
    )
}

/// A token with an arbitrary header, RSA-signed (RS256) by `key`.
pub fn sign_rs256_raw(key: &SigningKey, header: &Value, claims: &Value) -> String {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::rsa::KeyPair;
    use aws_lc_rs::signature::RSA_PKCS1_SHA256;
    let kp = KeyPair::from_pkcs8(&pkcs8_der(key)).expect("an RSA key");
    let message = format!("{}.{}", b64_json(header), b64_json(claims));
    let mut sig = vec![0u8; kp.public_modulus_len()];
    kp.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        message.as_bytes(),
        &mut sig,
    )
    .expect("RSA signing");
    format!("{message}.{}", b64(&sig))
}

/// An HMAC-SHA256 token over an arbitrary header, keyed with `secret`.
pub fn sign_hs256_raw(secret: &[u8], header: &Value, claims: &Value) -> String {
    let message = format!("{}.{}", b64_json(header), b64_json(claims));
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let tag = aws_lc_rs::hmac::sign(&key, message.as_bytes());
    format!("{message}.{}", b64(tag.as_ref()))
}

fn pkcs8_der(key: &SigningKey) -> Vec<u8> {
    let pem = key.private_pem();
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    STANDARD.decode(body).unwrap()
}

/// The RSA public key of `key`: (modulus bytes, SubjectPublicKeyInfo DER, PEM).
pub fn rsa_public_material(key: &SigningKey) -> (Vec<u8>, Vec<u8>, String) {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rsa::KeyPair;
    use aws_lc_rs::signature::KeyPair as _;
    let kp = KeyPair::from_pkcs8(&pkcs8_der(key)).expect("an RSA key");
    let n = URL_SAFE_NO_PAD
        .decode(key.public_jwk()["n"].as_str().unwrap())
        .unwrap();
    let der = kp
        .public_key()
        .as_der()
        .expect("SPKI DER")
        .as_ref()
        .to_vec();
    let b64 = STANDARD.encode(&der);
    let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END PUBLIC KEY-----\n");
    (n, der, pem)
}

pub fn ring(alg: Algorithm) -> Arc<KeyRing> {
    Arc::new(KeyRing::generate(alg).expect("key generation"))
}

// ---------------------------------------------------------------- configs

/// A config with one provider (`jwks`' issuer and JWKS URL), one echo
/// upstream `echo` and the given routes (YAML list items, indented by 2).
/// `idp_extra` lines are added under `idp:` (indented by 2).
pub fn config(jwks: &JwksServer, echo: &Echo, idp_extra: &str, rest: &str) -> String {
    format!(
        r#"idp:
  issuer: "{issuer}"
  jwksEndpoint: "{jwks_url}"
  audiences: ["{AUDIENCE}"]
{idp_extra}
upstreams:
  echo:
    url: "{echo}"
{rest}
"#,
        issuer = jwks.issuer(),
        jwks_url = jwks.jwks_url(),
        echo = echo.url(),
    )
}

/// The simplest world: an RS256 ring, its JWKS server, an echo upstream and
/// a gateway with a protected `/api` route and a public `/public` route.
pub struct World {
    pub ring: Arc<KeyRing>,
    pub jwks: JwksServer,
    pub echo: Echo,
    pub gate: Gate,
}

pub const DEFAULT_ROUTES: &str = r#"routes:
  - name: public
    match: { pathPrefix: /public }
    auth: none
    upstream: echo
  - name: api
    match: { pathPrefix: /api }
    upstream: echo
"#;

impl World {
    /// `idp_extra` goes under `idp:`, `rest` after `upstreams:` (routes etc.).
    pub async fn start(alg: Algorithm, idp_extra: &str, rest: &str) -> World {
        let ring = ring(alg);
        let jwks = JwksServer::with_ring(ring.clone()).await;
        let echo = Echo::start().await;
        let gate = Gate::start_ready(&config(&jwks, &echo, idp_extra, rest)).await;
        World {
            ring,
            jwks,
            echo,
            gate,
        }
    }

    pub async fn default() -> World {
        World::start(Algorithm::RS256, "", DEFAULT_ROUTES).await
    }

    pub fn issuer(&self) -> String {
        self.jwks.issuer()
    }

    /// A valid token for `org` with `scopes`, signed by the ring's active key.
    pub fn token(&self, org: &str, scopes: &[&str]) -> String {
        sign(&self.ring.active(), &claims(&self.issuer(), org, scopes))
    }

    pub fn claims(&self, org: &str, scopes: &[&str]) -> Value {
        claims(&self.issuer(), org, scopes)
    }

    pub fn sign(&self, claims: &Value) -> String {
        sign(&self.ring.active(), claims)
    }
}

// ---------------------------------------------------------------- process

/// Sends `signal` (`-TERM`, `-HUP`) to process `pid`.
pub fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} {pid} failed");
}

/// This process's resident set size in bytes (the gateway runs in it).
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS in /proc/self/status");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    kb * 1024
}

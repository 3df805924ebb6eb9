//! A real JWKS and OpenID discovery server, with knobs for failing, slow
//! and lying providers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use idp_gate::demo::keys::KeyRing;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use super::poll_until;

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

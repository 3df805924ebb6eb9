//! Talking HTTP to what the tests start: request bodies, a pooled client,
//! one collected-response type, raw bytes over TCP and HTTP/2 with prior
//! knowledge.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::body::Frame;
use hyper::client::conn::http2::SendRequest;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

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
struct ChannelBody {
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
/// produced on the fly by a task (never held in memory as a whole) and
/// sent without a declared length.
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

    /// For echo replies: asserts that the upstream received each header
    /// with exactly this value.
    pub fn assert_upstream(&self, headers: &[(&str, &str)]) {
        for (name, want) in headers {
            assert_eq!(
                self.upstream_header(name).as_deref(),
                Some(*want),
                "{name} as the upstream received it: {}",
                self.text()
            );
        }
    }

    /// For echo replies: asserts that none of `names` reached the upstream.
    pub fn assert_not_upstream(&self, names: &[&str]) {
        for name in names {
            assert_eq!(
                self.upstream_header(name),
                None,
                "{name} reached the upstream: {}",
                self.text()
            );
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

/// Sends `req` and collects the answer; an error (or 30 s without one) as text.
async fn try_send(client: &HttpClient, req: Request<ReqBody>) -> Result<Resp, String> {
    let what = format!("{} {}", req.method(), req.uri());
    let exchange = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| format!("{what}: {e}"))?;
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("{what}: body: {e}"))?;
        Ok(Resp {
            status: parts.status,
            headers: parts.headers,
            body: body.to_bytes(),
        })
    };
    tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .map_err(|_| format!("{what}: no answer within 30 s"))?
}

pub async fn send(client: &HttpClient, req: Request<ReqBody>) -> Resp {
    try_send(client, req)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// `GET url` with `headers`, on a connection of its own (for servers that
/// may not be up yet, or are going away).
pub async fn fetch(url: &str, headers: &[(&str, &str)]) -> Result<Resp, String> {
    let mut req = Request::get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    try_send(&client(), req.body(empty()).unwrap()).await
}

/// `POST url` of an `application/x-www-form-urlencoded` form, with
/// `Authorization: authorization` if given.
pub async fn post_form(url: &str, form: &[(&str, &str)], authorization: Option<&str>) -> Resp {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let mut req =
        Request::post(url).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(value) = authorization {
        req = req.header(header::AUTHORIZATION, value);
    }
    send(&client(), req.body(full(body)).unwrap()).await
}

// ---------------------------------------------------------------- below HTTP

/// Writes `bytes` to `addr` and returns what came back before EOF (within
/// 10 s; empty if the connection was reset).
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // The server may close before reading everything; that is fine.
    let _ = stream.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// One `GET uri` with `headers` over an HTTP/2 connection of its own, with
/// prior knowledge (h2c), to `addr`.
pub async fn h2_get(addr: SocketAddr, uri: &str, headers: &[(&str, &str)]) -> Resp {
    let (mut sender, _conn) = h2c::<ReqBody>(addr).await;
    let mut req = Request::get(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = sender
        .send_request(req.body(empty()).unwrap())
        .await
        .expect("h2 request");
    let (parts, body) = resp.into_parts();
    Resp {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.expect("h2 response body").to_bytes(),
    }
}

/// An HTTP/2 connection with prior knowledge (h2c) to `addr`: its sender,
/// and the task driving it (which ends when the connection does).
pub async fn h2c<B>(addr: SocketAddr) -> (SendRequest<B>, tokio::task::JoinHandle<()>)
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2c handshake");
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    (sender, driver)
}

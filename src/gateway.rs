//! The request path, as a readable sequence of phases:
//! route → authenticate → authorize → choose upstream → rewrite → forward →
//! record. Each request runs on the [`Snapshot`] it started with, so a
//! reload never changes a request half-way.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;

use crate::access::{AccessLine, CountedBody, LoggedBody};
use crate::auth::{Identity, verify::now_secs};
use crate::decision::{RequestFacts, decide};
use crate::error::{GateError, UpstreamFailure};
use crate::metrics::{Metrics, method_label};
use crate::proxy::Tunnels;
use crate::proxy::client::ResponseBody;
use crate::proxy::headers::{self, Carried, X_REQUEST_ID};
use crate::routing::Route;
use crate::snapshot::Snapshot;

/// The response body the gateway returns.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// The proxy's request handler.
pub struct Gateway {
    snapshot: ArcSwap<Snapshot>,
    metrics: Arc<Metrics>,
    draining: AtomicBool,
    /// Whether clients connect over TLS (`X-Forwarded-Proto`).
    tls: bool,
    tunnels: Tunnels,
}

/// What happened to one request, for metrics and the access log.
struct Outcome<'r> {
    route: Option<&'r Route>,
    identity: Option<Arc<Identity>>,
    /// The identity passed every check: only then is its organization counted.
    authorized: bool,
    upstream: Option<usize>,
}

impl Gateway {
    /// A gateway serving `snapshot`; `tls` says what `X-Forwarded-Proto` is.
    pub fn new(snapshot: Snapshot, metrics: Arc<Metrics>, tls: bool) -> Gateway {
        Gateway {
            snapshot: ArcSwap::from_pointee(snapshot),
            metrics,
            draining: AtomicBool::new(false),
            tls,
            tunnels: Tunnels::new(),
        }
    }

    /// The snapshot new requests use.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Installs a new snapshot; requests in flight finish on the old one.
    pub fn swap(&self, snapshot: Arc<Snapshot>) {
        self.snapshot.store(snapshot);
    }

    /// Stops taking new requests (they get 503) and reports not-ready.
    /// Upgraded connections are closed now: they have no end of their own
    /// for the drain to wait for.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.tunnels.close_all();
    }

    /// Whether draining.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Ready when not draining and every provider has usable keys.
    /// Returns the reason otherwise.
    pub fn readiness(&self) -> Result<(), String> {
        if self.is_draining() {
            return Err("draining".into());
        }
        self.snapshot.load().readiness()
    }

    /// Records a request that hyper refused before it reached
    /// [`Gateway::handle`] (a malformed or oversized head).
    pub fn rejected(&self, peer: SocketAddr, status: u16) {
        // hyper parsed no method: "-" is a valid method token that no
        // client request could be confused with in the log.
        let unknown = http::Method::from_bytes(b"-").unwrap_or_default();
        let mut line = AccessLine::new(
            self.metrics.clone(),
            peer.ip(),
            headers::request_id(&http::HeaderMap::new()),
            unknown,
            String::new(),
        );
        line.status = Some(status);
        line.error = Some("request head refused before routing".into());
        self.metrics
            .requests
            .with_label_values(&["unmatched", "OTHER", &status.to_string()])
            .inc();
    }

    /// Handles one request from `peer`.
    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        // A guard, not a pair of calls: hyper drops this future when the
        // client goes away, and the gauge must come down then too.
        let _inflight = Inflight::enter(&self.metrics.inflight);
        let snap = self.snapshot.load_full();
        let request_id = headers::request_id(req.headers());
        // Also a guard: if this future is dropped, the line says 499.
        let mut line = AccessLine::new(
            self.metrics.clone(),
            peer.ip(),
            request_id,
            req.method().clone(),
            req.uri().path().to_string(),
        );
        let mut outcome = Outcome {
            route: None,
            identity: None,
            authorized: false,
            upstream: None,
        };
        let result = self
            .process(&snap, req, peer, &mut line, &mut outcome)
            .await;
        let (response, error) = match result {
            Ok(resp) => (resp, None),
            Err(e) => (
                e.to_response(&line.request_id)
                    .map(|b| b.map_err(|never| match never {}).boxed()),
                Some(e),
            ),
        };

        let status = response.status();
        let route_name = outcome.route.map_or("unmatched", |r| r.name.as_str());
        self.metrics
            .requests
            .with_label_values(&[route_name, method_label(&line.method), status.as_str()])
            .inc();
        self.metrics
            .request_duration
            .with_label_values(&[route_name])
            .observe(line.start().elapsed().as_secs_f64());
        let reason = error.as_ref().and_then(GateError::reason);
        if let Some(reason) = reason {
            self.metrics
                .auth_failures
                .with_label_values(&[reason])
                .inc();
        }
        let identity = outcome.identity.as_deref();
        // Refused organizations are never counted, so they cannot use up
        // the label slots.
        if let Some(org) = identity
            .filter(|_| outcome.authorized)
            .and_then(|i| i.organization.as_deref())
        {
            self.metrics.count_organization(org);
        }
        line.status = Some(status.as_u16());
        line.route = outcome.route.map(|r| r.name.clone());
        line.upstream = outcome
            .upstream
            .and_then(|i| snap.upstreams.get(i))
            .map(|u| u.config.name.clone());
        if let Some(id) = identity {
            line.org = id.organization.clone();
            line.sub = id.subject.clone();
            line.jti = id.jti_hash.clone();
        }
        line.reason = reason;
        line.error = error
            .as_ref()
            .filter(|e| e.reason().is_none())
            .map(|e| e.to_string());
        response.map(|body| LoggedBody::new(body, line).boxed())
    }

    async fn process<'r>(
        &self,
        snap: &'r Snapshot,
        req: Request<Incoming>,
        peer: SocketAddr,
        line: &mut AccessLine,
        outcome: &mut Outcome<'r>,
    ) -> Result<Response<Body>, GateError> {
        if self.is_draining() {
            return Err(GateError::Draining);
        }
        let request_id = line.request_id.clone();
        let facts = RequestFacts {
            method: req.method(),
            uri: req.uri(),
            headers: req.headers(),
            client: peer.ip(),
            tls: self.tls,
            request_id: &request_id,
            now: now_secs(),
        };
        let decision = decide(snap, &facts).await;
        outcome.route = decision.route;
        outcome.identity = decision.identity;
        outcome.authorized = decision.authorized;
        line.route = decision.route.map(|r| r.name.clone());
        let forward = decision.verdict?;
        let Some(route) = decision.route else {
            return Err(GateError::NoRoute);
        };
        outcome.upstream = Some(forward.upstream);
        let upstream = snap
            .upstreams
            .get(forward.upstream)
            .ok_or(GateError::NoRoute)?;

        let uri = upstream
            .uri(&forward.path, forward.query.as_deref())
            .map_err(|_| GateError::BadRequest("the request target cannot be forwarded"))?;
        let (mut parts, body) = req.into_parts();
        parts.uri = uri;
        parts.version = upstream.version();
        // Upgrades are HTTP/1.1's; an HTTP/2 upstream would need extended CONNECT.
        let carried = Carried::read(&parts.headers, !upstream.config.protocol.is_http2());
        let client_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .filter(|_| carried.is_upgrade());
        forward.rewrite.apply(&mut parts.headers);
        carried.restore(&mut parts.headers);
        if upstream.config.protocol.is_http2() {
            // `:authority` names the upstream; a `Host` beside it that differs
            // makes the request malformed (RFC 9113 §8.3.1). The client's host
            // is in `X-Forwarded-Host`.
            parts.headers.remove(header::HOST);
        }

        // Forward.
        let limit = snap.config.limits.max_request_body_bytes;
        if limit.is_some_and(|l| content_length(&parts.headers).is_some_and(|n| n > l)) {
            return Err(GateError::Upstream(UpstreamFailure::BodyTooLarge));
        }
        let body = CountedBody::new(body, line.bytes_in.clone(), limit);
        let result = upstream.send(Request::from_parts(parts, body)).await;
        let name = upstream.config.name.as_str();
        let resp = match result {
            Ok(resp) => resp,
            // The client's doing, not the upstream's: not counted against it.
            Err(UpstreamFailure::BodyTooLarge) => {
                return Err(GateError::Upstream(UpstreamFailure::BodyTooLarge));
            }
            Err(failure) => {
                self.metrics
                    .upstream_errors
                    .with_label_values(&[name, failure.kind()])
                    .inc();
                return Err(GateError::Upstream(failure));
            }
        };
        self.metrics
            .upstream_requests
            .with_label_values(&[name, resp.status().as_str()])
            .inc();
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            return self.switch_protocols(resp, client_upgrade, route, &request_id);
        }
        let (mut parts, body) = resp.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers);
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            parts.headers.insert(X_REQUEST_ID, v);
        }
        Ok(Response::from_parts(parts, body))
    }
}

/// A declared `Content-Length`, if there is one and it is a number.
fn content_length(h: &http::HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Counts a request in `inflight_requests` while alive.
struct Inflight<'a>(&'a prometheus::IntGauge);

impl<'a> Inflight<'a> {
    fn enter(gauge: &'a prometheus::IntGauge) -> Self {
        gauge.inc();
        Inflight(gauge)
    }
}

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Gateway {
    /// Relays an upstream's 101 and splices the two connections. A 101 the
    /// client did not ask for (or that names no protocol) cannot be relayed:
    /// the client would not know what the connection now speaks.
    fn switch_protocols(
        &self,
        mut resp: Response<ResponseBody>,
        client: Option<OnUpgrade>,
        route: &Route,
        request_id: &str,
    ) -> Result<Response<Body>, GateError> {
        let protocol = resp.headers().get(header::UPGRADE).cloned();
        let (Some(client), Some(protocol)) = (client, protocol) else {
            tracing::warn!(
                request_id,
                route = %route.name,
                "the upstream switched protocols without an upgrade to switch to"
            );
            return Err(GateError::Upstream(UpstreamFailure::Reset));
        };
        let upstream = hyper::upgrade::on(&mut resp);
        let (mut parts, body) = resp.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers);
        headers::set_upgrade(&mut parts.headers, protocol);
        if let Ok(v) = HeaderValue::from_str(request_id) {
            parts.headers.insert(X_REQUEST_ID, v);
        }
        // The (empty) body holds the upstream's connection slot: a tunnel
        // keeps the connection, so it keeps the slot.
        self.tunnels
            .open(client, upstream, body, request_id.to_string());
        self.metrics
            .upgrades
            .with_label_values(&[route.name.as_str()])
            .inc();
        let empty = http_body_util::Empty::new().map_err(|never| match never {});
        Ok(Response::from_parts(parts, empty.boxed()))
    }

    /// The upgraded connections, for closing them at shutdown.
    pub fn tunnels(&self) -> &Tunnels {
        &self.tunnels
    }
}

//! The forwarding service: what the sidecar does with a request that the
//! [`AuthLayer`](crate::layer::AuthLayer) let through. It acts on the
//! [`Verified`] decision (upstream, path, header rewrite) and does the I/O:
//! the body limit, the upstream exchange, upgrades.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::task::{Context, Poll};

use http::header;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;

use super::body::{BodyRules, CountedBody};
use super::client::ResponseBody;
use super::headers::{self, Carried, RequestId, X_REQUEST_ID};
use super::upgrade::{ConnectionHold, Tunnels};
use crate::config::Limits;
use crate::error::{GateError, UpstreamFailure};
use crate::layer::Verified;
use crate::metrics::Metrics;

/// Where the forwarder counts the request body's bytes (the access line's
/// `bytes_in`), if the caller wants them.
#[derive(Debug, Clone)]
pub struct BytesIn(pub Arc<AtomicU64>);

/// What the forwarder did: in the extensions of each of its responses.
#[derive(Debug, Clone, Default)]
pub struct Forwarded {
    /// The upstream's name.
    pub upstream: Option<String>,
    /// Why no upstream response was relayed, if so.
    pub error: Option<GateError>,
}

/// Sends verified requests upstream.
#[derive(Clone)]
pub struct Forwarder {
    metrics: Arc<Metrics>,
    tunnels: Arc<Tunnels>,
    request_body_timeouts: prometheus::IntCounter,
    /// `limits.requestBodyTimeoutMs` and `limits.tunnelIdleTimeoutMs`, as
    /// at the start (limits take effect at the next start, as the
    /// listener's do).
    request_body_timeout: std::time::Duration,
    tunnel_idle_timeout: std::time::Duration,
}

impl Forwarder {
    /// A forwarder counting into `metrics`, keeping upgraded connections
    /// in `tunnels`, with the body and tunnel timeouts of `limits`.
    pub fn new(metrics: Arc<Metrics>, tunnels: Arc<Tunnels>, limits: &Limits) -> Forwarder {
        let request_body_timeouts = metrics.client_timeouts.with_label_values(&["request_body"]);
        Forwarder {
            metrics,
            tunnels,
            request_body_timeouts,
            request_body_timeout: limits.request_body_timeout,
            tunnel_idle_timeout: limits.tunnel_idle_timeout,
        }
    }

    async fn forward(
        &self,
        mut req: Request<Incoming>,
        done: &mut Forwarded,
    ) -> Result<Response<ResponseBody>, GateError> {
        // Only the layer calls this, and only with its verdict attached.
        let verified = req
            .extensions_mut()
            .remove::<Verified>()
            .ok_or(GateError::NoRoute)?;
        let bytes_in = req
            .extensions_mut()
            .remove::<BytesIn>()
            .map_or_else(|| Arc::new(AtomicU64::new(0)), |b| b.0);
        let snapshot = &verified.snapshot;
        let forward = &verified.forward;
        let upstream = snapshot
            .upstreams
            .get(forward.upstream)
            .ok_or(GateError::NoRoute)?;
        done.upstream = Some(upstream.config.name.clone());

        let uri = upstream
            .uri(&forward.path, forward.query.as_deref())
            .map_err(|_| GateError::BadRequest("the request target cannot be forwarded"))?;
        let (mut parts, body) = req.into_parts();
        parts.uri = uri;
        parts.version = upstream.version();
        // Upgrades are HTTP/1.1's; an HTTP/2 upstream would need extended CONNECT.
        let carried = Carried::read(&parts.headers, !upstream.config.protocol.is_http2());
        let client_upgrade = carried
            .upgrade()
            .cloned()
            .zip(parts.extensions.remove::<OnUpgrade>())
            .map(|(protocols, upgrade)| ClientUpgrade {
                protocols,
                upgrade,
                hold: parts.extensions.remove::<ConnectionHold>(),
            });
        // The layer applied the rewrite; what is left is this hop's.
        verified
            .forward
            .rewrite
            .strip_hop_by_hop(&mut parts.headers);
        carried.restore(&mut parts.headers);
        if upstream.config.protocol.is_http2() {
            // `:authority` names the upstream; a `Host` beside it that differs
            // makes the request malformed (RFC 9113 §8.3.1). The client's host
            // is in `X-Forwarded-Host`.
            parts.headers.remove(header::HOST);
        }

        let limit = snapshot.config.limits.max_request_body_bytes;
        if limit.is_some_and(|l| content_length(&parts.headers).is_some_and(|n| n > l)) {
            return Err(GateError::Upstream(UpstreamFailure::BodyTooLarge));
        }
        let limits = BodyRules {
            protected: snapshot.config.protected_headers.clone(),
            max_bytes: limit,
            idle_timeout: self.request_body_timeout,
            timeouts: self.request_body_timeouts.clone(),
        };
        let body = CountedBody::new(body, bytes_in, limits);
        let name = upstream.config.name.as_str();
        let resp = match upstream.send(Request::from_parts(parts, body)).await {
            Ok(resp) => resp,
            // The client's doing, not the upstream's: not counted against it.
            Err(failure @ (UpstreamFailure::BodyTooLarge | UpstreamFailure::BodyTimeout)) => {
                return Err(GateError::Upstream(failure));
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
            return self.switch_protocols(resp, client_upgrade, &verified);
        }
        let (mut parts, body) = resp.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers);
        parts
            .headers
            .insert(X_REQUEST_ID, verified.request_id.header_value());
        Ok(Response::from_parts(parts, body))
    }

    /// Relays an upstream's 101 and splices the two connections. A 101 the
    /// client did not ask for, or to a protocol other than the one it asked
    /// for, cannot be relayed: the client would not know what the connection
    /// now speaks.
    fn switch_protocols(
        &self,
        mut resp: Response<ResponseBody>,
        client: Option<ClientUpgrade>,
        verified: &Verified,
    ) -> Result<Response<ResponseBody>, GateError> {
        let protocol = resp.headers().get(header::UPGRADE).cloned();
        let (Some(client), Some(protocol)) = (client, protocol) else {
            tracing::warn!(
                request_id = %verified.request_id,
                route = %verified.route,
                "the upstream switched protocols without an upgrade to switch to"
            );
            return Err(GateError::Upstream(UpstreamFailure::Reset));
        };
        if !headers::offers(&client.protocols, &protocol) {
            tracing::warn!(
                request_id = %verified.request_id,
                route = %verified.route,
                "the upstream switched to a protocol the client did not ask for"
            );
            return Err(GateError::Upstream(UpstreamFailure::Reset));
        }
        let upstream = hyper::upgrade::on(&mut resp);
        let (mut parts, body) = resp.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers);
        headers::set_upgrade(&mut parts.headers, protocol);
        parts
            .headers
            .insert(X_REQUEST_ID, verified.request_id.header_value());
        // The (empty) body holds the upstream's connection slot, and the
        // hold the client's: a tunnel keeps both connections, so it keeps
        // their slots.
        self.tunnels.open(
            client.upgrade,
            upstream,
            (body, client.hold),
            self.tunnel_idle_timeout,
            verified.request_id.clone(),
        );
        self.metrics
            .upgrades
            .with_label_values(&[&*verified.route])
            .inc();
        let empty = http_body_util::Empty::new().map_err(|never| match never {});
        Ok(Response::from_parts(parts, empty.boxed()))
    }
}

/// A client's request to switch protocols.
struct ClientUpgrade {
    /// The protocols it offered (`Upgrade`).
    protocols: http::HeaderValue,
    /// Its connection, once the 101 has been written.
    upgrade: OnUpgrade,
    /// Its connection's slots, if the server gave them.
    hold: Option<ConnectionHold>,
}

impl tower::Service<Request<Incoming>> for Forwarder {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let mut done = Forwarded::default();
            let request_id = req
                .extensions()
                .get::<Verified>()
                .map(|v| v.request_id.clone())
                .unwrap_or_else(RequestId::fresh);
            let mut resp = match this.forward(req, &mut done).await {
                Ok(resp) => resp,
                Err(e) => {
                    let resp = e
                        .to_response(request_id.as_str())
                        .map(|b| b.map_err(|never| match never {}).boxed());
                    done.error = Some(e);
                    resp
                }
            };
            resp.extensions_mut().insert(done);
            Ok(resp)
        })
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

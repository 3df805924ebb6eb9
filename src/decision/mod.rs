//! The one decision about a request: refuse it (and why), or forward it
//! (where, with which path and headers). The gateway acts on it and
//! `explain` prints it; nothing else decides, so the two cannot disagree.
//!
//! Pure but for token verification, which may fetch keys (an unknown
//! `kid`), and the rate limiter's state: request facts in, a [`Decision`]
//! out.

use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method, Uri, header};

use crate::auth::claims::check_binding;
use crate::auth::{Identity, authorize, token};
use crate::error::{GateError, UpstreamFailure};
use crate::headers::Carried;
use crate::proxy::Upstream;
use crate::request_id::RequestId;
use crate::routing::{self, Access, Route};
use crate::snapshot::Snapshot;

mod rewrite;
pub use rewrite::{Rewrite, Seen};

/// What is known of a request when it is decided on: its head and its
/// connection.
pub struct RequestFacts<'a> {
    /// Method.
    pub method: &'a Method,
    /// Target (path and query; authority for HTTP/2 and absolute-form).
    pub uri: &'a Uri,
    /// Headers as received.
    pub headers: &'a HeaderMap,
    /// The client's address.
    pub client: IpAddr,
    /// Whether the client connected over TLS.
    pub tls: bool,
    /// The request id (the client's if sane, else a fresh one).
    pub request_id: &'a RequestId,
    /// Seconds since the epoch, for the token's times.
    pub now: u64,
    /// Whether the gateway is shutting down (new requests are refused).
    pub draining: bool,
    /// Whether the request goes on to another hop (the sidecar's upstream),
    /// which is told the client, protocol, host and request id; a service
    /// in the same process (the tower layer's) is not.
    pub next_hop: bool,
}

/// The decision, with what was learned on the way (for metrics, logs and
/// `explain`, whichever way it went).
pub struct Decision<'s> {
    /// The matched route.
    pub route: Option<&'s Route>,
    /// The verified identity.
    pub identity: Option<Arc<Identity>>,
    /// Whether the identity passed every check of the route.
    pub authorized: bool,
    /// Forward, or refuse with this error.
    pub verdict: Result<Forward, GateError>,
}

/// Where and how a request goes upstream.
#[derive(Clone)]
pub struct Forward {
    /// The upstream; `None` in a configuration that only decides (the
    /// tower layer's, without a proxy listener).
    pub upstream: Option<Arc<Upstream>>,
    /// The path sent upstream (canonical, less a stripped prefix), without
    /// the upstream's base path.
    pub path: String,
    /// The query, byte for byte, less the parameter that carried the token.
    pub query: Option<String>,
    /// What happens to the headers.
    pub rewrite: Rewrite,
    /// The hop-by-hop headers that go on all the same: `TE: trailers`, and
    /// an upgrade the upstream can take.
    pub carried: Carried,
    /// `limits.maxRequestBodyBytes`, for a body that streams past it.
    pub max_body_bytes: Option<u64>,
}

/// Decides on one request against `snapshot`.
pub async fn decide<'s>(snapshot: &'s Snapshot, req: &RequestFacts<'_>) -> Decision<'s> {
    let mut decision = Decision {
        route: None,
        identity: None,
        authorized: false,
        verdict: Err(GateError::NoRoute),
    };
    decision.verdict = walk(snapshot, req, &mut decision).await;
    decision
}

async fn walk<'s>(
    snapshot: &'s Snapshot,
    req: &RequestFacts<'_>,
    decision: &mut Decision<'s>,
) -> Result<Forward, GateError> {
    let config = &snapshot.config;
    if req.draining {
        return Err(GateError::Draining);
    }
    // One canonical path, matched and forwarded alike.
    let path = routing::canonicalize(req.uri.path())?;
    if req.headers.get_all(header::AUTHORIZATION).iter().count() > 1 {
        return Err(GateError::BadRequest(
            "the request has more than one Authorization header",
        ));
    }
    let host = request_host(req.uri, req.headers)?;

    // Route.
    let route = snapshot
        .route_index
        .find(
            &config.routes,
            host.as_ref().and_then(|h| h.to_str().ok()),
            req.method,
            path.matched(),
        )
        .ok_or(GateError::NoRoute)?;
    decision.route = Some(route);
    route.check_parameters(&path)?;

    // Authenticate and authorize.
    let (identity, credential) = match &route.access {
        Access::Public => (None, None),
        Access::Jwt {
            allow,
            providers,
            token_sources,
        } => {
            let query = req.uri.query();
            let credential = token::extract(token_sources, req.headers, query)?;
            let identity = snapshot
                .verifier
                .verify(&credential.token, providers.as_deref(), req.now)
                .await?;
            decision.identity = Some(identity.clone());
            authorize(&identity, allow, config.organizations.as_ref())?;
            check_binding(
                &config.binding,
                config.organizations.as_ref(),
                &identity,
                query,
            )?;
            decision.authorized = true;
            // Only now: a refused caller must not use up anyone's budget.
            snapshot
                .rate_limits
                .check(&route.name, &identity.organization)?;
            (Some(identity), Some((credential, token_sources)))
        }
    };

    // Choose the upstream.
    let organization = identity.as_ref().and_then(|i| i.organization.as_deref());
    let upstream = route
        .upstream_for(organization)
        .and_then(|i| snapshot.upstreams.get(i))
        .cloned();

    // A body declared larger than the limit is refused before anything is
    // sent; one that streams past it is ended by the forwarder.
    let max_body_bytes = config.limits.max_request_body_bytes;
    if max_body_bytes.is_some_and(|l| content_length(req.headers).is_some_and(|n| n > l)) {
        return Err(GateError::Upstream(UpstreamFailure::BodyTooLarge));
    }
    // Upgrades are HTTP/1.1's; an HTTP/2 upstream would need extended CONNECT.
    let upgrades = upstream
        .as_ref()
        .is_some_and(|u| !u.config.protocol.is_http2());
    let carried = Carried::read(req.headers, upgrades);

    // Rewrite: only the verified token goes on, and only as `Authorization`.
    let forwarded_token = credential
        .as_ref()
        .map(|(c, _)| c.token.as_ref())
        .filter(|_| config.forwarding.forward_authorization);
    let seen = Seen {
        client: req.client,
        proto: if req.tls { "https" } else { "http" },
        host: host.as_ref(),
        upstream_host: upstream.as_ref().and_then(|u| u.config.host.as_ref()),
        request_id: req.request_id,
    };
    let next_hop = req.next_hop.then_some(&seen);
    let mut rewrite = Rewrite::new(config, identity.as_deref(), forwarded_token, next_hop);
    let query = match &credential {
        Some((c, sources)) => {
            rewrite.drop_credential(sources, c);
            c.forwarded_query(req.uri.query())
        }
        None => req.uri.query().map(str::to_string),
    };
    Ok(Forward {
        upstream,
        path: route.upstream_path(&path).to_string(),
        query,
        rewrite,
        carried,
        max_body_bytes,
    })
}

/// A declared `Content-Length`, if there is one and it is a number.
fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The request's host, read the same way over HTTP/1.1 and HTTP/2: the
/// URI's authority (HTTP/2 `:authority`, HTTP/1.1 absolute-form), else the
/// one `Host` header. Two hosts that disagree, or several `Host` headers,
/// leave the route and the upstream free to read different hosts: 400.
fn request_host(uri: &Uri, headers: &HeaderMap) -> Result<Option<HeaderValue>, GateError> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(GateError::BadRequest(
            "the request has more than one Host header",
        ));
    }
    let text = match host.map(|h| h.to_str()) {
        Some(Ok(h)) => Some(h),
        Some(Err(_)) => return Err(GateError::BadRequest("the Host header is not valid")),
        None => None,
    };
    match (uri.authority(), text) {
        (Some(a), _) if a.as_str().contains('@') => Err(GateError::BadRequest(
            "the request authority must not carry user information",
        )),
        (Some(a), Some(h)) if !a.as_str().eq_ignore_ascii_case(h) => Err(GateError::BadRequest(
            "the Host header disagrees with the request's authority",
        )),
        // The header, when there is one: a clone shares its bytes.
        (_, Some(_)) => Ok(host.cloned()),
        (Some(a), None) => HeaderValue::from_str(a.as_str())
            .map(Some)
            .map_err(|_| GateError::BadRequest("the request authority is not valid")),
        (None, None) => Ok(None),
    }
}

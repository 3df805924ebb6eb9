//! Header rewriting between client and upstream: hop-by-hop removal,
//! `X-Forwarded-*`, request ids.

use std::net::IpAddr;
use std::sync::Arc;

use crate::auth::Identity;
use crate::auth::token::{self, Credential, TokenSource};
use crate::config::Config;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// `X-Request-Id`.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `X-Forwarded-For`.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`.
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// APK's organization header: stripped from every request even when
/// `organizationBinding` is not configured, since APK acts on it.
pub const X_WSO2_ORGANIZATION: HeaderName = HeaderName::from_static("x-wso2-organization");

/// Headers through which a client could pose as a proxy hop or rewrite
/// what the upstream routes on (any `X-Forwarded-*` is added by prefix).
const SPOOFABLE: [&str; 9] = [
    "forwarded",
    "x-real-ip",
    "x-client-ip",
    "x-original-url",
    "x-rewrite-url",
    "x-original-host",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Whether a header is hop-by-hop (RFC 9110 §7.6.1, plus the legacy ones).
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name.as_str())
}

/// Removes hop-by-hop headers and every header that `Connection` names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    strip_hop_by_hop_but(headers, &[]);
}

/// [`strip_hop_by_hop`], but a header `Connection` names stays if it is
/// one of `kept`.
fn strip_hop_by_hop_but(headers: &mut HeaderMap, kept: &[(HeaderName, HeaderValue)]) {
    // One pass over the names; most messages have one such header at
    // most, so nothing is allocated for the rest.
    let doomed: Vec<HeaderName> = {
        let connection = headers.get_all(header::CONNECTION);
        headers
            .keys()
            .filter(|name| {
                is_hop_by_hop(name)
                    || (connection.iter().any(|v| lists(v, name))
                        && !kept.iter().any(|(k, _)| k == *name))
            })
            .cloned()
            .collect()
    };
    for name in doomed {
        headers.remove(name);
    }
}

/// Whether a `Connection` value names `name`.
fn lists(value: &HeaderValue, name: &HeaderName) -> bool {
    value.to_str().is_ok_and(|v| {
        v.split(',')
            .any(|token| token.trim().eq_ignore_ascii_case(name.as_str()))
    })
}

/// The hop-by-hop headers that go on to the next hop after all: `TE:
/// trailers`, which gRPC needs end to end, and an upgrade's `Connection:
/// upgrade` with its `Upgrade`. Nothing else a client names in `Connection`.
#[derive(Debug, Default)]
pub struct Carried {
    trailers: bool,
    upgrade: Option<HeaderValue>,
}

impl Carried {
    /// Reads what to carry from the client's headers, before they are
    /// stripped. `upgrades`: whether the next hop can take an upgrade.
    pub fn read(headers: &HeaderMap, upgrades: bool) -> Carried {
        let trailers = tokens(headers, header::TE).any(|t| t.eq_ignore_ascii_case("trailers"));
        let upgrade = headers
            .get(header::UPGRADE)
            .filter(|_| upgrades)
            .filter(|_| {
                tokens(headers, header::CONNECTION).any(|t| t.eq_ignore_ascii_case("upgrade"))
            })
            // An `h2c` upgrade would turn the tunnel into an HTTP/2 connection
            // whose later requests reach the upstream without being checked.
            .filter(|v| {
                !v.to_str().map_or(true, |v| {
                    v.split(',').any(|p| p.trim().eq_ignore_ascii_case("h2c"))
                })
            })
            .cloned();
        Carried { trailers, upgrade }
    }

    /// Whether the request asks for an upgrade that is forwarded.
    pub fn is_upgrade(&self) -> bool {
        self.upgrade.is_some()
    }

    /// The protocols the request asks to upgrade to, if forwarded.
    pub fn upgrade(&self) -> Option<&HeaderValue> {
        self.upgrade.as_ref()
    }

    /// Puts the carried headers back after [`strip_hop_by_hop`].
    pub fn restore(self, headers: &mut HeaderMap) {
        if self.trailers {
            headers.insert(header::TE, HeaderValue::from_static("trailers"));
        }
        if let Some(protocol) = self.upgrade {
            set_upgrade(headers, protocol);
        }
    }
}

/// Whether an `Upgrade` answer names exactly one of the protocols that the
/// request's `Upgrade` offered (product tokens, compared without case).
pub fn offers(offered: &HeaderValue, chosen: &HeaderValue) -> bool {
    let (Ok(offered), Ok(chosen)) = (offered.to_str(), chosen.to_str()) else {
        return false;
    };
    let chosen = chosen.trim();
    !chosen.is_empty()
        && !chosen.contains(',')
        && offered
            .split(',')
            .any(|p| p.trim().eq_ignore_ascii_case(chosen))
}

/// Sets exactly `Connection: upgrade` and `Upgrade: protocol`.
pub fn set_upgrade(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, protocol);
}

/// The comma-separated tokens of every `name` field.
fn tokens(headers: &HeaderMap, name: HeaderName) -> impl Iterator<Item = &str> {
    headers
        .get_all(name)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.split(';').next().unwrap_or_default().trim())
}

/// A request id: the client's `X-Request-Id` if it is sane (1–128 of
/// `[A-Za-z0-9._:-]`), else a fresh one. Held as the header value it
/// travels as, so passing it on (the access line, the upstream request,
/// the response) shares its bytes instead of copying them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// The client's id from `headers`, or a fresh one.
    pub fn from_headers(headers: &HeaderMap) -> RequestId {
        headers
            .get(X_REQUEST_ID)
            .filter(|v| is_sane(v.as_bytes()))
            .map(|v| RequestId(v.clone()))
            .unwrap_or_else(RequestId::fresh)
    }

    /// A fresh id.
    pub fn fresh() -> RequestId {
        let id = fresh_request_id();
        match HeaderValue::from_maybe_shared(bytes::Bytes::from(id)) {
            Ok(v) => RequestId(v),
            // A fresh id is hex and dashes: always a valid value.
            Err(_) => RequestId(HeaderValue::from_static("-")),
        }
    }

    /// `id` if it is sane, else a fresh one.
    pub fn from_str_or_fresh(id: &str) -> RequestId {
        if is_sane(id.as_bytes()) {
            if let Ok(v) = HeaderValue::from_str(id) {
                return RequestId(v);
            }
        }
        RequestId::fresh()
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        // Only sane ids are made: visible ASCII, which `to_str` accepts.
        self.0.to_str().unwrap_or_default()
    }

    /// The id as a header value.
    pub fn header_value(&self) -> HeaderValue {
        self.0.clone()
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn is_sane(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// A new request id, shaped like a UUID (36 characters): a random prefix
/// drawn once per process, then a counter. Unique without asking the OS for
/// randomness on every request, which is what `Uuid::new_v4` does; an id
/// only has to correlate lines, not to be unguessable.
fn fresh_request_id() -> String {
    use std::fmt::Write as _;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let p = *PREFIX.get_or_init(|| {
        let mut bytes = [0u8; 8];
        // Without randomness the ids are still unique within the process.
        let _ = aws_lc_rs::rand::fill(&mut bytes);
        u64::from_le_bytes(bytes)
    });
    let c = COUNTER.fetch_add(1, Ordering::Relaxed);
    // Sized up front: `format!` would grow the string field by field.
    let mut id = String::with_capacity(36);
    let _ = write!(
        id,
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        p >> 32,
        (p >> 16) & 0xffff,
        p & 0xffff,
        (c >> 48) & 0xffff,
        c & 0xffff_ffff_ffff
    );
    id
}

/// Whether `name` (lower case, `_` read as `-`) is a proxy header a client
/// could forge to pose as a hop: any `X-Forwarded-*`, `Forwarded`,
/// `X-Real-IP`, a method override and the like.
pub fn is_spoofable(name: &str) -> bool {
    name.starts_with("x-forwarded-") || SPOOFABLE.contains(&name)
}

/// Removes every header a client could forge to speak for the gateway:
/// the spoofable proxy headers, any `X-Forwarded-*`, the `protected` ones
/// (identity and tenant headers), and the `_` spelling of each, which CGI
/// and WSGI servers merge with the `-` one.
pub fn strip_spoofable<'a>(
    headers: &mut HeaderMap,
    protected: impl Iterator<Item = &'a HeaderName> + Clone,
) {
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let raw = name.as_str();
            let dashed;
            let n = if raw.contains('_') {
                dashed = raw.replace('_', "-");
                dashed.as_str()
            } else {
                raw
            };
            is_spoofable(n) || protected.clone().any(|p| p.as_str() == n)
        })
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
}

/// What the gateway does to a request's headers on the way upstream: one
/// value, computed by the decision, applied by the layer for whatever
/// service it wraps (and printed by `explain`), so they cannot differ.
/// Hop-by-hop headers are the next hop's business: the forwarder removes
/// them ([`Rewrite::strip_hop_by_hop`]), while an in-process service keeps
/// what its server needs (an upgrade's `Connection` and `Upgrade`).
#[derive(Debug, Clone, Default)]
pub struct Rewrite {
    /// Removed from every request whatever they say, with their `_`
    /// spellings: identity, tenant and claims headers. (Hop-by-hop
    /// headers, those `Connection` names, proxy headers such as
    /// `Forwarded` and `X-Forwarded-*`, and `Authorization` always go too.)
    pub protected: Arc<[HeaderName]>,
    /// Then set, from what the gateway saw and verified.
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// The token sources' headers besides `Authorization`, removed with
    /// their `_` spellings: one carried the token, the others could have.
    pub source_headers: Vec<HeaderName>,
    /// The cookie that carried the token, removed from `Cookie`.
    pub token_cookie: Option<String>,
}

/// `Bearer <token>`, built in one allocation.
fn bearer(token: &str) -> Option<HeaderValue> {
    let mut v = String::with_capacity("Bearer ".len() + token.len());
    v.push_str("Bearer ");
    v.push_str(token);
    HeaderValue::from_maybe_shared(bytes::Bytes::from(v)).ok()
}

/// The client's address as a header value. A sidecar sees the same few
/// clients over and over: the last one's value is kept per thread.
fn client_value(ip: IpAddr) -> Option<HeaderValue> {
    use std::cell::RefCell;
    thread_local! {
        static LAST: RefCell<Option<(IpAddr, HeaderValue)>> = const { RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if let Some((seen, value)) = &*last {
            if *seen == ip {
                return Some(value.clone());
            }
        }
        let value = HeaderValue::from_str(&ip.to_string()).ok()?;
        *last = Some((ip, value.clone()));
        Some(value)
    })
}

/// What the request is, for [`Rewrite::new`].
pub struct Seen<'a> {
    /// The client's address.
    pub client: IpAddr,
    /// `http` or `https`, as the client connected.
    pub proto: &'static str,
    /// The request's host.
    pub host: Option<&'a HeaderValue>,
    /// The `Host` the upstream is configured to get instead.
    pub upstream_host: Option<&'a HeaderValue>,
    /// The request id.
    pub request_id: &'a RequestId,
}

impl Rewrite {
    /// The rewrite for a request with `identity` (none on public routes),
    /// forwarding `token` as the only credential (none: no `Authorization`).
    pub fn new(
        config: &Config,
        identity: Option<&Identity>,
        token: Option<&str>,
        seen: &Seen<'_>,
    ) -> Rewrite {
        let f = &config.forwarding;
        let protected = config.protected_headers.clone();
        // Values are cloned where they already exist as header values
        // (the host, the client address, the identity's): a clone shares
        // the bytes, where making a value from a string copies them.
        // Room for every header below: growing would copy them.
        let mut set = Vec::with_capacity(10 + f.claims.len());
        let mut put = |name: &HeaderName, value: Option<HeaderValue>| {
            if let Some(v) = value {
                set.push((name.clone(), v));
            }
        };
        put(&header::AUTHORIZATION, token.and_then(bearer));
        put(&header::HOST, seen.upstream_host.or(seen.host).cloned());
        put(&X_FORWARDED_FOR, client_value(seen.client));
        put(
            &X_FORWARDED_PROTO,
            Some(HeaderValue::from_static(seen.proto)),
        );
        put(&X_FORWARDED_HOST, seen.host.cloned());
        put(&X_REQUEST_ID, Some(seen.request_id.header_value()));
        if let Some(id) = identity {
            put(&f.user, id.values.username.clone());
            put(&f.organization, id.values.organization.clone());
            put(&f.subject, id.values.subject.clone());
            for (claim, name) in &f.claims {
                put(
                    name,
                    id.claim_value(claim)
                        .and_then(|v| HeaderValue::from_str(&v).ok()),
                );
            }
            if let (Some(b), Some(org)) = (&config.binding.header, id.organization.as_deref()) {
                let value = match config.organizations.as_ref().and_then(|o| o.get(org)) {
                    Some(name) => HeaderValue::from_str(name).ok(),
                    None => id.values.organization.clone(),
                };
                put(b, value);
            }
        }
        Rewrite {
            protected,
            set,
            source_headers: Vec::new(),
            token_cookie: None,
        }
    }

    /// Leaves behind what `credential`, read from `sources`, came in (its
    /// query parameter is the decision's to drop). Nothing is allocated
    /// for the usual request: a token in `Authorization`, which always goes.
    pub fn drop_credential(&mut self, sources: &[TokenSource], credential: &Credential<'_>) {
        for s in sources {
            if let TokenSource::Header { name, .. } = s {
                if name != header::AUTHORIZATION && !self.source_headers.contains(name) {
                    self.source_headers.push(name.clone());
                }
            }
        }
        self.token_cookie = credential.cookie().map(str::to_string);
    }

    /// Applies the rewrite to the request's headers: what a client could
    /// forge goes, and the credential the token came in, then what the
    /// gateway saw and verified is set.
    pub fn apply(&self, h: &mut HeaderMap) {
        strip_spoofable(h, self.protected.iter().chain(&self.source_headers));
        h.remove(header::AUTHORIZATION);
        for name in &self.source_headers {
            h.remove(name);
        }
        join_cookies(h);
        if let Some(name) = &self.token_cookie {
            token::strip_cookie(h, name);
        }
        for (name, value) in &self.set {
            h.insert(name.clone(), value.clone());
        }
    }

    /// Removes the hop-by-hop headers and those the client's `Connection`
    /// names, after [`Rewrite::apply`], except the headers the rewrite set:
    /// a client's `Connection: X-Forwarded-User` speaks of its own hop and
    /// must not take away the identity the gateway set.
    pub fn strip_hop_by_hop(&self, h: &mut HeaderMap) {
        strip_hop_by_hop_but(h, &self.set);
    }
}

/// Filters a request's trailers as its headers were: nothing hop-by-hop,
/// nothing spoofable or `protected`, and none of the fields a trailer must
/// not carry (RFC 9110 §6.5.1: framing, routing and credentials), which the
/// upstream would otherwise take from the client unchecked.
pub fn filter_trailers(trailers: &mut HeaderMap, protected: &[HeaderName]) {
    strip_hop_by_hop(trailers);
    strip_spoofable(trailers, protected.iter());
    for name in [
        header::AUTHORIZATION,
        header::COOKIE,
        header::HOST,
        header::CONTENT_LENGTH,
        header::CONTENT_TYPE,
        header::CONTENT_ENCODING,
        X_REQUEST_ID,
    ] {
        trailers.remove(name);
    }
}

/// Joins several `Cookie` fields into one (RFC 9113 §8.2.3): HTTP/2
/// clients split cookies, and HTTP/1.1 upstreams expect a single field.
pub fn join_cookies(headers: &mut HeaderMap) {
    let mut all = headers.get_all(header::COOKIE).iter();
    let (Some(first), Some(_)) = (all.next(), all.next()) else {
        return;
    };
    let mut joined = first.as_bytes().to_vec();
    for v in headers.get_all(header::COOKIE).iter().skip(1) {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(v.as_bytes());
    }
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn trailers_and_upgrades_are_carried_and_nothing_else() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade, X-Secret"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(header::TE, HeaderValue::from_static("gzip, trailers;q=1"));
        let carried = Carried::read(&h, true);
        assert!(carried.is_upgrade());
        strip_hop_by_hop(&mut h);
        carried.restore(&mut h);
        assert_eq!(h[header::CONNECTION], "upgrade");
        assert_eq!(h[header::UPGRADE], "websocket");
        assert_eq!(h[header::TE], "trailers");
        assert_eq!(h.len(), 3);

        // Not where the next hop cannot upgrade, not without `Connection:
        // upgrade`, and never to h2c.
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(!Carried::read(&h, false).is_upgrade());
        h.insert(header::UPGRADE, HeaderValue::from_static("foo, H2C"));
        assert!(!Carried::read(&h, true).is_upgrade());
        h.remove(header::CONNECTION);
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(!Carried::read(&h, true).is_upgrade());
        let mut h = HeaderMap::new();
        h.insert(header::TE, HeaderValue::from_static("gzip"));
        let carried = Carried::read(&h, true);
        strip_hop_by_hop(&mut h);
        carried.restore(&mut h);
        assert!(h.is_empty(), "{h:?}");
    }

    #[test]
    fn connection_cannot_take_away_what_the_rewrite_set() {
        let user = HeaderName::from_static("x-forwarded-user");
        let rewrite = Rewrite {
            protected: Arc::from([user.clone()]),
            set: vec![(user.clone(), HeaderValue::from_static("alice"))],
            ..Rewrite::default()
        };
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("X-Forwarded-User, X-Other"),
        );
        h.insert(user.clone(), HeaderValue::from_static("mallory"));
        h.insert("x-other", HeaderValue::from_static("1"));
        h.insert("x_forwarded_user", HeaderValue::from_static("mallory"));
        rewrite.apply(&mut h);
        // An in-process service still sees the client's Connection.
        assert_eq!(h[header::CONNECTION], "X-Forwarded-User, X-Other");
        assert_eq!(h[&user], "alice");
        assert!(!h.contains_key("x_forwarded_user"));
        rewrite.strip_hop_by_hop(&mut h);
        let mut left: Vec<_> = h.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        left.sort_by_key(|(k, _)| *k);
        assert_eq!(
            left,
            [("x-forwarded-user", HeaderValue::from_static("alice"))]
        );
    }

    #[test]
    fn request_ids() {
        let mut h = HeaderMap::new();
        h.insert(X_REQUEST_ID, HeaderValue::from_static("abc-123_x.y:z"));
        assert_eq!(RequestId::from_headers(&h).as_str(), "abc-123_x.y:z");
        h.insert(X_REQUEST_ID, HeaderValue::from_static("bad id<script>"));
        assert_ne!(RequestId::from_headers(&h).as_str(), "bad id<script>");
        let (a, b) = (
            RequestId::from_headers(&HeaderMap::new()),
            RequestId::from_headers(&HeaderMap::new()),
        );
        assert_eq!(a.as_str().len(), 36);
        assert_ne!(a, b);
    }

    #[test]
    fn spoofable_headers_and_their_underscore_spellings_go() {
        let mut h = HeaderMap::new();
        for name in [
            "forwarded",
            "x-real-ip",
            "x-forwarded-port",
            "x-forwarded-prefix",
            "x_forwarded_user",
            "x-original-url",
            "x-rewrite-url",
            "x-http-method-override",
            "x-tenant",
            "x_tenant",
            "x-kept",
            "x_kept",
        ] {
            h.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static("1"),
            );
        }
        let tenant = HeaderName::from_static("x-tenant");
        strip_spoofable(&mut h, [&tenant].into_iter());
        let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, ["x-kept", "x_kept"]);
    }

    #[test]
    fn cookies_are_joined() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1"));
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        join_cookies(&mut h);
        assert_eq!(h.get_all(header::COOKIE).iter().count(), 1);
        assert_eq!(h[header::COOKIE], "a=1; b=2");
    }
}

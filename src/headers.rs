//! Headers: the names the gateway acts on, which headers belong to a hop
//! rather than to the request, which a client could forge, and the plain
//! operations on a header map that follow from those rules (hop-by-hop
//! removal and what an upgrade or gRPC carries past it, spoofable headers,
//! trailers, cookies). The bottom of the crate: it imports nothing from it,
//! so every layer above can use it.

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
pub const SPOOFABLE: [&str; 9] = [
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

/// The hop-by-hop headers (RFC 9110 §7.6.1, plus the legacy ones).
pub const HOP_BY_HOP: [&str; 9] = [
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

/// Whether `name` (lower case, `_` read as `-`) is a proxy header a client
/// could forge to pose as a hop: any `X-Forwarded-*`, `Forwarded`,
/// `X-Real-IP`, a method override and the like.
pub fn is_spoofable(name: &str) -> bool {
    name.starts_with("x-forwarded-") || SPOOFABLE.contains(&name)
}

/// Removes hop-by-hop headers and every header that `Connection` names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names; most messages have one such header at
    // most, so nothing is allocated for the rest.
    let doomed: Vec<HeaderName> = {
        let connection = headers.get_all(header::CONNECTION);
        headers
            .keys()
            .filter(|name| is_hop_by_hop(name) || connection.iter().any(|v| lists(v, name)))
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
#[derive(Debug, Clone, Default)]
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

//! The header rewrite a decision plans: what a client could forge goes,
//! what the gateway saw and verified is set.

use std::net::IpAddr;
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::auth::Identity;
use crate::auth::token::{self, Credential, TokenSource};
use crate::config::Config;
use crate::headers::{X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO, X_REQUEST_ID};
use crate::headers::{join_cookies, strip_hop_by_hop, strip_spoofable};
use crate::request_id::RequestId;

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
        next_hop: Option<&Seen<'_>>,
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
        // What a proxy tells the next hop; a service in the same process
        // has the connection itself.
        if let Some(seen) = next_hop {
            put(&header::HOST, seen.upstream_host.or(seen.host).cloned());
            put(&X_FORWARDED_FOR, client_value(seen.client));
            put(
                &X_FORWARDED_PROTO,
                Some(HeaderValue::from_static(seen.proto)),
            );
            put(&X_FORWARDED_HOST, seen.host.cloned());
            put(&X_REQUEST_ID, Some(seen.request_id.header_value()));
        }
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

    /// Applies the rewrite to the request's headers, for a service in the
    /// same process (the tower layer's): what a client could forge goes,
    /// and the credential the token came in, then what the gateway saw and
    /// verified is set. Hop-by-hop headers stay: the service's own server
    /// needs an upgrade's `Connection` and `Upgrade`.
    pub fn apply(&self, h: &mut HeaderMap) {
        self.strip(h);
        for (name, value) in &self.set {
            h.insert(name.clone(), value.clone());
        }
    }

    /// Applies the rewrite for the next hop: the hop-by-hop headers (and
    /// those the client's `Connection` names) go first, so a client's
    /// `Connection: X-Forwarded-User`, which speaks of its own hop, cannot
    /// take away the identity set after them.
    pub fn apply_for_next_hop(self, h: &mut HeaderMap) {
        strip_hop_by_hop(h);
        self.strip(h);
        for (name, value) in self.set {
            h.insert(name, value);
        }
    }

    fn strip(&self, h: &mut HeaderMap) {
        strip_spoofable(h, self.protected.iter().chain(&self.source_headers));
        h.remove(header::AUTHORIZATION);
        for name in &self.source_headers {
            h.remove(name);
        }
        join_cookies(h);
        if let Some(name) = &self.token_cookie {
            token::strip_cookie(h, name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_cannot_take_away_what_the_rewrite_set() {
        let user = HeaderName::from_static("x-forwarded-user");
        let rewrite = Rewrite {
            protected: Arc::from([user.clone()]),
            set: vec![(user.clone(), HeaderValue::from_static("alice"))],
            ..Rewrite::default()
        };
        let client = || {
            let mut h = HeaderMap::new();
            h.insert(
                header::CONNECTION,
                HeaderValue::from_static("X-Forwarded-User, X-Other"),
            );
            h.insert(user.clone(), HeaderValue::from_static("mallory"));
            h.insert("x-other", HeaderValue::from_static("1"));
            h.insert("x_forwarded_user", HeaderValue::from_static("mallory"));
            h
        };
        let mut h = client();
        rewrite.apply(&mut h);
        // An in-process service still sees the client's Connection.
        assert_eq!(h[header::CONNECTION], "X-Forwarded-User, X-Other");
        assert_eq!(h[&user], "alice");
        assert!(!h.contains_key("x_forwarded_user"));

        let mut h = client();
        rewrite.apply_for_next_hop(&mut h);
        let mut left: Vec<_> = h.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        left.sort_by_key(|(k, _)| *k);
        assert_eq!(
            left,
            [("x-forwarded-user", HeaderValue::from_static("alice"))]
        );
    }
}

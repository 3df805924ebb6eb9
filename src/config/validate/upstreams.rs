//! `upstreams`: where routes forward to, and how.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use url::Url;

use super::Problems;
use super::values::{http_url, optional_file, positive};
use crate::config::raw::RawUpstream;
use crate::config::{UpstreamConfig, UpstreamProtocol};

/// The upstreams in name order, and each name's index among them.
pub(super) fn upstreams(
    raw: BTreeMap<String, RawUpstream>,
    p: &mut Problems,
) -> (Vec<UpstreamConfig>, HashMap<String, usize>) {
    let mut upstreams = Vec::new();
    let mut index = HashMap::new();
    for (name, u) in raw {
        index.insert(name.clone(), upstreams.len());
        upstreams.push(upstream(name, u, p));
    }
    (upstreams, index)
}

/// One upstream, checked.
fn upstream(name: String, u: RawUpstream, p: &mut Problems) -> UpstreamConfig {
    let path = format!("upstreams.{name}");
    let url = http_url(&u.url, &format!("{path}.url"), p);
    if u.connect_timeout_ms == 0 {
        p.add(format!("{path}.connectTimeoutMs"), "must be greater than 0");
    }
    if u.request_timeout_ms == 0 {
        p.add(format!("{path}.requestTimeoutMs"), "must be greater than 0");
    }
    let ca_file = optional_file(&u.ca_file, &format!("{path}.caFile"), p);
    let protocol = upstream_protocol(&u.protocol, url.as_ref(), &path, p);
    if u.idle_timeout_ms == 0 {
        p.add(format!("{path}.idleTimeoutMs"), "must be greater than 0");
    }
    UpstreamConfig {
        name,
        url: url.unwrap_or_else(placeholder_url),
        connect_timeout: Duration::from_millis(u.connect_timeout_ms),
        request_timeout: Duration::from_millis(u.request_timeout_ms),
        ca_file,
        max_connections: positive(u.max_connections, &format!("{path}.maxConnections"), p),
        protocol,
        idle_timeout: Duration::from_millis(u.idle_timeout_ms),
        host: upstream_host(&u.host, &format!("{path}.host"), p),
    }
}

/// An upstream's `Host`: an authority without user information, path or
/// anything else a header could smuggle.
fn upstream_host(raw: &str, path: &str, p: &mut Problems) -> Option<http::HeaderValue> {
    if raw.is_empty() {
        return None;
    }
    let valid = raw
        .parse::<http::uri::Authority>()
        .ok()
        .filter(|a| a.as_str() == raw && !raw.contains('@'))
        .and_then(|_| http::HeaderValue::from_str(raw).ok());
    if valid.is_none() {
        p.add(
            path,
            "must be a host name with an optional port, e.g. `api.internal:8443`",
        );
    }
    valid
}

/// The upstream's protocol; `h2` is negotiated by TLS ALPN and `h2c` has
/// no TLS, so each is checked against the url's scheme.
fn upstream_protocol(
    s: &str,
    url: Option<&Url>,
    upstream: &str,
    p: &mut Problems,
) -> UpstreamProtocol {
    let path = format!("{upstream}.protocol");
    let (protocol, scheme) = match s {
        "http1" => return UpstreamProtocol::Http1,
        "h2" => (UpstreamProtocol::H2, "https"),
        "h2c" => (UpstreamProtocol::H2c, "http"),
        other => {
            p.add(path, format!("{other:?} is not one of http1, h2, h2c"));
            return UpstreamProtocol::Http1;
        }
    };
    if url.is_some_and(|u| u.scheme() != scheme) {
        p.add(
            path,
            format!("{s} needs a {scheme}:// url (see {upstream}.url)"),
        );
    }
    protocol
}

/// A stand-in for a URL that failed its check.
fn placeholder_url() -> Url {
    // Only reached when a problem was recorded, so the config is discarded.
    Url::parse("http://invalid.invalid/").unwrap_or_else(|_| unreachable!())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::UpstreamProtocol;
    use crate::config::validate::from_yaml;
    use crate::config::validate::tests::problems;

    #[test]
    fn upstream_protocols_match_their_url_scheme() {
        let yaml = "upstreams:\n\
             \x20 a: {url: 'http://127.0.0.1:1', protocol: h2}\n\
             \x20 b: {url: 'https://127.0.0.1:1', protocol: h2c}\n\
             \x20 c: {url: 'http://127.0.0.1:1', protocol: http2}\n\
             \x20 d: {url: 'http://127.0.0.1:1', idleTimeoutMs: 0}\n\
             routes: [{name: r, match: {pathPrefix: /}, upstream: a}]\n";
        let found = problems(yaml);
        for want in [
            "upstreams.a.protocol: h2 needs a https:// url",
            "upstreams.b.protocol: h2c needs a http:// url",
            "upstreams.c.protocol: \"http2\" is not one of http1, h2, h2c",
            "upstreams.d.idleTimeoutMs: must be greater than 0",
        ] {
            assert!(
                found.iter().any(|p| p.starts_with(want)),
                "{want:?} not in {found:#?}"
            );
        }

        let yaml = "upstreams:\n\
             \x20 a: {url: 'https://127.0.0.1:1', protocol: h2}\n\
             \x20 b: {url: 'http://127.0.0.1:1', protocol: h2c, idleTimeoutMs: 500}\n\
             \x20 c: {url: 'http://127.0.0.1:1'}\n\
             routes: [{name: r, match: {pathPrefix: /}, auth: none, upstream: a}]\n";
        let config = from_yaml(yaml, &|_| None).unwrap();
        let protocols: Vec<_> = config.upstreams.iter().map(|u| u.protocol).collect();
        assert_eq!(
            protocols,
            [
                UpstreamProtocol::H2,
                UpstreamProtocol::H2c,
                UpstreamProtocol::Http1
            ]
        );
        assert_eq!(config.upstreams[1].idle_timeout, Duration::from_millis(500));
        assert_eq!(config.upstreams[2].idle_timeout, Duration::from_secs(60));
    }
}

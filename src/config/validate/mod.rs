//! Raw config → compiled [`Config`], collecting every problem in one pass.
//!
//! Each section of the file has its own module. `compile` calls them in
//! one fixed order (listeners and TLS, providers, upstreams, routes,
//! binding and forwarding, limits), after the problems of expansion and of
//! the schema, so a file always reports its problems in the same order.

mod forwarding;
mod limits;
mod providers;
mod routes;
mod upstreams;
mod values;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use super::raw::RawConfig;
use super::{Config, Problem, TlsFiles, expand};
use forwarding::{binding, forwarding, protected_headers};
use limits::limits;
use providers::providers;
use routes::routes;
use upstreams::upstreams;
use values::{existing_file, socket_addr};

/// Collects problems; a path that already has one gets no second, so a
/// value that failed expansion is not also reported as, say, a bad URL.
struct Problems {
    list: Vec<Problem>,
    paths: HashSet<String>,
}

impl Problems {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let path = path.into();
        if self.paths.insert(path.clone()) {
            self.list.push(Problem::new(path, message));
        }
    }
}

pub(super) fn from_yaml(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Vec<Problem>> {
    let mut value: serde_yaml::Value = serde_yaml::from_str(text)
        .map_err(|e| vec![Problem::new("", format!("invalid YAML: {e}"))])?;
    if value.is_null() {
        return Err(vec![Problem::new("", "the file is empty")]);
    }
    let mut expansion = Vec::new();
    expand::expand_tree(&mut value, "", env, &mut expansion);
    let mut problems = Problems {
        paths: expansion.iter().map(|p| p.path.clone()).collect(),
        list: expansion,
    };
    // Unknown keys are reported and dropped so the rest of the file still
    // gets checked in this same pass; any other schema error ends it.
    let raw: RawConfig = loop {
        match serde_path_to_error::deserialize(value.clone()) {
            Ok(raw) => break raw,
            Err(e) => {
                let path = e.path().to_string();
                let path = if path == "." { String::new() } else { path };
                let message = e.inner().to_string();
                let unknown_key = message.starts_with("unknown field");
                problems.add(path, message);
                if !unknown_key || problems.list.len() > 100 || !remove_at(&mut value, e.path()) {
                    return Err(problems.list);
                }
            }
        }
    };
    let config = compile(raw, &mut problems);
    if problems.list.is_empty() {
        Ok(config)
    } else {
        Err(problems.list)
    }
}

/// Removes the mapping entry at `path`; false if there is none.
fn remove_at(value: &mut serde_yaml::Value, path: &serde_path_to_error::Path) -> bool {
    use serde_path_to_error::Segment;
    let segments: Vec<&Segment> = path.iter().collect();
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut node = value;
    for segment in parents {
        node = match (segment, node) {
            (Segment::Map { key }, serde_yaml::Value::Mapping(m)) => {
                match m.get_mut(key.as_str()) {
                    Some(child) => child,
                    None => return false,
                }
            }
            (Segment::Seq { index }, serde_yaml::Value::Sequence(s)) => match s.get_mut(*index) {
                Some(child) => child,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, node) {
        (Segment::Map { key }, serde_yaml::Value::Mapping(m)) => m.remove(key.as_str()).is_some(),
        _ => false,
    }
}

/// The parsed file, checked section by section.
fn compile(raw: RawConfig, p: &mut Problems) -> Config {
    let proxy = !raw.listen.is_empty();
    let listen = if proxy {
        socket_addr(&raw.listen, "listen", p)
    } else {
        None
    };
    let admin_listen = socket_addr(&raw.admin.listen, "admin.listen", p);
    if listen.is_some_and(|l| l.port() != 0) && listen == admin_listen {
        p.add(
            "admin.listen",
            "must differ from `listen`: the admin API is never served on the proxy port",
        );
    }
    let tls = raw.tls.map(|t| TlsFiles {
        cert_file: existing_file(&t.cert_file, "tls.certFile", p),
        key_file: existing_file(&t.key_file, "tls.keyFile", p),
    });

    let idp_configured = raw.idp.is_some() || !raw.idps.is_empty();
    let providers = providers(raw.idp, raw.idps, p);
    let (upstreams, upstream_index) = upstreams(raw.upstreams, p);

    let organizations = raw.organizations.map(|orgs| {
        orgs.into_iter()
            .map(|(id, o)| (id, o.name))
            .collect::<HashMap<_, _>>()
    });

    let routes = routes(
        raw.routes,
        raw.rate_limit.as_ref(),
        &upstream_index,
        &providers,
        idp_configured,
        proxy,
        p,
    );
    let binding = binding(raw.organization_binding, p);
    let forwarding = forwarding(raw.forwarding, &binding, p);
    let limits = limits(&raw.limits, p);
    Config {
        protected_headers: protected_headers(&forwarding, &binding),
        listen: proxy.then(|| listen.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 8080)))),
        admin_listen: admin_listen.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9901))),
        shutdown_grace: Duration::from_secs(raw.shutdown_grace_seconds),
        shutdown_delay: Duration::from_secs(raw.shutdown_delay_seconds),
        tls,
        providers,
        upstreams,
        routes,
        organizations,
        binding,
        forwarding,
        organization_label: raw.metrics.organization_label,
        limits,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::PathMatch;

    pub(super) fn problems(yaml: &str) -> Vec<String> {
        from_yaml(yaml, &|name| (name == "SET").then(|| "value".to_string()))
            .err()
            .unwrap_or_default()
            .iter()
            .map(|p| p.to_string())
            .collect()
    }

    pub(super) const BASE: &str = "upstreams: {u: {url: 'http://127.0.0.1:1'}}\n";
    pub(super) const ROUTE: &str = "routes: [{name: r, match: {pathPrefix: /}, upstream: u}]\n";

    pub(super) fn assert_found(found: &[String], wants: &[&str]) {
        for want in wants {
            assert!(
                found.iter().any(|p| p.starts_with(want)),
                "{want:?} not in {found:#?}"
            );
        }
    }

    #[test]
    fn every_problem_in_one_pass() {
        let yaml = format!(
            "{BASE}idp: {{issuer: 'https://i/', isuer: x, audiences: ['${{UNSET}}'], algorithms: [RS256, none]}}\n\
             upstreams2: 1\n\
             routes:\n - {{name: r, match: {{pathPrefix: /}}, upstream: u}}\n - {{name: r, match: {{path: /x}}, upstream: nope}}\n"
        );
        let found = problems(&yaml);
        for want in [
            "idp.isuer: unknown field",
            "upstreams2: unknown field",
            "idp.audiences[0]: environment variable UNSET is not set",
            "idp.algorithms[1]: \"none\" is never allowed",
            "routes[1].name: duplicate route name",
            "routes[1].upstream: upstream \"nope\" is not defined",
        ] {
            assert!(
                found.iter().any(|p| p.starts_with(want)),
                "{want:?} not in {found:#?}"
            );
        }
    }

    #[test]
    fn env_values_fill_numbers_and_keys() {
        let yaml = format!(
            "{BASE}idp: {{issuer: 'https://i/', audiences: ['${{SET}}'], clockSkewSeconds: '${{SKEW:-45}}'}}\n\
             organizations: {{'${{SET}}': {{name: org1}}}}\n\
             routes: [{{name: r, match: {{pathPrefix: /api/}}, upstream: u}}]\n"
        );
        let config =
            from_yaml(&yaml, &|name| (name == "SET").then(|| "value".to_string())).unwrap();
        assert_eq!(config.providers[0].audiences, vec!["value".to_string()]);
        assert_eq!(config.providers[0].clock_skew.as_secs(), 45);
        assert_eq!(config.organizations.unwrap()["value"], "org1");
        assert_eq!(config.routes[0].path, PathMatch::Prefix("/api".into()));
    }
}

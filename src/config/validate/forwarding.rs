//! `organizationBinding` and `forwarding`: the headers the gateway sets
//! from verified claims, and the rules that keep each one a header of its
//! own that no caller and no other setting can speak for.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use http::HeaderName;

use super::Problems;
use super::values::header_name;
use crate::config::raw::{RawForwarding, RawOrganizationBinding};
use crate::config::{ClaimRef, Forwarding, OrganizationBinding};

/// `organizationBinding`; omitted, no header and no query parameter.
pub(super) fn binding(
    raw: Option<RawOrganizationBinding>,
    p: &mut Problems,
) -> OrganizationBinding {
    match raw {
        Some(b) => OrganizationBinding {
            header: b
                .header
                .and_then(|h| header_name(&h, "organizationBinding.header", p)),
            query_param: b.query_param.filter(|q| !q.is_empty()),
        },
        None => OrganizationBinding::default(),
    }
}

/// `forwarding`, with every header it names checked against the others
/// and against `binding`'s header.
pub(super) fn forwarding(
    f: RawForwarding,
    binding: &OrganizationBinding,
    p: &mut Problems,
) -> Forwarding {
    let (claims, claim_paths) = claims_headers(&f.claims_headers, p);
    let ids = &f.identity_headers;
    let forwarding = Forwarding {
        user: identity_header(&ids.user, "user", "x-forwarded-user", p),
        organization: identity_header(&ids.organization, "organization", "x-forwarded-org", p),
        subject: identity_header(&ids.subject, "subject", "x-forwarded-sub", p),
        claims,
        forward_authorization: f.forward_authorization,
    };
    let identity = [
        (&forwarding.user, "forwarding.identityHeaders.user"),
        (
            &forwarding.organization,
            "forwarding.identityHeaders.organization",
        ),
        (&forwarding.subject, "forwarding.identityHeaders.subject"),
    ]
    .map(|(h, path)| (h, path.to_string(), Sets::Identity));
    let gateway_headers = identity
        .into_iter()
        .chain(
            binding
                .header
                .iter()
                .map(|h| (h, "organizationBinding.header".to_string(), Sets::Binding)),
        )
        .chain(
            forwarding
                .claims
                .iter()
                .zip(claim_paths)
                .map(|((_, h), path)| (h, path, Sets::Claim)),
        );
    check_gateway_headers(gateway_headers, p);
    forwarding
}

/// `forwarding.claimsHeaders`: claim → header, with each entry's YAML path.
fn claims_headers(
    raw: &BTreeMap<String, String>,
    p: &mut Problems,
) -> (Vec<(ClaimRef, HeaderName)>, Vec<String>) {
    let mut claim_paths = Vec::new();
    let claims = raw
        .iter()
        .filter_map(|(claim, header)| {
            let path = key_path("forwarding.claimsHeaders", claim);
            if claim.is_empty() {
                p.add(&path, "claim name is empty");
                return None;
            }
            let h = header_name(header, &path, p)?;
            claim_paths.push(path);
            Some((ClaimRef::parse(claim), h))
        })
        .collect();
    (claims, claim_paths)
}

/// `forwarding.identityHeaders.<key>`, or `default` if it is not a header name.
fn identity_header(raw: &str, key: &str, default: &'static str, p: &mut Problems) -> HeaderName {
    header_name(raw, &format!("forwarding.identityHeaders.{key}"), p)
        .unwrap_or(HeaderName::from_static(default))
}

/// Headers the gateway alone may set: computed once, stripped from every
/// request.
pub(super) fn protected_headers(
    forwarding: &Forwarding,
    binding: &OrganizationBinding,
) -> Arc<[HeaderName]> {
    forwarding
        .identity_header_names()
        .chain(binding.header.as_ref())
        .chain(std::iter::once(&crate::headers::X_WSO2_ORGANIZATION))
        .cloned()
        .collect()
}

/// `prefix.key`, the key quoted unless it is a plain word: claims are
/// named by URL (`"https://example.com/roles"`) or JSON Pointer, and the
/// path must still read back as one key.
fn key_path(prefix: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if plain {
        format!("{prefix}.{key}")
    } else {
        format!("{prefix}.{key:?}")
    }
}

/// Which setting makes the gateway set a header from verified claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sets {
    /// `forwarding.identityHeaders.*`.
    Identity,
    /// `organizationBinding.header`.
    Binding,
    /// `forwarding.claimsHeaders.*`.
    Claim,
}

/// Checks the headers the gateway fills from verified claims: none may be
/// a header that frames, routes or authenticates the request, or one that
/// says where it came from, and no two may be the same header (the later
/// would silently overwrite the earlier). Names are compared as servers
/// behind the gateway read them: case-insensitively, with CGI and WSGI
/// servers taking `_` for `-`.
fn check_gateway_headers<'a>(
    headers: impl Iterator<Item = (&'a HeaderName, String, Sets)>,
    p: &mut Problems,
) {
    let mut seen: HashMap<String, String> = HashMap::new();
    for (name, path, sets) in headers {
        let folded = name.as_str().replace('_', "-");
        if let Some(why) = unfit_header(&folded, sets) {
            p.add(path, format!("{name} {why}"));
            continue;
        }
        match seen.get(&folded) {
            Some(first) => p.add(
                &path,
                format!("{name} is also {first}: each header carries one value"),
            ),
            None => {
                seen.insert(folded, path);
            }
        }
    }
}

/// The `X-Forwarded-*` headers that describe the connection or the
/// original request, which proxies and frameworks behind the gateway act on
/// (Envoy, nginx, Traefik, Spring): a claim must not speak for them. The
/// rest of the family carries identity in oauth2-proxy's fashion
/// (`X-Forwarded-User`, `X-Forwarded-Groups`), as the defaults do.
const FORWARDED_CONNECTION: [&str; 11] = [
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-server",
    "x-forwarded-ssl",
    "x-forwarded-scheme",
    "x-forwarded-uri",
    "x-forwarded-method",
    "x-forwarded-path",
    "x-forwarded-client-cert",
    "x-forwarded-tls-client-cert",
    "x-forwarded-tls-client-cert-info",
];

/// Why a header the gateway sets from verified claims cannot be `folded`
/// (lower case, `_` read as `-`).
fn unfit_header(folded: &str, sets: Sets) -> Option<&'static str> {
    use crate::headers::{is_hop_by_hop, is_spoofable};
    let hop_by_hop = HeaderName::from_bytes(folded.as_bytes()).is_ok_and(|h| is_hop_by_hop(&h));
    let proxy_header = FORWARDED_CONNECTION.contains(&folded)
        || (is_spoofable(folded) && !folded.starts_with("x-forwarded-"));
    Some(match folded {
        _ if hop_by_hop => "is hop-by-hop: it is removed before the request goes upstream",
        "authorization" => "carries the credential, which the gateway forwards or removes itself",
        "host" | "content-length" | "cookie" => {
            "is part of the request itself and must not be replaced by a claim"
        }
        "x-forwarded-for" | "x-forwarded-host" | "x-forwarded-proto" | "x-request-id" => {
            "is set by the gateway itself"
        }
        _ if proxy_header => {
            "is a proxy header that servers behind the gateway trust to describe the connection or the original request: choose another name"
        }
        "x-wso2-organization" if sets == Sets::Claim => {
            "is APK's organization header: set it with organizationBinding.header"
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::validate::from_yaml;
    use crate::config::validate::tests::{BASE, ROUTE, assert_found, problems};

    #[test]
    fn claims_and_binding_headers_cannot_name_a_header_the_gateway_manages() {
        let idp = "idp: {issuer: 'https://i/', audiences: [a]}\n";
        let yaml = format!(
            "{BASE}{idp}{ROUTE}organizationBinding: {{header: X_Forwarded_Host}}\n\
             forwarding:\n\
             \x20 claimsHeaders:\n\
             \x20   'https://example.com/roles': authorization\n\
             \x20   a: Host\n\
             \x20   b: Content_Length\n\
             \x20   c: transfer-encoding\n\
             \x20   d: Cookie\n\
             \x20   e: Keep-Alive\n\
             \x20   f: Proxy_Authorization\n\
             \x20   g: Upgrade\n\
             \x20   h: Forwarded\n\
             \x20   i: X-Forwarded-For\n\
             \x20   j: x-forwarded-port\n\
             \x20   k: X-Real-IP\n\
             \x20   l: X_Request_Id\n\
             \x20   m: X-HTTP-Method-Override\n\
             \x20   n: X-WSO2-Organization\n\
             \x20   ok: X-Roles\n\
             \x20   ok2: X-Forwarded-Groups\n"
        );
        let found = problems(&yaml);
        assert_found(
            &found,
            &[
                "forwarding.claimsHeaders.\"https://example.com/roles\": authorization",
                "forwarding.claimsHeaders.a: host",
                "forwarding.claimsHeaders.b: content_length",
                "forwarding.claimsHeaders.c: transfer-encoding",
                "forwarding.claimsHeaders.d: cookie",
                "forwarding.claimsHeaders.e: keep-alive",
                "forwarding.claimsHeaders.f: proxy_authorization",
                "forwarding.claimsHeaders.g: upgrade",
                "forwarding.claimsHeaders.h: forwarded",
                "forwarding.claimsHeaders.i: x-forwarded-for",
                "forwarding.claimsHeaders.j: x-forwarded-port",
                "forwarding.claimsHeaders.k: x-real-ip",
                "forwarding.claimsHeaders.l: x_request_id",
                "forwarding.claimsHeaders.m: x-http-method-override",
                "forwarding.claimsHeaders.n: x-wso2-organization",
                "organizationBinding.header: x_forwarded_host",
            ],
        );
        assert!(
            !found.iter().any(|p| p.contains("claimsHeaders.ok")),
            "{found:#?}"
        );
        assert_eq!(found.len(), 16, "one problem per header: {found:#?}");
    }

    #[test]
    fn identity_claims_and_binding_headers_are_distinct_headers() {
        let idp = "idp: {issuer: 'https://i/', audiences: [a]}\n";
        let yaml = format!(
            "{BASE}{idp}{ROUTE}organizationBinding: {{header: x_org}}\n\
             forwarding:\n\
             \x20 identityHeaders: {{user: X-User, organization: X-Org, subject: X_USER}}\n\
             \x20 claimsHeaders:\n\
             \x20   'https://example.com/roles': X-Roles\n\
             \x20   /team: X_Roles\n\
             \x20   email: x-user\n\
             \x20   tenant: X-Tenant\n"
        );
        let found = problems(&yaml);
        assert_found(
            &found,
            &[
                "forwarding.identityHeaders.subject: x_user is also forwarding.identityHeaders.user",
                "organizationBinding.header: x_org is also forwarding.identityHeaders.organization",
                "forwarding.claimsHeaders.\"https://example.com/roles\": x-roles is also forwarding.claimsHeaders.\"/team\"",
                "forwarding.claimsHeaders.email: x-user is also forwarding.identityHeaders.user",
            ],
        );
        assert_eq!(found.len(), 4, "{found:#?}");

        let yaml = format!(
            "{BASE}{idp}{ROUTE}organizationBinding: {{header: X-Tenant}}\n\
             forwarding: {{claimsHeaders: {{tenant: x_tenant}}}}\n"
        );
        assert_found(
            &problems(&yaml),
            &["forwarding.claimsHeaders.tenant: x_tenant is also organizationBinding.header"],
        );

        // Identity headers are X-Forwarded-* by default, but not the ones
        // the gateway itself sets from the connection.
        let yaml = format!(
            "{BASE}{idp}{ROUTE}forwarding:\n\
             \x20 identityHeaders: {{user: X-Forwarded-For, organization: x_request_id, subject: Cookie}}\n"
        );
        assert_found(
            &problems(&yaml),
            &[
                "forwarding.identityHeaders.user: x-forwarded-for",
                "forwarding.identityHeaders.organization: x_request_id",
                "forwarding.identityHeaders.subject: cookie",
            ],
        );
        let yaml = format!(
            "{BASE}{idp}{ROUTE}organizationBinding: {{header: X-WSO2-Organization}}\n\
             forwarding: {{claimsHeaders: {{roles: X-Forwarded-Roles, team: X-Team}}}}\n"
        );
        assert!(
            from_yaml(&yaml, &|_| None).is_ok(),
            "{:#?}",
            problems(&yaml)
        );
    }
}

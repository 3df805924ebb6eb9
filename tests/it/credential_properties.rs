//! Properties of token extraction and the rewrite over generated requests:
//! whatever mix of sources, repeats, empty values and odd spellings a
//! request carries, the gateway either refuses it (400) or finds exactly
//! one credential, the one an independent reading finds, and what it would
//! forward (query, cookies, headers) carries no other credential, nor this
//! one anywhere but in `Authorization` when that is configured.

use std::net::IpAddr;
use std::path::Path;

use http::{HeaderMap, HeaderName, HeaderValue, header};
use idp_gate::config::Config;
use idp_gate::error::{AuthFailure, GateError};
use idp_gate::internals::auth::token::extract;
use idp_gate::internals::decision::{Rewrite, Seen};
use idp_gate::internals::request_id::RequestId;
use proptest::prelude::*;

fn config(forward_authorization: bool) -> Config {
    let yaml = format!(
        r#"
idp:
  issuer: "https://tenant.example.com/"
  audiences: [api]
  tokenSources:
    - header: Authorization
    - header: X-Api-Token
    - query: access_token
    - cookie: session
upstreams: {{ u: {{ url: "http://127.0.0.1:1" }} }}
routes:
  - {{ name: api, match: {{ pathPrefix: / }}, upstream: u }}
forwarding: {{ forwardAuthorization: {forward_authorization} }}
"#
    );
    Config::from_yaml(&yaml, Path::new("t.yaml"), &|_| None).expect("valid")
}

/// A value a source may hold.
#[derive(Debug, Clone, Copy)]
enum Val {
    /// A token, unique to the item that carries it.
    Token,
    /// `name=`, `Bearer`.
    Empty,
    /// `name` alone (query and cookies), as `Empty` elsewhere.
    Bare,
}

#[derive(Debug, Clone)]
enum Item {
    Authorization {
        scheme: &'static str,
        val: Val,
    },
    ApiToken {
        underscore: bool,
        val: Val,
    },
    Query {
        sep: &'static str,
        name: &'static str,
        val: Val,
        encoded: bool,
    },
    Cookie {
        field: usize,
        sep: &'static str,
        name: &'static str,
        val: Val,
        quoted: bool,
    },
}

const BEARER: [&str; 3] = ["Bearer", "bearer", "BEARER"];
const OTHER_SCHEMES: [&str; 3] = ["Basic", "Token", "Bearerx"];
const TOKEN_PARAMS: [&str; 6] = [
    "access_token",
    "ACCESS_TOKEN",
    "Access_Token",
    "access%5Ftoken",
    "access%5ftoken",
    "%61ccess_token",
];
const OTHER_PARAMS: [&str; 6] = [
    "a",
    "access_token2",
    "xaccess_token",
    "access",
    "access+token",
    "b%3D",
];
const TOKEN_COOKIES: [&str; 5] = ["session", "Session", "SESSION", "%73ession", " session "];
const OTHER_COOKIES: [&str; 3] = ["theme", "session2", "sess"];

fn val() -> impl Strategy<Value = Val> {
    prop_oneof![4 => Just(Val::Token), 1 => Just(Val::Empty), 1 => Just(Val::Bare)]
}

fn item() -> impl Strategy<Value = Item> {
    let names = |a: &'static [&'static str], b: &'static [&'static str]| {
        prop::sample::select(a.iter().chain(b).copied().collect::<Vec<_>>())
    };
    prop_oneof![
        (names(&BEARER, &OTHER_SCHEMES), val())
            .prop_map(|(scheme, val)| Item::Authorization { scheme, val }),
        (any::<bool>(), val()).prop_map(|(underscore, val)| Item::ApiToken { underscore, val }),
        (
            prop::sample::select(vec!["&", ";"]),
            names(&TOKEN_PARAMS, &OTHER_PARAMS),
            val(),
            any::<bool>()
        )
            .prop_map(|(sep, name, val, encoded)| Item::Query {
                sep,
                name,
                val,
                encoded
            }),
        (
            0..2usize,
            prop::sample::select(vec!["; ", ";", ", "]),
            names(&TOKEN_COOKIES, &OTHER_COOKIES),
            val(),
            any::<bool>()
        )
            .prop_map(|(field, sep, name, val, quoted)| Item::Cookie {
                field,
                sep,
                name,
                val,
                quoted
            }),
    ]
}

/// The token item `i` carries: unique, and no other's substring.
fn token_of(i: usize) -> String {
    format!("tok{i:03}Z")
}

impl Item {
    /// Whether an upstream could read this item as the configured source.
    fn carries(&self) -> bool {
        match self {
            Item::Authorization { scheme, .. } => BEARER.contains(scheme),
            Item::ApiToken { underscore, .. } => !underscore,
            Item::Query { name, .. } => TOKEN_PARAMS.contains(name),
            Item::Cookie { name, .. } => TOKEN_COOKIES.contains(name),
        }
    }

    fn val(&self) -> Val {
        match self {
            Item::Authorization { val, .. }
            | Item::ApiToken { val, .. }
            | Item::Query { val, .. }
            | Item::Cookie { val, .. } => *val,
        }
    }
}

/// A generated request: its headers, its query (as `(separator, pair)`
/// parts), and the items it was made of.
struct Req {
    headers: HeaderMap,
    query: Vec<(&'static str, String)>,
    cookies: [Vec<(&'static str, String)>; 2],
}

fn render(parts: &[(&'static str, String)], trim_first_sep: bool) -> String {
    let mut out = String::new();
    for (i, (sep, pair)) in parts.iter().enumerate() {
        if i > 0 || !trim_first_sep {
            out.push_str(sep);
        }
        out.push_str(pair);
    }
    out
}

fn build(items: &[Item]) -> Req {
    let mut headers = HeaderMap::new();
    let mut query = Vec::new();
    let mut cookies: [Vec<(&'static str, String)>; 2] = [Vec::new(), Vec::new()];
    for (i, item) in items.iter().enumerate() {
        let t = token_of(i);
        match item {
            Item::Authorization { scheme, val } => {
                let v = match val {
                    Val::Token => format!("{scheme} {t}"),
                    Val::Empty => format!("{scheme} "),
                    Val::Bare => scheme.to_string(),
                };
                headers.append(header::AUTHORIZATION, HeaderValue::from_str(&v).unwrap());
            }
            Item::ApiToken { underscore, val } => {
                let name = if *underscore {
                    "x_api_token"
                } else {
                    "x-api-token"
                };
                let v = match val {
                    Val::Token => t,
                    Val::Empty | Val::Bare => String::new(),
                };
                headers.append(
                    HeaderName::from_static(name),
                    HeaderValue::from_str(&v).unwrap(),
                );
            }
            Item::Query {
                sep,
                name,
                val,
                encoded,
            } => {
                let v = if *encoded {
                    format!("%74{}", &t[1..])
                } else {
                    t
                };
                let pair = match val {
                    Val::Token => format!("{name}={v}"),
                    Val::Empty => format!("{name}="),
                    Val::Bare => name.to_string(),
                };
                query.push((*sep, pair));
            }
            Item::Cookie {
                field,
                sep,
                name,
                val,
                quoted,
            } => {
                let v = if *quoted { format!("\"{t}\"") } else { t };
                let pair = match val {
                    Val::Token => format!("{name}={v}"),
                    Val::Empty => format!("{name}="),
                    Val::Bare => name.to_string(),
                };
                cookies[*field].push((*sep, pair));
            }
        }
    }
    for field in &cookies {
        if !field.is_empty() {
            let v = render(field, true);
            headers.append(header::COOKIE, HeaderValue::from_str(&v).unwrap());
        }
    }
    Req {
        headers,
        query,
        cookies,
    }
}

/// Percent-decodes `%XX` and `+`, as an upstream reads a name.
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(v) => {
                    out.push(v);
                    i += 3;
                    continue;
                }
                Err(_) => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).to_ascii_lowercase()
}

/// Names in a query or cookie string, read as the most lenient upstream
/// reads them: split on every separator it might use, trimmed, decoded,
/// lower-cased.
fn names(s: &str, seps: &[char]) -> Vec<String> {
    s.split(seps)
        .filter(|p| !p.trim().is_empty())
        .map(|p| decode(p.split('=').next().unwrap_or("").trim()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn one_credential_or_a_refusal_and_nothing_else_goes_upstream(
        items in prop::collection::vec(item(), 0..7),
        forward in any::<bool>(),
    ) {
        let config = config(forward);
        let sources = &config.providers[0].token_sources;
        let req = build(&items);
        let query = (!req.query.is_empty()).then(|| render(&req.query, true));
        let got = extract(sources, &req.headers, query.as_deref());

        let carriers: Vec<usize> = (0..items.len()).filter(|i| items[*i].carries()).collect();
        let credential = match (carriers.as_slice(), got) {
            ([_, _, ..], Err(GateError::BadRequest(why))) => {
                prop_assert!(!why.contains("ok0"), "{why}");
                return Ok(());
            }
            ([], Err(GateError::Auth(AuthFailure::MissingToken))) => return Ok(()),
            ([one], Err(GateError::Auth(AuthFailure::MissingToken)))
                if !matches!(items[*one].val(), Val::Token) => return Ok(()),
            ([one], Ok(c)) if matches!(items[*one].val(), Val::Token) => {
                let expected = token_of(*one);
                prop_assert_eq!(c.token.as_ref(), expected.as_str());
                (*one, c)
            }
            (carriers, got) => {
                return Err(TestCaseError::fail(format!(
                    "carriers {carriers:?} gave {got:?}\n{items:?}"
                )));
            }
        };
        let (one, credential) = credential;
        let verified = token_of(one);

        // What would go upstream.
        let request_id = RequestId::fresh();
        let seen = Seen {
            client: IpAddr::from([127, 0, 0, 1]),
            proto: "http",
            host: None,
            upstream_host: None,
            request_id: &request_id,
        };
        let forwarded_token = forward.then_some(credential.token.as_ref());
        let mut rewrite = Rewrite::new(&config, None, forwarded_token, Some(&seen));
        rewrite.drop_credential(sources, &credential);
        let forwarded_query = credential.forwarded_query(query.as_deref());
        let mut headers = req.headers.clone();
        rewrite.apply(&mut headers);

        // The query: less the one that carried the token, byte for byte.
        let expected_query = match &items[one] {
            Item::Query { .. } => {
                let k = req.query.iter().position(|(_, p)| p.contains(&verified[1..])).unwrap();
                let mut parts = req.query.clone();
                let (sep, _) = parts.remove(k);
                if k > 0 && k < parts.len() {
                    parts[k].0 = sep;
                }
                (!parts.is_empty()).then(|| render(&parts, true))
            }
            _ => query.clone(),
        };
        prop_assert_eq!(&forwarded_query, &expected_query);
        let fq = forwarded_query.unwrap_or_default();
        prop_assert!(!names(&fq, &['&', ';']).iter().any(|n| n == "access_token"), "{}", fq);

        // The headers: no token source, no token cookie, the other cookies kept.
        prop_assert!(headers.get("x-api-token").is_none());
        prop_assert!(headers.get("x_api_token").is_none());
        let auth: Vec<_> = headers.get_all(header::AUTHORIZATION).iter().collect();
        let bearer = format!("Bearer {verified}");
        if forward {
            prop_assert_eq!(auth, vec![bearer.as_str()]);
        } else {
            prop_assert!(auth.is_empty());
        }
        let cookie: Vec<_> = headers.get_all(header::COOKIE).iter().collect();
        prop_assert!(cookie.len() <= 1);
        let cookie = cookie.first().map(|c| c.to_str().unwrap().to_string()).unwrap_or_default();
        prop_assert!(!names(&cookie, &[';', ',']).iter().any(|n| n == "session"), "{}", cookie);
        let others: Vec<String> = req.cookies.iter().flatten()
            .map(|(_, p)| p.trim().to_string())
            .filter(|p| !p.contains(&verified[1..]))
            .collect();
        let left: Vec<String> = cookie.split([';', ',']).map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty()).collect();
        prop_assert_eq!(left, others);

        // No credential anywhere (any spelling of a source, any scheme in
        // `Authorization`), and the verified one only in `Authorization`.
        let mut everything = fq.clone();
        for (name, value) in &headers {
            if name != header::AUTHORIZATION {
                everything.push_str(&String::from_utf8_lossy(value.as_bytes()));
            }
        }
        let credential_like = |item: &Item| {
            item.carries() || matches!(item, Item::Authorization { .. } | Item::ApiToken { .. })
        };
        for i in (0..items.len()).filter(|i| credential_like(&items[*i])) {
            let t = token_of(i);
            prop_assert!(!everything.contains(&t[1..]), "{} in {}", t, everything);
        }
    }
}

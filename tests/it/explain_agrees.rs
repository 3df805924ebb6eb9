//! `explain` and the gateway cannot disagree: for generated requests and
//! tokens over every shipped config, the verdict `explain` prints (status
//! and reason) is the one the running gateway answers over a real socket.

use std::path::Path;
use std::sync::Arc;

use crate::support::*;
use http::{Method, Request, header};
use idp_gate::config::expand_str;
use idp_gate::explain::{ExplainRequest, explain};
use jsonwebtoken::Algorithm;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};
use serde_json::json;

/// A shipped config, made to run here: its variables filled with
/// plausible values, its provider pointed at `jwks`, every upstream at
/// `echo`, its listeners on free loopback ports.
fn shipped(file: &str, jwks: &JwksServer, echo: &Echo) -> String {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap();
    // Expanded value by value, as the gateway does (the comments, which
    // mention `${VAR}`, are not values).
    let mut v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    expand_values(&mut v, file);
    let map = v.as_mapping_mut().unwrap();
    let s = |x: &str| serde_yaml::Value::String(x.into());
    map.insert(s("listen"), s("127.0.0.1:0"));
    map.insert(
        s("admin"),
        serde_yaml::from_str("{listen: '127.0.0.1:0'}").unwrap(),
    );
    map.insert(s("shutdownGraceSeconds"), serde_yaml::Value::from(1));
    map.remove(s("tls"));
    let idp = map
        .get_mut(s("idp"))
        .and_then(|i| i.as_mapping_mut())
        .unwrap();
    idp.insert(s("issuer"), s(&jwks.issuer()));
    idp.insert(s("jwksEndpoint"), s(&jwks.jwks_url()));
    idp.insert(
        s("audiences"),
        serde_yaml::from_str(&format!("['{AUDIENCE}']")).unwrap(),
    );
    idp.insert(s("algorithms"), serde_yaml::from_str("[RS256]").unwrap());
    idp.remove(s("jwks"));
    idp.remove(s("allowInsecureHttp"));
    for (_, u) in map
        .get_mut(s("upstreams"))
        .and_then(|u| u.as_mapping_mut())
        .unwrap()
        .iter_mut()
    {
        let u = u.as_mapping_mut().unwrap();
        u.insert(s("url"), s(&echo.url()));
        u.remove(s("caFile"));
        u.remove(s("protocol"));
    }
    serde_yaml::to_string(&v).unwrap()
}

fn expand_values(v: &mut serde_yaml::Value, file: &str) {
    match v {
        serde_yaml::Value::String(s) => {
            *s = expand_str(s, &|name| match name {
                "AUTH0_DOMAIN" => Some("tenant.example.com".into()),
                "IDP_CLIENT_ID" => Some("client-id".into()),
                // Overwritten below; only needs to expand.
                "IDP_ISSUER" | "IDP_JWKS_ENDPOINT" => Some("https://idp.example.com/".into()),
                _ if name.ends_with("PORT") => Some("1".into()),
                _ => None,
            })
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        }
        serde_yaml::Value::Sequence(items) => {
            for i in items {
                expand_values(i, file);
            }
        }
        serde_yaml::Value::Mapping(m) => {
            let entries: Vec<_> = std::mem::take(m).into_iter().collect();
            for (mut k, mut val) in entries {
                expand_values(&mut k, file);
                expand_values(&mut val, file);
                m.insert(k, val);
            }
        }
        _ => {}
    }
}

/// Route paths of a config, to aim generated requests at.
fn route_paths(yaml: &str) -> Vec<String> {
    let v: serde_yaml::Value = serde_yaml::from_str(yaml).unwrap();
    let mut out = vec!["/".to_string(), "/nowhere".to_string()];
    for r in v["routes"].as_sequence().unwrap() {
        for key in ["path", "pathPrefix"] {
            if let Some(p) = r["match"][key].as_str() {
                out.push(p.to_string());
            }
        }
    }
    out
}

#[derive(Debug, Clone)]
enum Token {
    None,
    Valid {
        org: Option<&'static str>,
        scopes: Vec<&'static str>,
    },
    Expired,
    WrongAudience,
    Forged,
}

fn token() -> impl Strategy<Value = Token> {
    let org = prop::option::of(prop::sample::select(vec![
        "org_abc123",
        "org_xyz789",
        "org_other",
    ]));
    let scopes = prop::sample::subsequence(
        vec![
            "apk:api_create",
            "apk:api_view",
            "orders:write",
            "orders:read",
            "admin",
        ],
        0..4,
    );
    prop_oneof![
        Just(Token::None),
        (org, scopes).prop_map(|(org, scopes)| Token::Valid { org, scopes }),
        Just(Token::Expired),
        Just(Token::WrongAudience),
        Just(Token::Forged),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    method: Method,
    path: String,
    host: &'static str,
    token: Token,
}

fn case(paths: Vec<String>) -> impl Strategy<Value = Case> {
    let suffix = prop::sample::select(vec![
        "",
        "/x",
        "//y",
        "/%61pis",
        "/a;p=1",
        "/../z",
        "/%2e%2e/x",
        "/a%2Fb",
        "?organization=org1",
        "?organization=org2&x=1",
        "/x?organization=org_abc123",
    ]);
    (
        prop::sample::select(vec![Method::GET, Method::POST, Method::PUT, Method::DELETE]),
        prop::sample::select(paths),
        suffix,
        prop::sample::select(vec!["apk.example.com", "other.example.com"]),
        token(),
    )
        .prop_map(|(method, path, suffix, host, token)| {
            let base = path.trim_end_matches('/');
            Case {
                method,
                path: if suffix.starts_with('?') || suffix.is_empty() {
                    format!("{}{suffix}", if base.is_empty() { "/" } else { base })
                } else {
                    format!("{base}{suffix}")
                },
                host,
                token,
            }
        })
}

fn mint(token: &Token, ring: &Arc<idp_gate::demo::keys::KeyRing>, issuer: &str) -> Option<String> {
    let forged = crate::support::ring(Algorithm::RS256);
    Some(match token {
        Token::None => return None,
        Token::Valid { org, scopes } => {
            let mut c = claims(issuer, org.unwrap_or(""), scopes);
            if org.is_none() {
                c.as_object_mut().unwrap().remove("org_id");
            }
            c["email_verified"] = json!(true);
            sign(&ring.active(), &c)
        }
        Token::Expired => {
            let mut c = claims(issuer, "org_abc123", &[]);
            c["exp"] = json!(1_000);
            sign(&ring.active(), &c)
        }
        Token::WrongAudience => {
            let mut c = claims(issuer, "org_abc123", &[]);
            c["aud"] = json!("another-api");
            sign(&ring.active(), &c)
        }
        Token::Forged => sign(&forged.active(), &claims(issuer, "org_abc123", &[])),
    })
}

#[test]
fn explain_and_the_gateway_agree_on_every_shipped_config() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for file in [
        "config/example.yaml",
        "config/demo.yaml",
        "config/apk-auth0.yaml",
        "config/compose.yaml",
    ] {
        let (ring, jwks, echo, gate, yaml) = rt.block_on(async {
            let ring = ring(Algorithm::RS256);
            let jwks = JwksServer::with_ring(ring.clone()).await;
            let echo = Echo::start().await;
            let yaml = shipped(file, &jwks, &echo);
            let gate = Gate::start_ready(&yaml).await;
            (ring, jwks, echo, gate, yaml)
        });
        let config = parse_config(&yaml);
        let mut runner = TestRunner::new(RunnerConfig {
            cases: 40,
            failure_persistence: None,
            ..RunnerConfig::default()
        });
        let result = runner.run(&case(route_paths(&yaml)), |c| {
            let token = mint(&c.token, &ring, &jwks.issuer());
            let (gateway, explained) = rt.block_on(async {
                let mut req = Request::builder()
                    .method(c.method.clone())
                    .uri(gate.url(&c.path))
                    .header(header::HOST, c.host);
                if let Some(t) = &token {
                    req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
                }
                let r = gate.send(req.body(empty()).unwrap()).await;
                let explained = explain(
                    config.clone(),
                    ExplainRequest {
                        token: token.as_deref(),
                        method: c.method.clone(),
                        path: &c.path,
                        host: Some(c.host),
                    },
                )
                .await;
                (r, explained)
            });
            let (status, reason) = match &explained.refusal {
                None => (200, None),
                Some(e) => {
                    let body = rt.block_on(async {
                        use http_body_util::BodyExt as _;
                        e.to_response("x")
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                    });
                    let body: serde_json::Value = body
                        .ok()
                        .and_then(|b| serde_json::from_slice(&b).ok())
                        .unwrap_or_default();
                    (
                        e.status().as_u16(),
                        body["error_description"].as_str().map(str::to_string),
                    )
                }
            };
            prop_assert_eq!(
                gateway.status.as_u16(),
                status,
                "{:?}\n{}",
                c,
                explained.report
            );
            if let Some(reason) = reason {
                prop_assert_eq!(
                    gateway.json()["error_description"]
                        .as_str()
                        .map(str::to_string),
                    Some(reason),
                    "{:?}\n{}",
                    c,
                    explained.report
                );
            }
            Ok(())
        });
        if let Err(e) = result {
            panic!("{file}: {e}");
        }
        drop((gate, echo));
    }
}

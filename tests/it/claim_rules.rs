//! `allow.claims` over real sockets: a value matches any listed value, an
//! array claim matches when any element does, names are whole (Auth0's
//! namespaced claims) or JSON Pointers, and a mismatch is 403
//! `claim_mismatch`.

use crate::support::*;
use http::{Request, header};
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

const ROUTES: &str = r#"routes:
  - name: deploy
    match: { pathPrefix: /deploy }
    allow:
      claims:
        "https://example.com/roles": [admin, deployer]
        "/app_metadata/tier": gold
    upstream: echo
  - name: numbers
    match: { pathPrefix: /numbers }
    allow:
      claims:
        level: [3, true]
    upstream: echo
"#;

/// `GET path` with a token of `org_abc` that also carries `extra`; and
/// the token.
fn request(w: &World, path: &str, extra: Value) -> (Request<ReqBody>, String) {
    let mut c = w.claims("org_abc", &[]);
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    let token = w.sign(&c);
    let req = Request::get(w.gate.url(path))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(empty())
        .unwrap();
    (req, token)
}

async fn call(w: &World, path: &str, extra: Value) -> Resp {
    w.gate.send(request(w, path, extra).0).await
}

#[tokio::test]
async fn claim_rules_admit_listed_values_and_refuse_the_rest() {
    let w = World::start(Algorithm::RS256, "", ROUTES).await;
    let gold = json!({"app_metadata": {"tier": "gold"}});
    for roles in [json!("admin"), json!(["viewer", "deployer"])] {
        let mut extra = gold.clone();
        extra["https://example.com/roles"] = roles.clone();
        let r = call(&w, "/deploy/x", extra).await;
        assert_eq!(r.status, 200, "{roles}: {}", r.text());
    }
    for (roles, tier) in [
        (json!("viewer"), json!("gold")),
        (json!(["viewer"]), json!("gold")),
        (json!("admin"), json!("silver")),
        (json!("admin"), Value::Null),
        (Value::Null, json!("gold")),
    ] {
        let mut extra = json!({});
        if !roles.is_null() {
            extra["https://example.com/roles"] = roles.clone();
        }
        if !tier.is_null() {
            extra["app_metadata"] = json!({ "tier": tier });
        }
        // 403 `claim_mismatch` with `insufficient_scope`, counted.
        let (req, token) = request(&w, "/deploy/x", extra);
        w.gate
            .expect_refusal(req, 403, "claim_mismatch", Some(&token))
            .await;
    }
    assert_eq!(call(&w, "/numbers", json!({"level": 3})).await.status, 200);
    assert_eq!(
        call(&w, "/numbers", json!({"level": true})).await.status,
        200
    );
    assert_eq!(call(&w, "/numbers", json!({"level": 4})).await.status, 403);
    assert_eq!(
        call(&w, "/numbers", json!({"level": "3"})).await.status,
        200
    );
}

#[test]
fn bad_claim_rules_are_config_errors_with_their_path() {
    let yaml = "idp: { issuer: 'https://i/', audiences: [a] }\nupstreams: { u: { url: 'http://127.0.0.1:1' } }\nroutes:\n  - name: r\n    match: { pathPrefix: / }\n    allow:\n      claims:\n        roles: []\n        tier: { nested: 1 }\n    upstream: u\n";
    let err = idp_gate::config::Config::from_yaml(yaml, std::path::Path::new("t.yaml"), &|_| None)
        .expect_err("refused");
    let text = err.to_string();
    assert!(text.contains("routes[0].allow.claims.roles"), "{text}");
    assert!(text.contains("routes[0].allow.claims.tier"), "{text}");
}

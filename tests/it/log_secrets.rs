//! Nothing secret in the logs, even at `RUST_LOG=trace`: the real binary
//! serves a mix of accepted and refused requests over HTTP/1.1 and HTTP/2,
//! and its whole output is searched for every token, every signature and
//! the client secret.

use std::time::Duration;

use http::{Request, header};
use jsonwebtoken::Algorithm;
use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_signature_or_secret_is_ever_logged() {
    let ring = ring(Algorithm::RS256);
    let jwks = JwksServer::with_ring(ring.clone()).await;
    let echo = Echo::start().await;
    let yaml = format!(
        r#"shutdownGraceSeconds: 2
idp:
  issuer: "{issuer}"
  jwksEndpoint: "{jwks_url}"
  audiences: ["{AUDIENCE}"]
  algorithms: [RS256, HS256]
  clientSecret: "${{SECRET_UNDER_TEST}}"
  tokenSources:
    - header: Authorization
    - cookie: session
    - query: access_token
upstreams:
  echo: {{ url: "{echo}" }}
routes:
  - name: scoped
    match: {{ pathPrefix: /scoped }}
    allow: {{ scopes: [admin] }}
    upstream: echo
  - name: api
    match: {{ pathPrefix: /api }}
    upstream: echo
"#,
        issuer = jwks.issuer(),
        jwks_url = jwks.jwks_url(),
        echo = echo.url(),
    );
    let mut gate = GateProcess::config(&yaml)
        .env("RUST_LOG", "trace")
        .env("SECRET_UNDER_TEST", CLIENT_SECRET)
        .ready()
        .await;

    let issuer = jwks.issuer();
    let good = sign(&ring.active(), &claims(&issuer, "org_abc", &[]));
    let mut expired_claims = claims(&issuer, "org_abc", &[]);
    expired_claims["exp"] = json!(1_000);
    let expired = sign(&ring.active(), &expired_claims);
    let stranger = crate::support::ring(Algorithm::RS256);
    let forged = sign(&stranger.active(), &claims(&issuer, "org_abc", &[]));
    let mut wrong_aud = claims(&issuer, "org_abc", &[]);
    wrong_aud["aud"] = json!("another-api");
    let wrong_aud = sign(&ring.active(), &wrong_aud);
    let hs = sign_hs256_raw(
        CLIENT_SECRET.as_bytes(),
        &json!({"alg": "HS256", "typ": "JWT"}),
        &claims(&issuer, "org_abc", &[]),
    );
    let mut bad_sig = good.clone();
    bad_sig.truncate(bad_sig.len() - 4);
    bad_sig.push_str("AAAA");
    let tokens = [&good, &expired, &forged, &wrong_aud, &hs, &bad_sig];

    let mut statuses = Vec::new();
    for t in tokens {
        for path in ["/api/x", "/scoped/x"] {
            statuses.push(gate.get(path, Some(t)).await.status.as_u16());
        }
        // One source at a time: both at once are refused before either is read.
        let r = gate.get(&format!("/api/q?access_token={t}"), None).await;
        statuses.push(r.status.as_u16());
        let cookie = format!("session={t}");
        let r = gate.get_with("/api/q", &[("cookie", &cookie)]).await;
        statuses.push(r.status.as_u16());
        let bearer = format!("Bearer {t}");
        let r = h2_get(
            gate.proxy,
            &gate.url("/api/h2"),
            &[("authorization", &bearer)],
        )
        .await;
        statuses.push(r.status.as_u16());
    }
    // Two Authorization headers, one of them a Basic credential.
    let r = gate
        .send(
            Request::get(gate.url("/api/x"))
                .header(header::AUTHORIZATION, format!("Bearer {good}"))
                .header(
                    header::AUTHORIZATION,
                    "Basic c2VjcmV0LXVzZXI6c2VjcmV0LXBhc3M=",
                )
                .body(empty())
                .unwrap(),
        )
        .await;
    statuses.push(r.status.as_u16());
    for s in [200, 400, 401, 403] {
        assert!(statuses.contains(&s), "no {s} in {statuses:?}");
    }

    let (status, _) = gate.proc.terminate(Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}");
    let text = [gate.proc.stdout(), gate.proc.stderr()].concat().join("\n");
    assert!(
        text.lines().count() > 50,
        "trace logging produced too little to be a real check:\n{text}"
    );
    assert!(text.contains("\"access\""), "no access lines:\n{text}");
    let mut secrets: Vec<(String, String)> = vec![
        ("client secret".into(), CLIENT_SECRET.into()),
        (
            "Basic credential".into(),
            "c2VjcmV0LXVzZXI6c2VjcmV0LXBhc3M=".into(),
        ),
    ];
    for t in tokens {
        secrets.push(("token".into(), t.to_string()));
        if let Some(sig) = t.rsplit('.').next() {
            secrets.push(("signature".into(), sig.to_string()));
        }
        // The claims part alone carries the identity and is a replay aid.
        if let Some(payload) = t.split('.').nth(1) {
            secrets.push(("claims part".into(), payload.to_string()));
        }
    }
    for (what, secret) in secrets {
        if let Some(line) = text.lines().find(|l| l.contains(secret.as_str())) {
            panic!("a {what} appears in the output: {line}");
        }
    }
}

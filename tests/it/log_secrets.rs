//! Nothing secret in the logs, even at `RUST_LOG=trace`: the real binary
//! serves a mix of accepted and refused requests over HTTP/1.1 and HTTP/2,
//! and its whole output is searched for every token, every signature and
//! the client secret.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::*;
use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::Algorithm;
use serde_json::json;
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_idp-gate");

async fn h2_get(addr: SocketAddr, path: &str, token: &str) -> u16 {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::get(format!("http://{addr}{path}"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_signature_or_secret_is_ever_logged() {
    let ring = ring(Algorithm::RS256);
    let jwks = JwksServer::with_ring(ring.clone()).await;
    let echo = Echo::start().await;
    let (proxy, admin) = (free_addr(), free_addr());
    let dir = std::env::temp_dir().join(format!("idp-gate-logs-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let yaml = format!(
        r#"listen: "{proxy}"
admin: {{ listen: "{admin}" }}
shutdownGraceSeconds: 2
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
    let config = dir.join("gate.yaml");
    std::fs::write(&config, yaml).unwrap();
    let log = dir.join("out.log");
    let out = std::fs::File::create(&log).unwrap();
    let mut child = tokio::process::Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "trace")
        .env("SECRET_UNDER_TEST", CLIENT_SECRET)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn idp-gate");

    let c = client();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let req = Request::get(format!("http://{admin}/readyz"))
            .body(empty())
            .unwrap();
        if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(2), c.request(req)).await {
            if r.status() == 200 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

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
    let hs = {
        let header = json!({"alg": "HS256", "typ": "JWT"});
        let message = format!(
            "{}.{}",
            b64_json(&header),
            b64_json(&claims(&issuer, "org_abc", &[]))
        );
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, CLIENT_SECRET.as_bytes());
        let tag = aws_lc_rs::hmac::sign(&key, message.as_bytes());
        format!("{message}.{}", b64(tag.as_ref()))
    };
    let mut bad_sig = good.clone();
    bad_sig.truncate(bad_sig.len() - 4);
    bad_sig.push_str("AAAA");
    let tokens = [&good, &expired, &forged, &wrong_aud, &hs, &bad_sig];

    let base = format!("http://{proxy}");
    let mut statuses = Vec::new();
    for t in tokens {
        for path in ["/api/x", "/scoped/x"] {
            let r = send(
                &c,
                Request::get(format!("{base}{path}"))
                    .header(header::AUTHORIZATION, format!("Bearer {t}"))
                    .body(empty())
                    .unwrap(),
            )
            .await;
            statuses.push(r.status.as_u16());
        }
        // One source at a time: both at once are refused before either is read.
        let r = send(
            &c,
            Request::get(format!("{base}/api/q?access_token={t}"))
                .body(empty())
                .unwrap(),
        )
        .await;
        statuses.push(r.status.as_u16());
        let r = send(
            &c,
            Request::get(format!("{base}/api/q"))
                .header(header::COOKIE, format!("session={t}"))
                .body(empty())
                .unwrap(),
        )
        .await;
        statuses.push(r.status.as_u16());
        statuses.push(h2_get(proxy, "/api/h2", t).await);
    }
    // Two Authorization headers, one of them a Basic credential.
    let r = send(
        &c,
        Request::get(format!("{base}/api/x"))
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

    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
    let text = std::fs::read_to_string(&log).unwrap();
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
    let _ = std::fs::remove_dir_all(dir);
}

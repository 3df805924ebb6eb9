//! TLS termination on the proxy listener, with a certificate made here and
//! a rustls client that trusts only it.

use std::path::Path;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use idp_gate::config::Config;
use tokio::net::TcpListener;

#[tokio::test]
async fn terminates_tls_and_forwards_as_https() {
    idp_gate::internals::tls::install_crypto_provider();
    let dir = std::env::temp_dir().join(format!("idp-gate-tls-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_file = dir.join("tls.crt");
    let key_file = dir.join("tls.key");
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();

    let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    tokio::spawn(idp_gate::demo::echo::serve(echo, std::future::pending()));

    let yaml = format!(
        "listen: 127.0.0.1:0\nadmin: {{listen: 127.0.0.1:0}}\ntls: {{certFile: '{}', keyFile: '{}'}}\n\
         upstreams: {{echo: {{url: 'http://{echo_addr}'}}}}\n\
         routes: [{{name: public, match: {{pathPrefix: /}}, auth: none, upstream: echo}}]\n",
        cert_file.display(),
        key_file.display()
    );
    let config = Config::from_yaml(&yaml, Path::new("tls.yaml"), &|_| None).unwrap();
    let running = idp_gate::app::start(config).await.unwrap();
    let port = running.proxy_addr.port();

    let tls = idp_gate::internals::tls::client_config(Some(&cert_file)).unwrap();
    // Only HTTP/1.1 offered by ALPN: served as HTTP/1.1.
    let http1_only = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls.clone())
        .https_only()
        .enable_http1()
        .build();
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(http1_only);
    let req = Request::get(format!("https://localhost:{port}/hello"))
        .body(Empty::new())
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_11);

    // Both offered: the gateway chooses HTTP/2.
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .enable_http2()
        .build();
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
    let req = Request::get(format!("https://localhost:{port}/hello?x=1"))
        .body(Empty::new())
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let echo: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echo["path"], "/hello?x=1", "{echo}");
    let proto = &echo["headers"]["x-forwarded-proto"];
    assert!(proto == "https" || proto[0] == "https", "{echo}");

    // Plain HTTP on the TLS port gets no answer from the gateway.
    let plain: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let req = Request::get(format!("http://127.0.0.1:{port}/hello"))
        .body(Empty::new())
        .unwrap();
    assert!(plain.request(req).await.is_err());

    running.shutdown();
    running.wait().await;
    let _ = std::fs::remove_dir_all(dir);
}

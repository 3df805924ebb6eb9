//! TLS termination on the proxy listener, with a certificate made here and
//! a rustls client that trusts only it.

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::support::*;

#[tokio::test]
async fn terminates_tls_and_forwards_as_https() {
    let dir = TempDir::new("tls");
    let (cert_file, key_file) = SelfSigned::new().write(&dir);
    let echo = Echo::start().await;
    let yaml = format!(
        "tls: {{certFile: '{}', keyFile: '{}'}}\n\
         upstreams: {{echo: {{url: '{}'}}}}\n\
         routes: [{{name: public, match: {{pathPrefix: /}}, auth: none, upstream: echo}}]\n",
        cert_file.display(),
        key_file.display(),
        echo.url()
    );
    let gate = Gate::start(&yaml).await;
    let port = gate.proxy.port();

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

    gate.shutdown().await;
}

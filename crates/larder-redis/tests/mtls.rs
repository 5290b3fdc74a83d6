//! TLS client certificates (mutual TLS) against a redis-server started with
//! `tls-auth-clients yes`: without a certificate the server refuses the
//! client; with one signed by its CA the client works.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::time::Duration;

use larder_core::Backend;
use larder_redis::RedisBackend;
use larder_testkit::redis::RedisServer;

fn base_url(server: &RedisServer) -> String {
    let ca = server.ca_cert_path().expect("a TLS server has a CA");
    format!(
        "{}?tls_ca={}&connect_timeout=2s&command_timeout=2s&reconnect_attempts=1",
        server.url(),
        ca.display()
    )
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused_and_one_with_it_works() {
    let server = RedisServer::start_mtls();
    let url = base_url(&server);

    // No client certificate: the handshake fails, the backend never serves.
    let refused = async {
        match RedisBackend::open(&url, 1).await {
            Err(e) => Err(e),
            Ok(backend) => backend.get("larder:v1:k").await.map(|_| ()),
        }
    };
    let outcome = tokio::time::timeout(Duration::from_secs(20), refused)
        .await
        .expect("the refusal comes back in time");
    let err = outcome.expect_err("a client without a certificate must be refused");
    assert!(err.is_transient() || err.kind() == "backend", "{err}");
    // The server says why: the client sent no certificate.
    let log = server.log_tail(20);
    assert!(log.contains("certificate"), "{err}\n{log}");

    // With the certificate signed by the server's CA: it works.
    let cert = server.client_cert_path().unwrap().display().to_string();
    let key = server.client_key_path().unwrap().display().to_string();
    let with_cert = format!("{url}&tls_cert={cert}&tls_key={key}");
    let backend = RedisBackend::open(&with_cert, 1).await.unwrap();
    backend
        .set(
            "larder:v1:k",
            bytes::Bytes::from_static(b"v"),
            &larder_core::WriteOptions::new(),
        )
        .await
        .unwrap();
    assert_eq!(
        backend.get("larder:v1:k").await.unwrap().as_deref(),
        Some(&b"v"[..])
    );
    assert_eq!(
        server.cli(&["GET", "larder:v1:k"]),
        "v",
        "the server has it"
    );
    // The key path is in the config, its contents never are.
    let shown = format!("{:?}", backend.config());
    assert!(
        shown.contains("client.key") && !shown.contains("PRIVATE KEY"),
        "{shown}"
    );
    backend.close().await.unwrap();
}

#[test]
fn a_certificate_needs_its_key_and_tls() {
    let parse = |url: &str| {
        let url = larder_core::url::BackendUrl::parse(url).unwrap();
        larder_redis::RedisConfig::from_url(&url, 1)
    };
    let err = parse("rediss://h?tls_cert=/c.pem").unwrap_err().to_string();
    assert!(err.contains("tls_key"), "{err}");
    let err = parse("redis://h?tls_cert=/c.pem&tls_key=/k.pem")
        .unwrap_err()
        .to_string();
    assert!(err.contains("rediss://"), "{err}");
}

//! The API under a hostile client, on a running `serve`: revoked tokens'
//! live streams end, streams and connections are capped, a connection that
//! never finishes its headers is closed, oversized requests are refused, and
//! shutdown does not wait for open streams. Each prints what it measured.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;
use jointops::access::Role;
use jointops::store::AccessStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const OP: &str = "OP-1";

fn quiet_hub(dir: &std::path::Path) -> jointops::config::HubSettings {
    hub(dir, vec![operation(OP, "2023-10-09T00:00:00Z", "2023-10-16T00:00:00Z", None)])
}

async fn open_stream(base: &str, token: &str) -> reqwest::Response {
    reqwest::Client::new().get(format!("{base}/api/v1/operations/{OP}/stream")).bearer_auth(token).send().await.unwrap()
}

/// Reads the stream until it ends; panics if it is still open after `within`.
async fn until_ended(res: reqwest::Response, within: Duration) -> Duration {
    let start = Instant::now();
    let mut body = Box::pin(res.bytes_stream());
    loop {
        match tokio::time::timeout(within.saturating_sub(start.elapsed()), body.next()).await {
            Err(_) => panic!("the stream was still open after {within:?}"),
            Ok(None) | Ok(Some(Err(_))) => return start.elapsed(),
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// Regression: a live stream checked its token once, at the start, and
/// streamed on for ever after the token was revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_tokens_live_stream_ends_within_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let hub = quiet_hub(dir.path());
    let api = RunningApi::start(&hub).await;
    let (token, id) = issue_token(&hub, Role::Coordinator, None);
    let res = open_stream(&api.base, &token).await;
    assert_eq!(res.status(), 200);
    let revoked_at = Instant::now();
    assert!(records(&hub).revoke_token(&id, 1).unwrap());
    let open_for = until_ended(res, Duration::from_secs(10)).await;
    println!("revoked stream stayed open {:?} after revocation", revoked_at.elapsed().max(open_for));
    assert!(open_for < Duration::from_secs(5), "{open_for:?}");
    api.stop().await;
}

/// Regression: `axum::serve` sets no timer, so hyper's header timeout was
/// off and a client that sent half a request held its connection for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_finishes_its_headers_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = quiet_hub(dir.path());
    hub.api.header_timeout_ms = 1000;
    let api = RunningApi::start(&hub).await;
    let addr = api.base.trim_start_matches("http://").to_string();
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let start = Instant::now();
    tcp.write_all(b"GET /api/v1/operations HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    let open_for = start.elapsed();
    println!("slow-header connection closed after {open_for:?} (header_timeout_ms = 1000)");
    assert!(read.is_ok(), "the half-sent request's connection was still open after 10 s");
    assert!(open_for < Duration::from_secs(3), "{open_for:?}");

    // The timeout is for headers only: a live stream outlives it.
    let (token, _) = issue_token(&hub, Role::Coordinator, None);
    let res = open_stream(&api.base, &token).await;
    let mut body = Box::pin(res.bytes_stream());
    assert!(body.next().await.is_some_and(|c| c.is_ok()), "the first event");
    // Open past the header timeout: whatever comes (the status every 2 s)
    // comes on a stream that has not ended.
    let until = tokio::time::Instant::now() + Duration::from_millis(2500);
    while let Ok(next) = tokio::time::timeout_at(until, body.next()).await {
        assert!(next.is_some_and(|c| c.is_ok()), "the stream ended within 2.5 s");
    }
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_streams_are_capped_per_token_and_in_all() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = quiet_hub(dir.path());
    (hub.api.max_streams, hub.api.max_streams_per_token) = (3, 2);
    let api = RunningApi::start(&hub).await;
    let (a, _) = issue_token(&hub, Role::Coordinator, None);
    let (b, _) = issue_token(&hub, Role::Coordinator, None);
    let (c, _) = issue_token(&hub, Role::Coordinator, None);
    let a1 = open_stream(&api.base, &a).await;
    let a2 = open_stream(&api.base, &a).await;
    assert_eq!((a1.status().as_u16(), a2.status().as_u16()), (200, 200));
    assert_eq!(open_stream(&api.base, &a).await.status(), 429, "per token");
    let b1 = open_stream(&api.base, &b).await;
    assert_eq!(b1.status(), 200);
    assert_eq!(open_stream(&api.base, &c).await.status(), 429, "in all");
    drop((a1, a2, b1));
    api.stop().await;
    let log = records(&hub).access_log(0).unwrap();
    assert_eq!(log.iter().filter(|e| e.status == 429).count(), 2, "refusals are logged");
}

/// Regression: graceful shutdown waited for every open response, and a
/// live stream never finishes, so `serve` never stopped while one was open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_open_streams() {
    let dir = tempfile::tempdir().unwrap();
    let hub = quiet_hub(dir.path());
    let api = RunningApi::start(&hub).await;
    let (token, _) = issue_token(&hub, Role::Coordinator, None);
    let res = open_stream(&api.base, &token).await;
    assert_eq!(res.status(), 200);
    let start = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), api.stop()).await.expect("serve stopped with a stream open");
    println!("serve stopped {:?} after the signal, with a stream open", start.elapsed());
    until_ended(res, Duration::from_secs(5)).await;
}

/// Connections are capped (the next client waits until one closes), and
/// requests are bounded: oversized headers get 431.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_and_request_sizes_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = quiet_hub(dir.path());
    hub.api.max_connections = 2;
    let api = RunningApi::start(&hub).await;
    let addr = api.base.trim_start_matches("http://").to_string();
    let healthz = format!("{}/healthz", api.base);
    let fresh = || reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let idle1 = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let idle2 = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let blocked = fresh().get(&healthz).timeout(Duration::from_millis(1500)).send().await;
    assert!(blocked.is_err(), "a third connection was served while two were open: {blocked:?}");
    drop(idle1);
    let served = fresh().get(&healthz).timeout(Duration::from_secs(10)).send().await.expect("served once one closed");
    assert_eq!(served.status(), 200);
    drop(idle2);

    let (token, _) = issue_token(&hub, Role::Coordinator, None);
    let res = fresh()
        .get(format!("{}/api/v1/operations", api.base))
        .bearer_auth(&token)
        .header("X-Justification", "j".repeat(40_000))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 431);
    api.stop().await;
}

/// A self-signed certificate for 127.0.0.1 from the openssl command line
/// (a needed part: without it this test fails, it does not skip).
fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=jointops-test", "-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE", "-addext", "extendedKeyUsage=serverAuth", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("the openssl command line, to make a test certificate");
    assert!(out.status.success(), "openssl: {}", String::from_utf8_lossy(&out.stderr));
    (cert, key)
}

/// With `[api] tls_cert` and `tls_key`, `serve` speaks HTTPS only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_speaks_tls_when_given_a_certificate() {
    use tokio_rustls::rustls::{self, pki_types::pem::PemObject, pki_types::CertificateDer};
    let dir = tempfile::tempdir().unwrap();
    let mut hub = quiet_hub(dir.path());
    let (cert, key) = self_signed(dir.path());
    (hub.api.tls_cert, hub.api.tls_key) = (Some(cert.clone()), Some(key));
    let api = RunningApi::start(&hub).await;
    let (token, _) = issue_token(&hub, Role::Coordinator, None);
    let addr = api.base.trim_start_matches("http://").to_string();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(&cert).unwrap()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake with the API");
    let request = format!(
        "GET /api/v1/operations HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), tls.read_to_string(&mut answer)).await.unwrap().ok();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"operations\""), "{answer}");

    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain =
        reqwest::Client::new().get(format!("{}/healthz", api.base)).timeout(Duration::from_secs(5)).send().await;
    assert!(plain.is_err(), "{plain:?}");
    api.stop().await;
}

/// Regression: every as-of request replayed the whole history in memory
/// (about 1 GiB for a million reports) at once, however many arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_of_recomputations_are_capped_so_a_burst_cannot_exhaust_memory() {
    let dir = tempfile::tempdir().unwrap();
    let op = jointops::loadgen::OPERATION;
    let mut hub = hub(dir.path(), vec![operation(op, "2023-10-01T00:00:00Z", "2023-11-01T00:00:00Z", None)]);
    hub.api.max_asof = 1;
    create_topics(&hub).await;
    send_events(&producer(&hub.kafka.bootstrap), &hub.kafka.topic, &jointops::loadgen::generate(30_000, 4)).await;
    let rollup = RunningRollup::start(&hub).await;
    wait_caught_up(&hub, Duration::from_secs(120)).await;
    rollup.stop().await;
    let api = RunningApi::start(&hub).await;
    let (token, _) = issue_token(&hub, Role::Coordinator, None);
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let url = format!("{}/api/v1/operations/{op}/totals?as_of={now}", api.base);
    let http = reqwest::Client::new();
    let burst = (0..6).map(|_| {
        let req = http.get(&url).bearer_auth(&token);
        async move {
            let res = req.send().await.unwrap();
            (res.status().as_u16(), res.text().await.unwrap())
        }
    });
    let answers = futures::future::join_all(burst).await;
    let ok: Vec<_> = answers.iter().filter(|(s, _)| *s == 200).collect();
    let refused = answers.iter().filter(|(s, _)| *s == 429).count();
    println!("burst of 6 as-of requests: {} computed, {refused} refused (429)", ok.len());
    assert!(!ok.is_empty() && refused >= 1 && ok.len() + refused == 6, "{answers:?}");
    // Once the burst is over, as-of figures are served again.
    let (status, _) = {
        let res = http.get(&url).bearer_auth(&token).send().await.unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    };
    assert_eq!(status, 200);
    api.stop().await;
}

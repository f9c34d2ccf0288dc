//! The coordinators' API on a running stack (real broker, rollup, `serve`):
//! every response checked against docs/openapi.json, access control by
//! role, as-of figures and diffs, the live stream, and the access log.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::openapi::{conforms, openapi};
use common::*;
use futures::StreamExt;
use jointops::access::Role;
use jointops::domain::{Engine, OperationTotals, OutcomeEvent, Totals};
use jointops::loadgen;
use jointops::store::AccessStore;
use serde_json::{json, Value};

const OP: &str = loadgen::OPERATION;
const T1: i64 = 1_704_067_200_000; // 2024-01-01T00:00:00Z: when the first batch reached the topic
const T2: i64 = 1_704_153_600_000; // 2024-01-02T00:00:00Z: the second

struct Client {
    http: reqwest::Client,
    base: String,
    doc: Value,
}

impl Client {
    /// GETs `path` (the OpenAPI template is `template`), checks conformance,
    /// and returns the status and body.
    async fn get(&self, template: &str, path: &str, token: Option<&str>, reason: Option<&str>) -> (u16, String) {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(r) = reason {
            req = req.header("X-Justification", r);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let content_type = res.headers()["content-type"].to_str().unwrap().to_string();
        assert_eq!(res.headers()["cache-control"], "no-store", "figures are never cached");
        let body = res.text().await.unwrap();
        conforms(&self.doc, "get", template, status, &content_type, &body);
        (status, body)
    }

    async fn json(&self, template: &str, path: &str, token: &str) -> Value {
        let (status, body) = self.get(template, path, Some(token), None).await;
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }
}

fn totals_json(t: &Totals) -> Value {
    Value::Object(t.iter().map(|(k, v)| (k.to_string(), json!(v))).collect())
}

fn reference(events: &[OutcomeEvent]) -> OperationTotals {
    let mut e = Engine::new();
    for ev in events {
        e.apply(ev.clone()).unwrap();
    }
    e.totals(OP).cloned().unwrap_or_default()
}

/// The next server-sent event's JSON data.
async fn next_event(
    body: &mut (impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    buf: &mut String,
) -> Value {
    loop {
        if let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            // The totals; the status events between them are the page's.
            let totals = event.lines().any(|l| l == "event: totals");
            if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")).filter(|_| totals) {
                return serde_json::from_str(data).unwrap();
            }
            continue;
        }
        let chunk = tokio::time::timeout(Duration::from_secs(30), body.next()).await.unwrap().unwrap().unwrap();
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_serves_exact_figures_to_those_entitled_and_logs_every_read() {
    let dir = tempfile::tempdir().unwrap();
    let window = operation(OP, "2023-10-01T00:00:00Z", "2023-11-01T00:00:00Z", None);
    let other = operation("OP-B", "2023-10-01T00:00:00Z", "2023-11-01T00:00:00Z", Some(&["MPS"]));
    let hub = hub(dir.path(), vec![window, other]);
    create_topics(&hub).await;
    let events = loadgen::generate(3_000, 5);
    let (first, second) = events.split_at(events.len() / 2);
    let p = producer(&hub.kafka.bootstrap);
    send_events_at(&p, &hub.kafka.topic, first, T1).await;
    send_events_at(&p, &hub.kafka.topic, second, T2).await;
    send_raw(&p, &hub.kafka.topic, &[(Some(b"k".to_vec()), Some(b"junk".to_vec()), None)]).await;
    let rollup = RunningRollup::start(&hub).await;
    wait_caught_up(&hub, Duration::from_secs(60)).await;
    let api = RunningApi::start(&hub).await;
    let c = Client { http: reqwest::Client::new(), base: api.base.clone(), doc: openapi() };

    let (coordinator, coordinator_id) = issue_token(&hub, Role::Coordinator, None);
    let (only_b, _) = issue_token(&hub, Role::Coordinator, Some(&["OP-B"]));
    let (kent, kent_id) = issue_token(&hub, Role::Force("KENT".into()), None);
    let (revoked, revoked_id) = issue_token(&hub, Role::Coordinator, None);
    records(&hub).revoke_token(&revoked_id, 1).unwrap();

    // Health needs no token; everything else does.
    assert_eq!(c.get("/healthz", "/healthz", None, None).await.0, 200);
    assert_eq!(c.get("/readyz", "/readyz", None, None).await.0, 200);
    let totals_t = "/api/v1/operations/{id}/totals";
    let totals_p = format!("/api/v1/operations/{OP}/totals");
    for token in [None, Some("jo_wrong"), Some(revoked.as_str())] {
        let (status, body) = c.get(totals_t, &totals_p, token, None).await;
        assert_eq!((status, body.as_str()), (401, r#"{"error":"unauthorized"}"#));
    }

    // A coordinator sees the exact joint totals and every force.
    let want = reference(&events);
    let v = c.get(totals_t, &totals_p, Some(&coordinator), Some("weekly press briefing")).await;
    assert_eq!(v.0, 200);
    let v: Value = serde_json::from_str(&v.1).unwrap();
    assert_eq!(v["totals"], totals_json(&want.joint));
    assert_eq!(v["forces"].as_object().unwrap().len(), want.forces.len());
    for (f, row) in &want.forces {
        assert_eq!(v["forces"][f], totals_json(row), "{f}");
    }
    assert!(!want.joint_credit.is_empty());
    for (f, row) in &want.joint_credit {
        assert_eq!(v["joint_credit"][f], totals_json(row), "joint credit of {f}");
    }
    let ops = c.json("/api/v1/operations", "/api/v1/operations", &coordinator).await;
    assert_eq!(ops["operations"].as_array().unwrap().len(), 2);

    // Exports: CSV of the same figures.
    let (status, body) =
        c.get("/api/v1/operations/{id}/totals.csv", &format!("{totals_p}.csv"), Some(&coordinator), None).await;
    assert_eq!(status, 200);
    assert!(body.starts_with("operation,as_of,generated_at,total,joint,"), "{body}");
    assert!(body.contains(&format!(",arrests,{},", want.joint.arrests)), "{body}");
    let forces =
        c.json("/api/v1/operations/{id}/forces", &format!("/api/v1/operations/{OP}/forces"), &coordinator).await;
    assert_eq!(forces["forces"]["MPS"], totals_json(&want.forces["MPS"]));
    let (_, body) = c
        .get(
            "/api/v1/operations/{id}/forces.csv",
            &format!("/api/v1/operations/{OP}/forces.csv"),
            Some(&coordinator),
            None,
        )
        .await;
    assert_eq!(body.lines().count(), want.forces.len() + 1);

    // The timeline's days add up to the joint totals.
    let tl =
        c.json("/api/v1/operations/{id}/timeline", &format!("/api/v1/operations/{OP}/timeline"), &coordinator).await;
    let mut sum = Totals::default();
    for day in tl["days"].as_array().unwrap() {
        let row: BTreeMap<String, i64> = serde_json::from_value(day["totals"].clone()).unwrap();
        for (k, v) in row {
            *sum.get_mut(&k).unwrap() += v;
        }
    }
    assert_eq!(sum, want.joint);
    assert!(tl["days"].as_array().unwrap().len() > 20, "a month of days");
    let (_, body) = c
        .get(
            "/api/v1/operations/{id}/timeline.csv",
            &format!("/api/v1/operations/{OP}/timeline.csv"),
            Some(&coordinator),
            None,
        )
        .await;
    assert!(body.starts_with("operation,as_of,generated_at,day,arrests,"), "{body}");

    // As of the first batch, and what changed since.
    let first_only = reference(first);
    let at = c.json(totals_t, &format!("{totals_p}?as_of=2024-01-01T12:00:00Z"), &coordinator).await;
    assert_eq!(at["totals"], totals_json(&first_only.joint));
    assert_eq!(at["as_of"], "2024-01-01T12:00:00.000Z");
    let before = c.json(totals_t, &format!("{totals_p}?as_of=2023-12-31T00:00:00Z"), &coordinator).await;
    assert_eq!(before["totals"], totals_json(&Totals::default()));
    let diff = c
        .json(
            "/api/v1/operations/{id}/diff",
            &format!("/api/v1/operations/{OP}/diff?from=2024-01-01T12:00:00Z"),
            &coordinator,
        )
        .await;
    let mut delta = want.joint;
    delta.add_scaled(&first_only.joint, -1);
    assert_eq!(diff["totals"], totals_json(&delta));
    let (status, _) = c.get(totals_t, &format!("{totals_p}?as_of=yesterday"), Some(&coordinator), None).await;
    assert_eq!(status, 400);

    // Dead letters: the whole hub's for a coordinator of every operation.
    let dl = c.json("/api/v1/dead-letters", "/api/v1/dead-letters", &coordinator).await;
    assert_eq!(dl["counts"]["undecodable"], 1);
    assert_eq!(dl["dead_letters"][0]["reason"], "undecodable");
    let (_, body) = c.get("/api/v1/dead-letters.csv", "/api/v1/dead-letters.csv", Some(&coordinator), None).await;
    assert!(
        body.starts_with("operation,force,event_id,reason,detail,advice,topic,partition,offset,at\n,,,undecodable,"),
        "{body}"
    );

    // A force liaison: joint totals, and only their own row.
    let v = c.json(totals_t, &totals_p, &kent).await;
    assert_eq!(v["totals"], totals_json(&want.joint));
    assert_eq!(v["forces"].as_object().unwrap().keys().collect::<Vec<_>>(), ["KENT"]);
    assert!(v["joint_credit"].as_object().unwrap().keys().all(|k| k == "KENT"));
    let (_, body) = c
        .get("/api/v1/operations/{id}/forces.csv", &format!("/api/v1/operations/{OP}/forces.csv"), Some(&kent), None)
        .await;
    assert_eq!(body.lines().count(), 2, "header and KENT only: {body}");
    // A liaison's dead letters are their own force's: none here.
    let own = c.json("/api/v1/dead-letters", "/api/v1/dead-letters", &kent).await;
    assert_eq!((own["force"].as_str(), own["dead_letters"].as_array().map(Vec::len)), (Some("KENT"), Some(0)));
    let other = c.get("/api/v1/dead-letters", "/api/v1/dead-letters?force=MPS", Some(&kent), None).await;
    assert_eq!(other.0, 403);
    // OP-B is the Met's alone: a Kent liaison may not read it; a coordinator
    // given OP-B only may not read the other.
    assert_eq!(c.get(totals_t, "/api/v1/operations/OP-B/totals", Some(&kent), None).await.0, 403);
    let (status, body) = c.get(totals_t, &totals_p, Some(&only_b), None).await;
    assert_eq!((status, body.as_str()), (403, r#"{"error":"forbidden"}"#));
    assert_eq!(c.json("/api/v1/operations", "/api/v1/operations", &only_b).await["operations"][0]["id"], "OP-B");
    // Existence is only told to those who could see it.
    assert_eq!(c.get(totals_t, "/api/v1/operations/NOPE/totals", Some(&coordinator), None).await.0, 404);
    assert_eq!(c.get(totals_t, "/api/v1/operations/NOPE/totals", Some(&only_b), None).await.0, 403);

    // The live stream: totals at once, and again when they change.
    let res =
        c.http.get(format!("{}/api/v1/operations/{OP}/stream", c.base)).bearer_auth(&coordinator).send().await.unwrap();
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut body = Box::pin(res.bytes_stream());
    let mut buf = String::new();
    let now = next_event(&mut body, &mut buf).await;
    assert_eq!(now["totals"], totals_json(&want.joint));
    let more: Vec<OutcomeEvent> = loadgen::generate(50, 77)
        .into_iter()
        .map(|mut e| {
            e.event_id = format!("late-{}", e.event_id);
            e
        })
        .collect();
    send_events(&p, &hub.kafka.topic, &more).await;
    let all: Vec<OutcomeEvent> = events.iter().chain(&more).cloned().collect();
    let want_after = reference(&all);
    let mut seen = now;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while seen["totals"] != totals_json(&want_after.joint) {
        assert!(std::time::Instant::now() < deadline, "the stream never showed the new totals");
        seen = next_event(&mut body, &mut buf).await;
    }
    drop(body);

    api.stop().await;
    rollup.stop().await;

    // Every read is in the access log: who, what, when, why, and the answer.
    let log = records(&hub).access_log(0).unwrap();
    let briefing: Vec<_> = log.iter().filter(|a| a.justification.as_deref() == Some("weekly press briefing")).collect();
    assert_eq!(briefing.len(), 1);
    assert_eq!(briefing[0].token_id.as_deref(), Some(coordinator_id.as_str()));
    assert_eq!((briefing[0].status, briefing[0].path.as_str()), (200, totals_p.as_str()));
    assert_eq!(log.iter().filter(|a| a.status == 401).count(), 3);
    assert!(log.iter().any(|a| a.token_id.as_deref() == Some(kent_id.as_str()) && a.status == 403));
    assert!(log.iter().any(|a| a.path.ends_with("/stream") && a.status == 200));
    assert!(log.iter().any(|a| a.path.ends_with("/totals.csv")));
    assert!(log.iter().all(|a| a.path.starts_with("/api/v1/")), "health checks are not figures");
}

#[test]
fn token_issue_prints_the_token_once_and_stores_only_its_hash() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hub.toml");
    std::fs::write(
        &config,
        "[kafka]\n[store]\npath = \"hub.sqlite\"\n[[operations]]\nid = \"OP\"\nstarts = \"2023-10-09T00:00:00Z\"\nends = \"2023-10-16T00:00:00Z\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_jointops"))
        .args(["token", "issue", "--role", "force:KENT", "--operation", "OP", "--label", "Kent liaison", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(token.starts_with("jo_") && token.len() == 67, "{token}");
    let store = jointops::store::RecordsStore::open(&dir.path().join("hub.sqlite.records"), None).unwrap();
    let grant = store.find_token(&jointops::access::hash_token(&token)).unwrap().expect("stored");
    assert_eq!((grant.role, grant.operations), (Role::Force("KENT".into()), Some(vec!["OP".to_string()])));
    for file in ["hub.sqlite.records", "hub.sqlite.records-wal"] {
        let raw = std::fs::read(dir.path().join(file)).unwrap_or_default();
        assert!(!raw.windows(token.len()).any(|w| w == token.as_bytes()), "the token itself is never stored");
    }
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_jointops"))
        .args(["token", "issue", "--role", "admin", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

/// Regression: with `serve --rollup`, a SIGTERM that arrived while the rollup
/// was still starting was seen by the API alone, and the process never exited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_rollup_stops_on_one_sigterm_even_during_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path(), vec![]);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = write_hub_config(dir.path(), &hub, port);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_jointops"))
        .args(["serve", "--rollup", "--config"])
        .arg(&config)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "serve never became ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "serve --rollup did not stop after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

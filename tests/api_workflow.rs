//! The coordinators' and forces' week on a running stack (real broker,
//! rollup, `serve`): freshness that tells a stopped rollup from a quiet
//! topic, per-force status with forces that sent nothing, refused records
//! back to the force that sent them, published figures and what changed
//! since, and the API's rough edges. Every response is checked against
//! docs/openapi.json.

mod common;

use std::time::{Duration, Instant};

use common::openapi::{conforms, openapi};
use common::*;
use jointops::access::Role;
use jointops::domain::OutcomeEvent;
use jointops::store::AccessStore;
use serde_json::{json, Value};

const OP: &str = "OP-1";

/// A client that checks every answer against the OpenAPI document.
struct Api {
    http: reqwest::Client,
    base: String,
    doc: Value,
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

impl Api {
    async fn send(&self, method: &str, template: &str, req: reqwest::RequestBuilder) -> Answer {
        let res = req.send().await.unwrap();
        let (status, headers) = (res.status().as_u16(), res.headers().clone());
        let body = res.text().await.unwrap();
        let content_type = headers.get("content-type").map_or("", |v| v.to_str().unwrap()).to_string();
        conforms(&self.doc, method, template, status, &content_type, &body);
        Answer { status, headers, body }
    }

    async fn get(&self, template: &str, path: &str, token: &str) -> Answer {
        let req = self.http.get(format!("{}{path}", self.base)).bearer_auth(token);
        self.send("get", template, req).await
    }

    async fn ok(&self, template: &str, path: &str, token: &str) -> Value {
        let a = self.get(template, path, token).await;
        assert_eq!(a.status, 200, "{path}: {}", a.body);
        a.json()
    }
}

/// OP-1 with four forces: the Met and Kent report, Essex sends nothing, and
/// Thames Valley sends an arrest under a mistyped operation code; one of
/// the Met's is dated before the window.
async fn week(dir: &std::path::Path) -> (jointops::config::HubSettings, Vec<OutcomeEvent>) {
    let hub = hub(
        dir,
        vec![operation(OP, "2023-10-09T00:00:00Z", "2023-10-16T00:00:00Z", Some(&["MPS", "KENT", "TVP", "ESSEX"]))],
    );
    create_topics(&hub).await;
    let mut events: Vec<OutcomeEvent> = (0..5).map(|i| op1_arrest("MPS", &format!("m{i}"))).collect();
    events.extend((0..3).map(|i| op1_arrest("KENT", &format!("k{i}"))));
    let mut typo = op1_arrest("TVP", "t0");
    typo.operation = "OP-11".into();
    let mut early = op1_arrest("MPS", "early");
    early.occurred_at = OP1_T - 86_400_000 * 2;
    let p = producer(&hub.kafka.bootstrap);
    send_events(&p, &hub.kafka.topic, &events).await;
    send_events(&p, &hub.kafka.topic, &[typo, early]).await;
    (hub, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_dead_letters_and_publications_serve_the_week_and_a_stopped_rollup_shows_within_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let (hub, _) = week(dir.path()).await;
    let rollup = RunningRollup::start(&hub).await;
    wait_caught_up(&hub, Duration::from_secs(60)).await;
    let server = RunningApi::start(&hub).await;
    let api = Api { http: reqwest::Client::new(), base: server.base.clone(), doc: openapi() };
    let (coordinator, _) = issue_token(&hub, Role::Coordinator, None);
    let (tvp, _) = issue_token(&hub, Role::Force("TVP".into()), None);
    let (kent, _) = issue_token(&hub, Role::Force("KENT".into()), None);

    // Freshness: the rollup is alive and caught up, and the data has an age.
    let hub_status = api.ok("/api/v1/status", "/api/v1/status", &coordinator).await;
    assert_eq!(hub_status["rollup"]["state"], "live", "{hub_status}");
    let status_t = "/api/v1/operations/{id}/status";
    let s = api.ok(status_t, &format!("/api/v1/operations/{OP}/status"), &coordinator).await;
    // The data's age is when the newest event reached the topic: just now.
    let newest = chrono::DateTime::parse_from_rfc3339(s["last_event_at"].as_str().unwrap()).unwrap();
    let age = chrono::Utc::now().timestamp_millis() - newest.timestamp_millis();
    assert!((0..300_000).contains(&age), "{s}");
    let rows: Vec<&Value> = s["forces"].as_array().unwrap().iter().collect();
    let names: Vec<&str> = rows.iter().map(|r| r["force"].as_str().unwrap()).collect();
    assert_eq!(names, ["ESSEX", "KENT", "MPS", "TVP"], "a force with no data keeps its place");
    let row = |f: &str| rows.iter().find(|r| r["force"] == f).copied().unwrap().clone();
    assert_eq!((row("ESSEX")["state"].as_str(), row("ESSEX")["events"].as_i64()), (Some("no-data"), Some(0)));
    assert_eq!((row("MPS")["events"].as_i64(), row("KENT")["events"].as_i64()), (Some(5), Some(3)));
    assert_eq!(row("MPS")["state"], "reporting");
    assert_eq!(row("MPS")["dead_letters"], json!({ "outside-window": 1 }));
    assert_eq!(row("TVP")["dead_letters"], json!({ "unknown-operation": 1 }), "the typo is the operation's");
    assert_eq!(s["hidden_forces"], 0);
    let mine = api.ok(status_t, &format!("/api/v1/operations/{OP}/status"), &kent).await;
    assert_eq!((mine["forces"].as_array().unwrap().len(), mine["hidden_forces"].as_i64()), (1, Some(3)));

    // Refused records back to their force, with what to do.
    let dl_t = "/api/v1/dead-letters";
    let all = api.ok(dl_t, &format!("/api/v1/dead-letters?operation={OP}"), &coordinator).await;
    assert_eq!(all["counts"], json!({ "outside-window": 1, "unknown-operation": 1 }));
    let typo = api.ok(dl_t, &format!("/api/v1/dead-letters?operation={OP}&force=TVP"), &coordinator).await;
    let record = &typo["dead_letters"][0];
    assert_eq!((record["event_id"].as_str(), record["operation"].as_str()), (Some("t0"), Some("OP-11")));
    assert!(record["advice"].as_str().unwrap().contains("operation code"), "{record}");
    let own = api.ok(dl_t, &format!("/api/v1/dead-letters?operation={OP}"), &tvp).await;
    assert_eq!((own["force"].as_str(), own["dead_letters"].as_array().unwrap().len()), (Some("TVP"), 1));
    assert_eq!(api.get(dl_t, "/api/v1/dead-letters?force=TVP", &kent).await.status, 403, "not another force's");
    let bad = api.get(dl_t, "/api/v1/dead-letters?operatoin=OP-1", &coordinator).await;
    assert!(bad.status == 400 && bad.body.contains("operatoin"), "{}", bad.body);
    let csv =
        api.get("/api/v1/dead-letters.csv", &format!("/api/v1/dead-letters.csv?operation={OP}&force=MPS"), &tvp).await;
    assert_eq!(csv.status, 403);
    let csv = api
        .get("/api/v1/dead-letters.csv", &format!("/api/v1/dead-letters.csv?operation={OP}&force=MPS"), &coordinator)
        .await;
    let lines: Vec<&str> = csv.body.lines().collect();
    assert_eq!(lines.len(), 2, "{}", csv.body);
    assert!(lines[1].starts_with("OP-1,MPS,early,outside-window,"), "{}", lines[1]);
    assert!(csv.headers["content-disposition"].to_str().unwrap().contains("dead-letters-OP-1-MPS.csv"));

    // Publishing records the figures; what changed since is one request.
    let pubs_t = "/api/v1/operations/{id}/publications";
    let url = format!("{}/api/v1/operations/{OP}/publications", api.base);
    let body = json!({ "note": "Monday's press release" });
    let refused = api.send("post", pubs_t, api.http.post(&url).bearer_auth(&kent).json(&body)).await;
    assert_eq!(refused.status, 403, "only coordinators publish");
    let published = api.send("post", pubs_t, api.http.post(&url).bearer_auth(&coordinator).json(&body)).await;
    assert_eq!(published.status, 201, "{}", published.body);
    let p = published.json();
    assert_eq!((p["totals"]["arrests"].as_i64(), p["note"].as_str()), (Some(8), Some("Monday's press release")));
    let late: Vec<OutcomeEvent> = (0..2).map(|i| op1_arrest("KENT", &format!("late{i}"))).collect();
    send_events(&producer(&hub.kafka.bootstrap), &hub.kafka.topic, &late).await;
    wait_caught_up(&hub, Duration::from_secs(60)).await;
    let changes_t = "/api/v1/operations/{id}/publications/{n}/changes";
    let ch =
        api.ok(changes_t, &format!("/api/v1/operations/{OP}/publications/{}/changes", p["id"]), &coordinator).await;
    assert_eq!(
        (ch["changes"]["totals"]["arrests"].as_i64(), ch["changes"]["forces"]["KENT"]["arrests"].as_i64()),
        (Some(2), Some(2))
    );
    assert_eq!(ch["changes"]["forces"]["MPS"]["arrests"], 0);
    let list = api.ok(pubs_t, &format!("/api/v1/operations/{OP}/publications"), &kent).await;
    assert_eq!(list["publications"][0]["forces"].as_object().unwrap().keys().collect::<Vec<_>>(), ["KENT"]);

    // An open page gets the status on its live stream, without polling.
    let res =
        api.http.get(format!("{}/api/v1/operations/{OP}/stream", api.base)).bearer_auth(&kent).send().await.unwrap();
    let mut body = Box::pin(res.bytes_stream());
    let mut seen = String::new();
    let status_event = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            seen.push_str(std::str::from_utf8(&futures::StreamExt::next(&mut body).await.unwrap().unwrap()).unwrap());
            if let Some(start) = seen.find("event: status\ndata: ") {
                if let Some(end) = seen[start..].find("\n\n") {
                    return serde_json::from_str::<Value>(&seen[start + 20..start + end]).unwrap();
                }
            }
        }
    })
    .await
    .expect("a status event within 10 s");
    assert_eq!(
        (status_event["rollup"]["state"].as_str(), status_event["hidden_forces"].as_i64()),
        (Some("live"), Some(3))
    );
    drop(body);

    // The rollup stops: the status says so within seconds, not "live".
    rollup.stop().await;
    let stopped_at = Instant::now();
    let mut state = String::new();
    while state != "stopped" {
        assert!(stopped_at.elapsed() < Duration::from_secs(30), "still {state:?} 30 s after the rollup stopped");
        tokio::time::sleep(Duration::from_millis(200)).await;
        state =
            api.ok("/api/v1/status", "/api/v1/status", &coordinator).await["rollup"]["state"].as_str().unwrap().into();
    }
    println!("The status said \"stopped\" {:.1} s after the rollup stopped.", stopped_at.elapsed().as_secs_f64());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rough_edges_are_smoothed_and_every_answer_says_what_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let (hub, _) = week(dir.path()).await;
    let mut weighed = op1_arrest("KENT", "s1");
    weighed.outcome = jointops::domain::Outcome::Seizure {
        item: jointops::domain::SeizureItem::DrugClassA,
        quantity: 1_250_000,
        provisional: true,
    };
    send_events(&producer(&hub.kafka.bootstrap), &hub.kafka.topic, &[weighed]).await;
    let rollup = RunningRollup::start(&hub).await;
    wait_caught_up(&hub, Duration::from_secs(60)).await;
    let server = RunningApi::start(&hub).await;
    let api = Api { http: reqwest::Client::new(), base: server.base.clone(), doc: openapi() };
    let (coordinator, coordinator_id) = issue_token(&hub, Role::Coordinator, None);
    let totals_t = "/api/v1/operations/{id}/totals";
    let totals = format!("/api/v1/operations/{OP}/totals");

    // 401 says how to authenticate; the scheme is matched in any case.
    let anon = api.send("get", totals_t, api.http.get(format!("{}{totals}", api.base))).await;
    assert_eq!((anon.status, anon.headers["www-authenticate"].to_str().unwrap()), (401, "Bearer realm=\"jointops\""));
    let lower = api.http.get(format!("{}{totals}", api.base)).header("Authorization", format!("bearer {coordinator}"));
    let t = api.send("get", totals_t, lower).await;
    assert_eq!(t.status, 200, "{}", t.body);
    // Provisional seizures say how many, of what, and whose.
    let t = t.json();
    assert_eq!(t["provisional"]["joint"]["provisional_seizures"], 1);
    assert_eq!(t["provisional"]["joint"]["drugs_class_a_mg"], 1_250_000);
    assert_eq!(t["provisional"]["forces"].as_object().unwrap().keys().collect::<Vec<_>>(), ["KENT"]);

    // Moments: never in the future; a '+' lost to a space is explained.
    let future = api.get(totals_t, &format!("{totals}?as_of=2999-01-01T00:00:00Z"), &coordinator).await;
    assert!(future.status == 400 && future.body.contains("in the future"), "{}", future.body);
    let plus = api.get(totals_t, &format!("{totals}?as_of=2023-10-10T12:00:00+01:00"), &coordinator).await;
    assert!(plus.status == 400 && plus.body.contains("%2B"), "{}", plus.body);
    let at = api.ok(totals_t, &format!("{totals}?as_of=2023-10-10T12:00:00%2B01:00"), &coordinator).await;
    assert_eq!(at["as_of"], "2023-10-10T11:00:00.000Z");

    // A justification in Welsh, sent as browsers must (RFC 8187), is kept;
    // one too long is cut, and the answer says so.
    let welsh = "Datganiad i’r wasg – Dŵr";
    let encoded = format!("utf-8''{}", percent(welsh));
    let req =
        api.http.get(format!("{}{totals}", api.base)).bearer_auth(&coordinator).header("X-Justification", &encoded);
    assert_eq!(api.send("get", totals_t, req).await.status, 200);
    let long = format!("utf-8''{}", percent(&"é".repeat(400)));
    let req = api.http.get(format!("{}{totals}", api.base)).bearer_auth(&coordinator).header("X-Justification", &long);
    let cut = api.send("get", totals_t, req).await;
    assert_eq!(cut.headers["x-justification-truncated"], "kept 500 of 800 bytes");

    // CSV downloads: named, stamped, and with the published units.
    let csv_t = "/api/v1/operations/{id}/totals.csv";
    let csv = api.get(csv_t, &format!("{totals}.csv?units=published&as_of=2023-10-12T00:00:00Z"), &coordinator).await;
    let disposition = csv.headers["content-disposition"].to_str().unwrap();
    assert_eq!(disposition, "attachment; filename=\"OP-1-totals-as-of-20231012T000000Z.csv\"");
    assert!(csv.body.lines().all(|l| l.starts_with("operation,") || l.starts_with("OP-1,2023-10-12T00:00:00.000Z,")));
    assert_eq!(api.get(csv_t, &format!("{totals}.csv?units=kg"), &coordinator).await.status, 400);
    let diff_t = "/api/v1/operations/{id}/diff.csv";
    let diff =
        api.get(diff_t, &format!("/api/v1/operations/{OP}/diff.csv?from=2023-01-01T00:00:00Z"), &coordinator).await;
    assert_eq!(diff.status, 200, "{}", diff.body);
    let joint = diff.body.lines().nth(1).unwrap();
    assert!(joint.starts_with("OP-1,2023-01-01T00:00:00.000Z,") && joint.contains(",joint,8,"), "{joint}");
    assert!(diff.headers["content-disposition"].to_str().unwrap().contains("OP-1-changes-20230101T000000Z-to-"));

    // The description of the API is served, and is the one checked here.
    let doc_res = api.http.get(format!("{}/api/v1/openapi.json", api.base)).send().await.unwrap();
    assert_eq!(doc_res.status(), 200, "no token needed");
    assert_eq!(doc_res.json::<Value>().await.unwrap(), api.doc);

    server.stop().await;
    rollup.stop().await;
    // The access log has the moments the figures were for, and the text.
    let log = records(&hub).access_log(0).unwrap();
    let mine: Vec<_> = log.iter().filter(|a| a.token_id.as_deref() == Some(coordinator_id.as_str())).collect();
    assert!(mine.iter().any(|a| a.justification.as_deref() == Some(welsh)), "{mine:?}");
    assert!(mine.iter().any(|a| a.figures_at.as_deref() == Some("as_of=2023-10-10T11:00:00.000Z")));
    assert!(mine.iter().any(|a| a.figures_at.as_deref() == Some("from=2023-01-01T00:00:00.000Z")));
    assert!(!log.iter().any(|a| a.path.contains("openapi")), "the description serves no figures");
    assert_eq!(records(&hub).verify_chain().unwrap().first_bad, None);
}

fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

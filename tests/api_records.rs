//! The hub's own records on a running stack (real broker, rollup, `serve`):
//! a rebuild keeps tokens and the access log and a running `serve` follows
//! it; every request under /api/v1/ is logged, whatever its answer; the log
//! fails closed, bounds a flood of strangers, and shows stored text safely.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::*;
use jointops::access::Role;
use jointops::loadgen;
use jointops::store::{AccessStore, FileId};
use serde_json::Value;

const OP: &str = loadgen::OPERATION;

async fn get(base: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new().get(format!("{base}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

async fn joint_arrests(base: &str, token: &str) -> i64 {
    let (status, body) = get(base, &format!("/api/v1/operations/{OP}/totals"), Some(token)).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["totals"]["arrests"].as_i64().unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

fn load_hub(dir: &Path) -> jointops::config::HubSettings {
    hub(dir, vec![operation(OP, "2023-10-01T00:00:00Z", "2023-11-01T00:00:00Z", None)])
}

/// Regression: `rollup --rebuild` swapped in a store without tokens or
/// access log (every token lost, the log erased), and a running `serve`
/// went on reading the deleted file, so a token revoked afterwards still
/// worked there and new figures never showed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_keeps_tokens_and_the_access_log_and_a_running_serve_follows_it() {
    let dir = tempfile::tempdir().unwrap();
    let hub = load_hub(dir.path());
    create_topics(&hub).await;
    let p = producer(&hub.kafka.bootstrap);
    let events = loadgen::generate(500, 11);
    send_events(&p, &hub.kafka.topic, &events).await;
    let live = RunningRollup::start(&hub).await;
    wait_caught_up(&hub, Duration::from_secs(60)).await;
    let api = RunningApi::start(&hub).await;
    let (keep, keep_id) = issue_token(&hub, Role::Coordinator, None);
    let (later_revoked, later_id) = issue_token(&hub, Role::Coordinator, None);
    let before = joint_arrests(&api.base, &keep).await;
    assert_eq!(joint_arrests(&api.base, &later_revoked).await, before);
    // Published figures and the per-force status, which the rebuild must
    // keep (publications) and derive again (status).
    let url = format!("{}/api/v1/operations/{OP}/publications", api.base);
    let note = serde_json::json!({ "note": "Monday" });
    let posted = reqwest::Client::new().post(&url).bearer_auth(&keep).json(&note).send().await.unwrap();
    assert_eq!(posted.status(), 201);
    let status_path = format!("/api/v1/operations/{OP}/status");
    let (_, status_before) = get(&api.base, &status_path, Some(&keep)).await;
    let forces_of = |body: &str| serde_json::from_str::<serde_json::Value>(body).unwrap()["forces"].clone();
    let logged_before = records(&hub).access_log(0).unwrap();
    assert_eq!(logged_before.len(), 4);

    let old_file = FileId::of(&hub.store.path).unwrap();
    live.stop().await;
    let rebuild = RunningRollup::start_rebuild(&hub).await;
    let rebuild_path = dir.path().join("hub.sqlite.rebuild");
    wait_until("the rebuilt store is swapped in", Duration::from_secs(60), || {
        !rebuild_path.exists() && FileId::of(&hub.store.path).is_ok_and(|f| f != old_file)
    })
    .await;

    // The same tokens work on the serve that ran through the swap; one
    // revoked now is refused there at once.
    assert_eq!(joint_arrests(&api.base, &keep).await, before);
    let (_, status_after) = get(&api.base, &status_path, Some(&keep)).await;
    assert_eq!(forces_of(&status_after), forces_of(&status_before), "per-force status rebuilt the same");
    let (_, pubs) = get(&api.base, &format!("/api/v1/operations/{OP}/publications"), Some(&keep)).await;
    assert!(pubs.contains("\"note\":\"Monday\""), "the publication survives the rebuild: {pubs}");
    assert!(records(&hub).revoke_token(&later_id, 1).unwrap());
    let (status, _) = get(&api.base, &format!("/api/v1/operations/{OP}/totals"), Some(&later_revoked)).await;
    assert_eq!(status, 401, "a token revoked after the swap is refused");
    // New figures from the rebuilt store (now the live rollup) reach it.
    let more = more_events(200, 12);
    send_events(&p, &hub.kafka.topic, &more).await;
    wait_caught_up(&hub, Duration::from_secs(60)).await;
    let want = totals(&hub, OP).joint.arrests;
    assert!(want > before);
    assert_eq!(joint_arrests(&api.base, &keep).await, want, "serve reads the rebuilt store");
    api.stop().await;
    rebuild.stop().await;

    let log = records(&hub).access_log(0).unwrap();
    assert_eq!(&log[..4], &logged_before[..], "the log keeps every entry from before the rebuild");
    assert_eq!(log.len(), 9);
    assert!(log.iter().any(|a| a.token_id.as_deref() == Some(keep_id.as_str())));
    let refused = log.iter().find(|a| a.status == 401).expect("the revoked token's request");
    assert_eq!(refused.token_id.as_deref(), Some(later_id.as_str()), "a revoked token is named in the log");
    assert_eq!(records(&hub).verify_chain().unwrap().first_bad, None);
    for f in ["hub.sqlite", "hub.sqlite.records"] {
        assert_eq!(mode(&dir.path().join(f)), 0o600, "{f} (the rebuilt store too) is the owner's only");
    }
    for f in ["hub.sqlite-wal", "hub.sqlite-shm", "hub.sqlite.records-wal", "hub.sqlite.records-shm"] {
        let path = dir.path().join(f);
        assert!(!path.exists() || mode(&path) == 0o600, "{f}");
    }
}

/// Regression: only the routes' own answers were logged (not unknown paths,
/// rejected query strings, or 500s), without the query string, and a
/// failing log write still served the figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_under_api_v1_is_logged_and_without_a_log_no_figures_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let other = operation("OP-B", "2023-10-01T00:00:00Z", "2023-11-01T00:00:00Z", Some(&["MPS"]));
    let mut hub = load_hub(dir.path());
    hub.operations.push(other);
    create_topics(&hub).await;
    let api = RunningApi::start(&hub).await;
    let (coordinator, cid) = issue_token(&hub, Role::Coordinator, None);
    let (kent, _) = issue_token(&hub, Role::Force("KENT".into()), None);
    let totals = format!("/api/v1/operations/{OP}/totals");
    let asked = [
        (format!("{totals}?as_of=yesterday"), 400),
        (format!("/api/v1/operations/{OP}/diff?from=never"), 400),
        ("/api/v1/no/such/path?x=1".to_string(), 404),
        ("/api/v1/operations/NOPE/totals".to_string(), 404),
        (format!("{totals}?as_of=2024-01-01T00:00:00Z"), 200),
    ];
    for (path, status) in &asked {
        assert_eq!(get(&api.base, path, Some(&coordinator)).await.0, *status, "{path}");
    }
    // A body is never needed: a large one is refused, and that is logged too.
    let res = reqwest::Client::new()
        .get(format!("{}{totals}", api.base))
        .bearer_auth(&coordinator)
        .body(vec![b'x'; 100_000])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);

    // A liaison cannot tell an unknown operation from one their force is not in.
    let nope = get(&api.base, "/api/v1/operations/NOPE/totals", Some(&kent)).await;
    let op_b = get(&api.base, "/api/v1/operations/OP-B/totals", Some(&kent)).await;
    assert_eq!(nope, op_b);
    assert_eq!(nope.0, 403);

    // The log cannot be written (a full disk, say): no figures, 503.
    let blocker = "CREATE TRIGGER test_block BEFORE INSERT ON access_log BEGIN SELECT RAISE(ABORT, 'disk full'); END";
    records(&hub).execute_raw(blocker).unwrap();
    let (status, body) = get(&api.base, &totals, Some(&coordinator)).await;
    assert_eq!((status, body.as_str()), (503, r#"{"error":"unavailable"}"#));
    records(&hub).execute_raw("DROP TRIGGER test_block").unwrap();
    assert_eq!(get(&api.base, &totals, Some(&coordinator)).await.0, 200);

    // A store that cannot be read: 500, logged; /readyz does not name files.
    let junk = dir.path().join("junk");
    std::fs::write(&junk, vec![7u8; 8192]).unwrap();
    std::fs::rename(&junk, &hub.store.path).unwrap();
    assert_eq!(get(&api.base, &totals, Some(&coordinator)).await.0, 500);
    let (status, body) = get(&api.base, "/readyz", None).await;
    assert_eq!(status, 503);
    assert!(!body.contains(dir.path().to_str().unwrap()) && !body.contains("hub.sqlite"), "{body}");
    api.stop().await;

    let log = records(&hub).access_log(0).unwrap();
    let mine: Vec<(String, u16)> = log
        .iter()
        .filter(|a| a.token_id.as_deref() == Some(cid.as_str()))
        .map(|a| (a.path.clone(), a.status))
        .collect();
    for (path, status) in &asked {
        assert!(mine.contains(&(path.clone(), *status)), "{path} {status} not in {mine:?}");
    }
    assert!(mine.contains(&(totals.clone(), 413)), "{mine:?}");
    assert!(mine.contains(&(totals.clone(), 500)), "{mine:?}");
    assert!(!mine.contains(&(totals.clone(), 503)), "the refused write left nothing");
    assert!(log.iter().filter(|a| a.role.as_deref() == Some("force:KENT")).all(|a| a.status == 403));
    assert_eq!(records(&hub).verify_chain().unwrap().first_bad, None);
}

/// Regression: every request without a valid token was logged in full, so
/// a stranger could grow the log (and the disk) without limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_requests_without_a_token_is_bounded_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let hub = load_hub(dir.path());
    let api = RunningApi::start(&hub).await;
    let http = reqwest::Client::new();
    let long = "x".repeat(6000);
    for i in 0..300 {
        let res = http
            .get(format!("{}/api/v1/{long}?i={i}", api.base))
            .header("X-Justification", long.as_str())
            .bearer_auth("jo_guess")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
    }
    api.stop().await;
    let log = records(&hub).access_log(0).unwrap();
    let limit = jointops::api::REFUSED_PER_WINDOW as usize;
    assert!(log.len() <= limit + 2, "{} entries for 300 refused requests", log.len());
    for a in &log {
        assert!(a.path.len() <= 300, "path of {} bytes", a.path.len());
        assert!(a.justification.as_ref().is_none_or(|j| j.len() <= 300));
    }
    let counted: u64 = log
        .iter()
        .filter(|a| a.method == "*")
        .map(|a| a.justification.as_deref().unwrap().split(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    let itemised = log.iter().filter(|a| a.method == "GET").count() as u64;
    assert_eq!(itemised + counted, 300, "every refused request is itemised or counted");
}

fn jointops(args: &[&str], config: &Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_jointops")).args(args).arg("--config").arg(config).output().unwrap()
}

/// `audit` shows what callers sent safely; `audit verify` names the first
/// entry that was changed behind the triggers; `token list --format`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_shows_stored_text_safely_and_verify_names_the_first_entry_that_does_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    let hub = load_hub(dir.path());
    let config = dir.path().join("hub.toml");
    std::fs::write(&config, "[kafka]\n[store]\npath = \"hub.sqlite\"\n").unwrap();
    let api = RunningApi::start(&hub).await;
    let (coordinator, _) = issue_token(&hub, Role::Coordinator, None);
    // U+009B is a C1 control (CSI) that terminals obey; `=` starts a formula.
    let evil = reqwest::header::HeaderValue::from_bytes("=HYPERLINK(\"x\") \u{9b}2J".as_bytes()).unwrap();
    for _ in 0..3 {
        let res = reqwest::Client::new()
            .get(format!("{}/api/v1/operations", api.base))
            .bearer_auth(&coordinator)
            .header("X-Justification", evil.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    api.stop().await;
    let stored = records(&hub).access_log(0).unwrap();
    assert_eq!(stored[0].justification.as_deref(), Some("=HYPERLINK(\"x\") \u{9b}2J"), "the log keeps the bytes");

    let table = String::from_utf8(jointops(&["audit"], &config).stdout).unwrap();
    assert!(!table.contains('\u{9b}') && table.contains(r"\u{9b}2J"), "{table}");
    let csv = String::from_utf8(jointops(&["audit", "--format", "csv"], &config).stdout).unwrap();
    assert!(csv.contains("\"'=HYPERLINK(\"\"x\"\")"), "{csv}");

    let ok = jointops(&["audit", "verify"], &config);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stdout));
    let r = records(&hub);
    r.execute_raw("DROP TRIGGER access_log_no_update").unwrap();
    r.execute_raw("UPDATE access_log SET status = 404 WHERE seq = 2").unwrap();
    let bad = jointops(&["audit", "verify"], &config);
    let out = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1), "{out}");
    assert!(out.starts_with("entry 2 does not fit"), "{out}");

    let json = jointops(&["token", "list", "--format", "json"], &config);
    let list: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(list[0]["role"], "coordinator");
    let csv = String::from_utf8(jointops(&["token", "list", "--format", "csv"], &config).stdout).unwrap();
    assert!(csv.starts_with("id,role,operations,label,created_at,revoked_at\n"), "{csv}");
}

/// A hub upgraded from before the records file existed keeps its tokens in
/// the store; its first rebuild carries them over before replacing the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgraded_hubs_tokens_survive_its_first_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let hub = load_hub(dir.path());
    create_topics(&hub).await;
    send_events(&producer(&hub.kafka.bootstrap), &hub.kafka.topic, &loadgen::generate(50, 3)).await;
    let live = RunningRollup::start(&hub).await;
    wait_caught_up(&hub, Duration::from_secs(60)).await;
    live.stop().await;
    // The tables an older version kept in the store, with one token.
    let old = rusqlite::Connection::open(&hub.store.path).unwrap();
    old.execute_batch(
        "CREATE TABLE tokens (id TEXT PRIMARY KEY, hash BLOB NOT NULL UNIQUE, role TEXT NOT NULL, operations TEXT,
             label TEXT NOT NULL, created_at INTEGER NOT NULL, revoked_at INTEGER);
         INSERT INTO tokens VALUES ('0123456789ab', x'01', 'coordinator', NULL, 'from before', 1, NULL);",
    )
    .unwrap();
    drop(old);
    let records_path = hub.store.records_path();
    assert!(!records_path.exists());
    let old_file = FileId::of(&hub.store.path).unwrap();
    let rebuild = RunningRollup::start_rebuild(&hub).await;
    wait_until("the rebuilt store is swapped in", Duration::from_secs(60), || {
        FileId::of(&hub.store.path).is_ok_and(|f| f != old_file)
    })
    .await;
    rebuild.stop().await;
    let tokens = records(&hub).tokens().unwrap();
    assert_eq!(tokens.iter().map(|g| g.label.as_str()).collect::<Vec<_>>(), ["from before"]);
}

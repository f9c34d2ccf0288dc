//! Signed events on the real broker (contract §7): only a key of the force an
//! event names gets it counted; each refusal is dead-lettered with its reason
//! and which check failed while honest events beside it count; a key
//! rotation loses nothing; a revocation applies to new records at once and
//! to everything on a rebuild, and a resend with a current key counts
//! again; an independent signer's events count; and nothing secret reaches
//! the logs at `info`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use common::*;
use ed25519_dalek::SigningKey;
use jointops::codec::Registry;
use jointops::config::{HubSettings, TrustKeySettings};
use jointops::domain::{Engine, Outcome, OutcomeEvent};
use jointops::store::{DeadLetterLog, SqliteStore};
use jointops::trust::{sign, KEY_ID_HEADER, SIGNATURE_HEADER};

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn entry(force: &str, id: &str, k: &SigningKey) -> TrustKeySettings {
    TrustKeySettings {
        force: force.into(),
        id: id.into(),
        public_key: b64(k.verifying_key().as_bytes()),
        not_before: None,
        not_after: None,
        revoked: false,
    }
}

/// OP-1 (MPS and KENT) on a hub that requires signatures.
async fn signed_hub(dir: &Path, keys: Vec<TrustKeySettings>) -> HubSettings {
    let mut hub = op1_hub(dir).await;
    hub.trust.require_signatures = true;
    hub.trust.keys = keys;
    hub.validate().expect("a valid keyring");
    hub
}

fn encoded(e: &OutcomeEvent) -> (Vec<u8>, Vec<u8>) {
    (e.identity_key().into_bytes(), Registry::builtin().encode(e))
}

/// The record as an agent holding `(id, key)` sends it.
fn signed(e: &OutcomeEvent, id: &str, k: &SigningKey) -> HeadedRecord {
    let (rk, v) = encoded(e);
    let sig = sign(k, &rk, &v).to_vec();
    (rk, v, vec![(KEY_ID_HEADER.into(), id.as_bytes().to_vec()), (SIGNATURE_HEADER.into(), sig)])
}

async fn run_until_caught_up(hub: &HubSettings) {
    let rollup = RunningRollup::start(hub).await;
    wait_caught_up(hub, Duration::from_secs(60)).await;
    rollup.stop().await;
}

/// `event_id → (reason, detail)` of the store's dead letters.
fn refusals(hub: &HubSettings) -> BTreeMap<String, (String, String)> {
    let store = SqliteStore::open_read(&hub.store.path).unwrap();
    let mut out = BTreeMap::new();
    for d in store.dead_letters(None).unwrap() {
        let id = d.event_id.clone().unwrap_or_else(|| format!("@{}/{}", d.partition, d.offset));
        out.insert(id, (d.reason, d.detail));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_signature_is_dead_lettered_with_its_check_while_honest_events_count() {
    let dir = tempfile::tempdir().unwrap();
    let (mps, kent, old, later) = (key(1), key(2), key(3), key(4));
    let mut revoked = entry("MPS", "MPS-OLD", &old);
    revoked.revoked = true;
    let mut windowed = entry("MPS", "MPS-LATER", &later);
    windowed.not_before = Some("2023-10-11T00:00:00Z".into()); // after every event's reported_at
    let hub =
        signed_hub(dir.path(), vec![entry("MPS", "MPS-1", &mps), entry("KENT", "KENT-1", &kent), revoked, windowed])
            .await;

    let mut tampered = signed(&op1_arrest("MPS", "tampered"), "MPS-1", &mps);
    let mut changed = op1_arrest("MPS", "tampered");
    changed.outcome = Outcome::Engagement { people: 500 };
    tampered.1 = Registry::builtin().encode(&changed);
    let (uk, uv) = encoded(&op1_arrest("MPS", "unsigned"));
    let mut records = vec![
        // Force A's key cannot get an event counted as force B's.
        signed(&op1_arrest("MPS", "forged"), "KENT-1", &kent),
        (uk, uv, vec![]),
        tampered,
        signed(&op1_arrest("MPS", "unknown"), "MPS-9", &mps),
        signed(&op1_arrest("MPS", "revoked"), "MPS-OLD", &old),
        signed(&op1_arrest("MPS", "early"), "MPS-LATER", &later),
    ];
    // Honest events from both forces between and around them.
    let honest: Vec<HeadedRecord> = (0..7)
        .map(|i| match i % 2 {
            0 => signed(&op1_arrest("MPS", &format!("ok-{i}")), "MPS-1", &mps),
            _ => signed(&op1_arrest("KENT", &format!("ok-{i}")), "KENT-1", &kent),
        })
        .collect();
    for (i, h) in honest.into_iter().enumerate() {
        records.insert((2 * i).min(records.len()), h);
    }
    send_headed(&producer(&hub.kafka.bootstrap), &hub.kafka.topic, &records).await;
    run_until_caught_up(&hub).await;

    let t = totals(&hub, "OP-1");
    assert_eq!((t.joint.arrests, t.joint.people_engaged), (7, 0), "only the honest events count");
    assert_eq!(t.forces.get("MPS").map(|f| f.arrests), Some(4));
    let want = [
        ("forged", "bad-signature", "key KENT-1 belongs to KENT, the event names MPS"),
        ("@unsigned", "unsigned", "the record carries no jointops-key-id and no jointops-signature header"),
        ("@tampered", "bad-signature", "signature does not verify (key id MPS-1)"),
        ("@unknown", "bad-signature", "unknown key id MPS-9"),
        ("@revoked", "bad-signature", "key id MPS-OLD was revoked"),
        (
            "early",
            "bad-signature",
            "key MPS-LATER is valid from 2023-10-11T00:00:00.000Z (reported_at 2023-10-10T01:07:40.000Z)",
        ),
    ];
    let got = refusals(&hub);
    assert_eq!(got.len(), want.len(), "{got:#?}");
    // Refusals before decoding name no event; match those by their detail.
    for (id, reason, detail) in want {
        let found = match id.strip_prefix('@') {
            None => got.get(id).cloned(),
            Some(_) => got.values().find(|(_, d)| d == detail).cloned(),
        };
        assert_eq!(found, Some((reason.to_string(), detail.to_string())), "{id}: {got:#?}");
    }
    for (_, detail) in got.values() {
        for k in [&mps, &kent, &old, &later] {
            assert!(!detail.contains(&b64(k.verifying_key().as_bytes())) && !detail.contains(&b64(k.as_bytes())));
        }
    }
}

/// An engagement of `people` reported at `reported_at`, within OP-1.
fn engagement(force: &str, id: &str, revision: i32, reported_at: i64, people: i32) -> OutcomeEvent {
    OutcomeEvent {
        revision,
        occurred_at: reported_at - 3_600_000,
        reported_at,
        outcome: Outcome::Engagement { people },
        ..op1_arrest(force, id)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotation_mid_stream_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second, kent) = (key(11), key(12), key(13));
    let mut old = entry("MPS", "MPS-2026-01", &first);
    old.not_after = Some("2023-10-12T00:00:00Z".into());
    let mut new = entry("MPS", "MPS-2026-02", &second);
    new.not_before = Some("2023-10-11T00:00:00Z".into());
    let hub = signed_hub(dir.path(), vec![old, new, entry("KENT", "KENT-1", &kent)]).await;

    // 2023-10-10T00:00Z to 2023-10-13T00:00Z; MPS's agent switches keys at
    // noon on the 11th, inside the day both keys are valid.
    let (from, hour) = (1_696_896_000_000_i64, 3_600_000_i64);
    let switch = from + 36 * hour;
    let mut events = Vec::new();
    for i in 0..144 {
        let at = from + i64::from(i) * hour / 2;
        events.push(engagement("MPS", &format!("m-{i}"), 1, at, 1 + i % 7));
        events.push(engagement("KENT", &format!("k-{i}"), 1, at, 2));
        if i < 40 {
            // A report revised after the switch, under the new key.
            events.push(engagement("MPS", &format!("m-{i}"), 2, at + 48 * hour, 100));
        }
    }
    let record = |e: &OutcomeEvent| match (e.force.as_str(), e.reported_at < switch) {
        ("KENT", _) => signed(e, "KENT-1", &kent),
        (_, true) => signed(e, "MPS-2026-01", &first),
        _ => signed(e, "MPS-2026-02", &second),
    };
    let (before, after): (Vec<_>, Vec<_>) = events.iter().partition(|e| e.reported_at < switch);
    let p = producer(&hub.kafka.bootstrap);
    let rollup = RunningRollup::start(&hub).await;
    send_headed(&p, &hub.kafka.topic, &before.iter().map(|e| record(e)).collect::<Vec<_>>()).await;
    wait_caught_up(&hub, Duration::from_secs(60)).await;
    send_headed(&p, &hub.kafka.topic, &after.iter().map(|e| record(e)).collect::<Vec<_>>()).await;
    wait_caught_up(&hub, Duration::from_secs(60)).await;
    rollup.stop().await;

    assert!(refusals(&hub).is_empty(), "{:#?}", refusals(&hub));
    let mut reference = Engine::new();
    for e in events {
        reference.apply(e).unwrap();
    }
    assert_eq!(&totals(&hub, "OP-1"), reference.totals("OP-1").unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_refuses_new_records_a_rebuild_applies_it_to_all_and_a_resend_counts_again() {
    let dir = tempfile::tempdir().unwrap();
    let (lost, current) = (key(21), key(22));
    let mut hub =
        signed_hub(dir.path(), vec![entry("MPS", "MPS-LOST", &lost), entry("MPS", "MPS-NEW", &current)]).await;
    let p = producer(&hub.kafka.bootstrap);
    let early: Vec<OutcomeEvent> = (1..=3).map(|i| op1_arrest("MPS", &format!("e{i}"))).collect();
    let mut records: Vec<_> = early.iter().map(|e| signed(e, "MPS-LOST", &lost)).collect();
    records.push(signed(&op1_arrest("MPS", "e4"), "MPS-NEW", &current));
    send_headed(&p, &hub.kafka.topic, &records).await;
    run_until_caught_up(&hub).await;
    assert_eq!(totals(&hub, "OP-1").joint.arrests, 4);

    // The key is lost: from now on nothing it signs counts.
    hub.trust.keys[0].revoked = true;
    send_headed(&p, &hub.kafka.topic, &[signed(&op1_arrest("MPS", "e5"), "MPS-LOST", &lost)]).await;
    run_until_caught_up(&hub).await;
    assert_eq!(dead_letters(&hub).get("bad-signature"), Some(&1), "{:#?}", refusals(&hub));
    assert_eq!(totals(&hub, "OP-1").joint.arrests, 4, "what arrived before stays until a rebuild");

    // A rebuild applies the revocation to everything received.
    let rebuild_path = dir.path().join("hub.sqlite.rebuild");
    let rebuild = RunningRollup::start_rebuild(&hub).await;
    wait_until("the rebuilt store is swapped in", Duration::from_secs(60), || {
        !rebuild_path.exists() && dead_letters(&hub).get("bad-signature") == Some(&4)
    })
    .await;
    assert_eq!(totals(&hub, "OP-1").joint.arrests, 1, "only e4, signed by the current key");

    // The force resends e1–e3 signed with its current key: the same values,
    // so the same reports, counted again.
    let resent: Vec<_> = early.iter().map(|e| signed(e, "MPS-NEW", &current)).collect();
    assert_eq!(resent.iter().map(|r| &r.1).collect::<Vec<_>>(), records[..3].iter().map(|r| &r.1).collect::<Vec<_>>());
    send_headed(&p, &hub.kafka.topic, &resent).await;
    wait_caught_up(&hub, Duration::from_secs(60)).await;
    rebuild.stop().await;
    let t = totals(&hub, "OP-1");
    assert_eq!((t.joint.arrests, t.forces["MPS"].arrests), (4, 4));
    assert_eq!(dead_letters(&hub).get("bad-signature"), Some(&4), "e1–e3's first copies and e5");
}

fn python() -> PathBuf {
    let py = std::env::var("JOINTOPS_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    let ok = Command::new(&py).args(["-c", "import cryptography"]).status().is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} cannot import cryptography. tests/run.sh makes .venv with it; or set JOINTOPS_TEST_PYTHON to a python that has it.",
        py.display()
    );
    py
}

fn signer(args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/sign_events.py");
    let out = Command::new(python()).arg(script).args(args).output().unwrap();
    assert!(out.status.success(), "sign_events.py failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_signed_by_an_independent_signer_are_counted() {
    // It computes the contract's vector as we do.
    let vector: Vec<String> = signer(&["vector"]).lines().map(String::from).collect();
    let k = SigningKey::from_bytes(&std::array::from_fn(|i| i as u8));
    let (rk, v) = (b"CLIW-2023-10/MPS/MPS-AR-0001", hex::decode("c301ef9df2252ebbaba402").unwrap());
    assert_eq!(
        vector,
        [
            hex::encode(k.verifying_key().as_bytes()),
            hex::encode(jointops::trust::signed_bytes(rk, &v)),
            hex::encode(sign(&k, rk, &v))
        ]
    );

    let dir = tempfile::tempdir().unwrap();
    let events: Vec<OutcomeEvent> = (0..20).map(|i| op1_arrest(["MPS", "KENT"][i % 2], &format!("py-{i}"))).collect();
    let input = dir.path().join("unsigned.txt");
    let lines: String = events
        .iter()
        .map(encoded)
        .map(|(k, v)| format!("{}\t{}\n", String::from_utf8(k).unwrap(), hex::encode(v)))
        .collect();
    std::fs::write(&input, lines).unwrap();
    let output = dir.path().join("signed.txt");
    // One key for both forces' events would be refused: sign each force's
    // with its own key, and give the hub the public keys Python printed.
    let mut keys = Vec::new();
    let mut records = Vec::new();
    for (force, seed) in [("MPS", "11"), ("KENT", "22")] {
        let mine = dir.path().join(format!("{force}.txt"));
        let text = std::fs::read_to_string(&input).unwrap();
        std::fs::write(
            &mine,
            text.lines().filter(|l| l.contains(&format!("/{force}/"))).map(|l| format!("{l}\n")).collect::<String>(),
        )
        .unwrap();
        let id = format!("{force}-PY-1");
        let public_key = signer(&["sign", &seed.repeat(32), &id, mine.to_str().unwrap(), output.to_str().unwrap()]);
        keys.push(TrustKeySettings { public_key: public_key.trim().into(), ..entry(force, &id, &key(0)) });
        for line in std::fs::read_to_string(&output).unwrap().lines() {
            let f: Vec<&str> = line.split('\t').collect();
            let headers = vec![
                (KEY_ID_HEADER.into(), f[2].as_bytes().to_vec()),
                (SIGNATURE_HEADER.into(), hex::decode(f[3]).unwrap()),
            ];
            records.push((f[0].as_bytes().to_vec(), hex::decode(f[1]).unwrap(), headers));
        }
    }
    let hub = signed_hub(dir.path(), keys).await;
    send_headed(&producer(&hub.kafka.bootstrap), &hub.kafka.topic, &records).await;
    run_until_caught_up(&hub).await;
    assert!(refusals(&hub).is_empty(), "{:#?}", refusals(&hub));
    assert_eq!(totals(&hub, "OP-1").joint.arrests, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_generate_makes_a_working_key_and_no_secret_or_identifier_reaches_the_logs_at_info() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_jointops");
    let key_file = dir.path().join("mps.key");
    let out = Command::new(bin)
        .args(["keys", "generate", "--force", "MPS", "--id", "MPS-LOG-1", "--out"])
        .arg(&key_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let entry = String::from_utf8(out.stdout).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    let loaded = jointops::trust::load_signing_key(&key_file).unwrap();
    let (private, public) = (b64(loaded.key.as_bytes()), b64(loaded.key.verifying_key().as_bytes()));
    assert!(entry.contains(&public) && !entry.contains(&private), "{entry}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains(&private));

    // The printed entry, as is, in a hub config that requires signatures.
    let hub = op1_hub(dir.path()).await;
    let config = dir.path().join("hub.toml");
    let k = &hub.kafka;
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbootstrap = {:?}\ntopic = {:?}\ndlq_topic = {:?}\n[store]\npath = \"hub.sqlite\"\n\
             [[operations]]\nid = \"OP-1\"\nstarts = \"2023-10-09T00:00:00Z\"\nends = \"2023-10-16T00:00:00Z\"\n\
             [trust]\nrequire_signatures = true\n{entry}",
            k.bootstrap, k.topic, k.dlq_topic
        ),
    )
    .unwrap();
    let settings = HubSettings::load(&config).unwrap();
    let mut good: Vec<HeadedRecord> =
        (0..5).map(|i| signed(&op1_arrest("MPS", &format!("IDENT-GOOD-{i}")), "MPS-LOG-1", &loaded.key)).collect();
    let mut tampered = signed(&op1_arrest("MPS", "IDENT-TAMPERED"), "MPS-LOG-1", &loaded.key);
    tampered.1 = Registry::builtin().encode(&op1_arrest("MPS", "IDENT-TAMPERED-2"));
    let forged = signed(&op1_arrest("KENT", "IDENT-FORGED"), "MPS-LOG-1", &loaded.key);
    let (uk, uv) = encoded(&op1_arrest("MPS", "IDENT-UNSIGNED"));
    good.extend([tampered, forged, (uk, uv, vec![])]);
    send_headed(&producer(&k.bootstrap), &k.topic, &good).await;

    let log = dir.path().join("rollup.log");
    let mut child = Command::new(bin)
        .args(["rollup", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_caught_up(&settings, Duration::from_secs(60)).await;
    let term = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(term.success());
    assert!(child.wait().unwrap().success());
    assert_eq!(totals(&settings, "OP-1").joint.arrests, 5);
    assert_eq!(dead_letters(&settings).values().sum::<i64>(), 3);

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("Rollup stopped."), "{text}");
    let signatures: Vec<String> = good.iter().flat_map(|r| r.2.iter().skip(1)).map(|(_, s)| hex::encode(s)).collect();
    let mut secret = vec![private, public, "IDENT-".into(), "OP-1/MPS/".into(), "MPS-LOG-1".into()];
    secret.extend(signatures.iter().cloned());
    secret.extend(good.iter().flat_map(|r| r.2.iter().skip(1)).map(|(_, s)| b64(s)));
    for s in secret {
        assert!(!text.contains(&s), "the info log holds {s:?}:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_signs_each_forces_events_with_its_key_and_a_hub_requiring_signatures_counts_them_all() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_jointops");
    let mut hub = hub(
        dir.path(),
        vec![operation(jointops::loadgen::OPERATION, "2023-10-01T00:00:00Z", "2023-11-01T00:00:00Z", None)],
    );
    hub.trust.require_signatures = true;
    let mut key_args = Vec::new();
    for force in jointops::loadgen::FORCES {
        let file = dir.path().join(format!("{force}.key"));
        let key = jointops::trust::generate(force, &format!("LOAD-{force}")).unwrap();
        jointops::trust::write_signing_key(&file, &key).unwrap();
        hub.trust.keys.push(entry(force, &key.id, &key.key));
        key_args.extend(["--signing-key".to_string(), file.display().to_string()]);
    }
    let config = dir.path().join("hub.toml");
    let k = &hub.kafka;
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbootstrap = {:?}\ntopic = {:?}\ndlq_topic = {:?}\n[store]\npath = \"hub.sqlite\"\n",
            k.bootstrap, k.topic, k.dlq_topic
        ),
    )
    .unwrap();
    let out = Command::new(bin)
        .args(["loadgen", "--reports", "300", "--seed", "5", "--config"])
        .arg(&config)
        .args(&key_args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    run_until_caught_up(&hub).await;
    assert!(refusals(&hub).is_empty(), "{:#?}", refusals(&hub));
    let mut reference = Engine::new();
    for e in jointops::loadgen::generate(300, 5) {
        let _ = reference.apply(e);
    }
    assert_eq!(&totals(&hub, jointops::loadgen::OPERATION), reference.totals(jointops::loadgen::OPERATION).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_signed_by_a_key_the_hub_did_not_know_is_replayed_once_the_key_is_added() {
    let dir = tempfile::tempdir().unwrap();
    let (known, new) = (key(31), key(32));
    let mut hub = signed_hub(dir.path(), vec![entry("MPS", "MPS-1", &known)]).await;
    let early = signed(&op1_arrest("MPS", "early-key"), "MPS-2", &new);
    send_headed(&producer(&hub.kafka.bootstrap), &hub.kafka.topic, &[early]).await;
    run_until_caught_up(&hub).await;
    assert_eq!(dead_letters(&hub).get("bad-signature"), Some(&1));

    let outcome = jointops::rollup::replay::replay(&hub, None, false).await.unwrap();
    assert!(outcome.replayed.is_empty(), "{outcome:?}");
    assert_eq!(outcome.still_refused[0].2, "unknown key id MPS-2");

    // The force's new key reaches the hub: the record, with its original
    // headers, now passes and counts once.
    hub.trust.keys.push(entry("MPS", "MPS-2", &new));
    let outcome = jointops::rollup::replay::replay(&hub, None, false).await.unwrap();
    assert_eq!(outcome.replayed.len(), 1, "{outcome:?}");
    run_until_caught_up(&hub).await;
    assert_eq!(totals(&hub, "OP-1").joint.arrests, 1);
    assert!(jointops::rollup::replay::replay(&hub, None, false).await.unwrap().replayed.is_empty());
}

//! The agent and its operations' pseudonymisation secrets, on the real
//! broker: a secret that is not the one the ledger published with is refused
//! unless the change is accepted explicitly.

mod common;

use common::*;

const OP: &str = "OP-SECRET";

fn export(dir: &std::path::Path) -> std::path::PathBuf {
    let rows = [
        format!(
            r#"{{"record_id":"J1","kind":"line_closure","operation":"{OP}","occurred_at":"2023-10-10T12:00:00Z","joint_ref":"07700 900123"}}"#
        ),
        format!(
            r#"{{"record_id":"J2","kind":"arrest","operation":"{OP}","occurred_at":"2023-10-10T12:00:00Z","joint_ref":"JA-1","offence_group":"WEAPONS"}}"#
        ),
        format!(
            r#"{{"record_id":"S1","kind":"engagement","operation":"{OP}","occurred_at":"2023-10-10T12:00:00Z","people":4}}"#
        ),
    ];
    let path = dir.join("export.jsonl");
    std::fs::write(&path, rows.join("\n")).unwrap();
    path
}

/// Regression: a changed secret (seen: a trailing space in the environment
/// variable) made the agent withdraw every joint outcome and report it again
/// under new references, without a word.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_secret_is_refused_instead_of_re_keying_every_joint_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path(), vec![]);
    create_topics(&hub).await;
    let file = export(dir.path());
    let state = dir.path().join("state");
    let first = agent(&hub, "MPS", state.clone(), &[(OP, "s-1")]);
    let s = jointops::agent::publish_files(&first, std::slice::from_ref(&file), false).await.unwrap();
    assert_eq!(s.total().published, 3);

    let spaced = agent(&hub, "MPS", state.clone(), &[(OP, "s-1 ")]);
    let e = jointops::agent::publish_files(&spaced, std::slice::from_ref(&file), false).await.unwrap_err().to_string();
    assert!(e.contains("operation OP-SECRET") && e.contains("not the one the ledger"), "{e}");
    assert!(e.contains("--accept-secret-change OP-SECRET") && !e.contains("s-1"), "{e}");
    assert_eq!(consume_events(&hub.kafka.bootstrap, &hub.kafka.topic).len(), 3, "nothing re-keyed");

    // An agreed change, accepted once: the joint outcomes move to their new
    // references; from then on the new secret is the ledger's.
    let mut changed = agent(&hub, "MPS", state.clone(), &[(OP, "s-2")]);
    changed.accept_secret_change.insert(OP.to_string());
    let s = jointops::agent::publish_files(&changed, std::slice::from_ref(&file), false).await.unwrap();
    assert_eq!((s.total().published, s.total().withdrawn, s.total().unchanged), (4, 2, 1));
    changed.accept_secret_change.clear();
    let s = jointops::agent::publish_files(&changed, std::slice::from_ref(&file), false).await.unwrap();
    assert_eq!((s.total().published, s.total().unchanged), (0, 3));
    let e = jointops::agent::publish_files(&first, &[file], false).await.unwrap_err().to_string();
    assert!(e.contains("not the one the ledger"), "going back is a change too: {e}");

    // A name that is not configured is a mistake, not a permission.
    let mut typo = changed.clone();
    typo.accept_secret_change.insert("OP-SECRT".into());
    let e = jointops::agent::publish_files(&typo, &[], false).await.unwrap_err().to_string();
    assert!(e.contains("--accept-secret-change OP-SECRT: no such operation"), "{e}");
}

//! The agent's half of contract §7 on a real broker: every record it sends
//! is signed with its force's key, a key file others may read or a key of
//! another force stops it before anything is sent, and after a key is lost
//! and revoked, `agent resend` with the new key makes its reports count
//! again (the outbox keeps values, and signing happens as they are sent).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use jointops::config::{AgentSettings, HubSettings, TrustKeySettings};
use jointops::trust::{generate, write_signing_key, LoadedKey};

const EXPORT: &str = "record_id,kind,operation,occurred_at,offence_group\n\
    A1,arrest,OP-1,2023-10-10T09:00:00Z,DRUG_SUPPLY\n\
    A2,arrest,OP-1,2023-10-10T10:00:00Z,WEAPONS\n\
    A3,arrest,OP-1,2023-10-11T10:00:00Z,OTHER\n";

fn key_file(dir: &Path, force: &str, id: &str) -> (PathBuf, LoadedKey) {
    let path = dir.join(format!("{id}.key"));
    let key = generate(force, id).unwrap();
    write_signing_key(&path, &key).unwrap();
    (path, key)
}

fn trusted(key: &LoadedKey) -> TrustKeySettings {
    use base64::Engine as _;
    TrustKeySettings {
        force: key.force.clone(),
        id: key.id.clone(),
        public_key: base64::engine::general_purpose::STANDARD.encode(key.key.verifying_key().as_bytes()),
        not_before: None,
        not_after: None,
        revoked: false,
    }
}

fn mps_agent(hub: &HubSettings, dir: &Path, key: &Path) -> AgentSettings {
    let mut a = agent(hub, "MPS", dir.join("state"), &[("OP-1", "op1-secret")]);
    a.signing_key = Some(key.to_path_buf());
    a
}

async fn caught_up(hub: &HubSettings) {
    let rollup = RunningRollup::start(hub).await;
    wait_caught_up(hub, Duration::from_secs(60)).await;
    rollup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_stops_counting_and_a_resend_with_the_new_key_counts_again() {
    let dir = tempfile::tempdir().unwrap();
    let (old_path, old) = key_file(dir.path(), "MPS", "MPS-OLD");
    let (new_path, new) = key_file(dir.path(), "MPS", "MPS-NEW");
    let mut hub = op1_hub(dir.path()).await;
    hub.trust.require_signatures = true;
    hub.trust.keys = vec![trusted(&old), trusted(&new)];
    let export = dir.path().join("export.csv");
    std::fs::write(&export, EXPORT).unwrap();

    jointops::agent::publish_files(&mps_agent(&hub, dir.path(), &old_path), &[export], false).await.unwrap();
    caught_up(&hub).await;
    assert_eq!(totals(&hub, "OP-1").joint.arrests, 3, "signed with MPS-OLD, which the hub trusts");

    // MPS-OLD is lost: revoked, and a rebuild applies that to everything.
    hub.trust.keys[0].revoked = true;
    let rebuild = RunningRollup::start_rebuild(&hub).await;
    let rebuilt = dir.path().join("hub.sqlite.rebuild");
    wait_until("the rebuild is swapped in", Duration::from_secs(60), || {
        !rebuilt.exists() && dead_letters(&hub).get("bad-signature") == Some(&3)
    })
    .await;
    assert_eq!(totals(&hub, "OP-1").joint.arrests, 0, "nothing MPS-OLD signed counts");

    // The force switches to MPS-NEW and resends: the same reports, counted again.
    let resent = jointops::agent::resend(&mps_agent(&hub, dir.path(), &new_path), false).await.unwrap();
    assert_eq!(resent, 3);
    wait_caught_up(&hub, Duration::from_secs(60)).await;
    rebuild.stop().await;
    let t = totals(&hub, "OP-1");
    assert_eq!((t.joint.arrests, t.forces["MPS"].arrests), (3, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_others_may_read_or_of_another_force_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let hub = op1_hub(dir.path()).await;
    let export = dir.path().join("export.csv");
    std::fs::write(&export, EXPORT).unwrap();
    let (readable, _) = key_file(dir.path(), "MPS", "MPS-OPEN");
    std::fs::set_permissions(&readable, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (kents, _) = key_file(dir.path(), "KENT", "KENT-1");

    for (key, expected) in [(&readable, "may be read by others"), (&kents, "belongs to KENT")] {
        let settings = mps_agent(&hub, dir.path(), key);
        let e = jointops::agent::publish_files(&settings, std::slice::from_ref(&export), false).await.unwrap_err();
        assert!(e.to_string().contains(expected), "{e}");
        assert!(!e.to_string().contains("private_key"), "{e}");
    }
    caught_up(&hub).await;
    assert_eq!(totals(&hub, "OP-1").joint.arrests, 0, "nothing was sent");
}

/// `agent watch` signs too: a file dropped in its inbox counts on a hub
/// that requires signatures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_watch_signs_every_record_it_sends() {
    let dir = tempfile::tempdir().unwrap();
    let (path, key) = key_file(dir.path(), "MPS", "MPS-WATCH");
    let mut hub = op1_hub(dir.path()).await;
    hub.trust.require_signatures = true;
    hub.trust.keys = vec![trusted(&key)];
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    drop_file(&inbox, "export.csv", EXPORT);
    let w = RunningWatcher::start(&mps_agent(&hub, dir.path(), &path), &inbox);
    let receipt = inbox.join("done").join("export.csv.receipt.json");
    wait_until("the file delivered", Duration::from_secs(60), || receipt.exists()).await;
    w.stop().await;
    caught_up(&hub).await;
    assert_eq!(totals(&hub, "OP-1").joint.arrests, 3, "{:?}", dead_letters(&hub));
}

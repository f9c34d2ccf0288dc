//! Tests of the agent's operation settings: secrets, windows and forces.

use std::path::{Path, PathBuf};

use super::AgentSettings;

fn write(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("c.toml");
    std::fs::write(&p, text).unwrap();
    private(&p);
    p
}

fn private(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Regression: a secret with a trailing space (from an environment
/// variable) was taken as a new secret and re-keyed every joint outcome.
#[test]
fn a_secret_with_leading_or_trailing_white_space_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for secret in ["hunter2 ", " hunter2", "hunter2\n", "\thunter2"] {
        let text = format!(
            "force = \"MPS\"\nstate_dir = \"s\"\n[kafka]\n[operations.op_a]\nid = \"OP-A\"\nsecret = {secret:?}\n"
        );
        let p = write(dir.path(), &text);
        private(&p);
        let e = AgentSettings::load(&p).unwrap_err().to_string();
        assert!(e.contains("operations.op_a.secret begins or ends with white space"), "{secret:?}: {e}");
        assert!(e.contains("JOINTOPS__OPERATIONS__OP_A__SECRET") && !e.contains("hunter2"), "{e}");
    }
    let p = write(
        dir.path(),
        "force = \"MPS\"\nstate_dir = \"s\"\n[kafka]\n[operations.op_a]\nid = \"OP-A\"\nsecret = \"a b\"\n",
    );
    private(&p);
    assert!(AgentSettings::load(&p).is_ok(), "white space inside a secret is the secret's own");
}

#[test]
fn agent_operation_windows_and_forces_are_read_once_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let agent = |extra: &str| {
        let p = write(
            dir.path(),
            &format!(
                "force = \"MPS\"\nstate_dir = \"s\"\n[kafka]\n[operations.op_a]\nid = \"OP-A\"\nsecret = \"x\"\n{extra}"
            ),
        );
        private(&p);
        AgentSettings::load(&p)
    };
    let s =
        agent("starts = \"2023-10-09T00:00:00+01:00\"\nends = \"2023-10-16T00:00:00Z\"\nforces = [\"MPS\"]\n").unwrap();
    let op = s.operation("OP-A").unwrap();
    assert_eq!((op.starts, op.ends), (Some(1_696_806_000_000), Some(1_697_414_400_000)));
    assert_eq!(op.forces.as_ref().unwrap().len(), 1);
    let e = agent("starts = \"9 October\"\n").unwrap_err().to_string();
    assert!(e.contains("\"9 October\" is not RFC 3339"), "{e}");
    let e = agent("starts = \"2023-10-16T00:00:00Z\"\nends = \"2023-10-09T00:00:00Z\"\n").unwrap_err().to_string();
    assert!(e.contains("starts 2023-10-16T00:00:00.000Z is not before ends 2023-10-09T00:00:00.000Z"), "{e}");
    let e = agent("forces = [\"mps\"]\n").unwrap_err().to_string();
    assert!(e.contains("operations.op_a.forces"), "{e}");
}

/// Mounted container secrets are files: one trailing newline (as `echo`
/// and most tools write it) is not the secret's; the file must be the
/// owner's only, and naming both a secret and a file is refused.
#[test]
fn a_secret_can_come_from_a_file_of_the_owners_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("op-a.secret");
    std::fs::write(&secret, "hunter2\n").unwrap();
    private(&secret);
    let text = "force = \"MPS\"\nstate_dir = \"s\"\n[kafka]\n[operations.op_a]\nid = \"OP-A\"\nsecret_file = \"op-a.secret\"\n";
    let p = write(dir.path(), text);
    let s = AgentSettings::load(&p).unwrap();
    assert_eq!(s.secret_for("OP-A").map(|s| s.expose()), Some("hunter2"));
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = AgentSettings::load(&p).unwrap_err().to_string();
    assert!(e.contains("op-a.secret") && e.contains("mode 644") && !e.contains("hunter2"), "{e}");
    private(&secret);
    std::fs::write(&secret, "hunter2 \n").unwrap();
    let e = AgentSettings::load(&p).unwrap_err().to_string();
    assert!(e.contains("begins or ends with white space"), "only one newline is trimmed: {e}");
    let both = write(dir.path(), &text.replace("secret_file", "secret = \"x\"\nsecret_file"));
    let e = AgentSettings::load(&both).unwrap_err().to_string();
    assert!(e.contains("both secret and secret_file"), "{e}");
}

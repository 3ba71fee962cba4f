//! Bad input gets one clear line and exit code 2, with no panic and no orphaned child
//! process: an unparseable URL, an unreachable coordinator, an unreachable target.

#![allow(clippy::disallowed_types)] // these tests wait on real processes, in real time

use rackload_tests::*;

fn check_refused(tag: &str, args: &[&str], expect: &[&str]) {
    let mut cmd = rackload(tag);
    cmd.args(args);
    let out = run_with_timeout(cmd, 60.0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(lines.len(), 1, "one error line: {stderr}");
    for e in expect {
        assert!(lines[0].contains(e), "{:?} lacks {e:?}", lines[0]);
    }
    assert_no_processes_left(tag);
}

#[test]
fn unparseable_url_names_the_flag() {
    let tag = new_tag("bad-url");
    check_refused(
        &tag,
        &["run", "--base-url", "http//nowhere"],
        &["--base-url", "http//nowhere"],
    );
    check_refused(
        &tag,
        &[
            "run",
            "--coordinator",
            "127.0.0.1:7400",
            "--base-url",
            "http://127.0.0.1:9",
        ],
        &["--coordinator"],
    );
}

#[test]
fn unreachable_coordinator_is_named() {
    let tag = new_tag("no-coord");
    let url = format!("http://127.0.0.1:{}", closed_port());
    check_refused(
        &tag,
        &[
            "run",
            "--coordinator",
            &url,
            "--base-url",
            "http://127.0.0.1:9",
            "--model",
            "m",
        ],
        &["cannot reach coordinator", &url],
    );
}

#[test]
fn unreachable_target_is_named_and_children_are_reaped() {
    let tag = new_tag("no-target");
    let url = format!("http://127.0.0.1:{}", closed_port());
    let results = tempfile::tempdir().expect("tempdir");
    let dir = results.path().to_string_lossy().into_owned();
    // With --model the workers find out (their pre-flight check); without, the CLI does.
    check_refused(
        &tag,
        &[
            "run",
            "--base-url",
            &url,
            "--model",
            "m",
            "--results-dir",
            &dir,
        ],
        &["cannot reach target", &url],
    );
    check_refused(
        &tag,
        &["run", "--base-url", &url, "--results-dir", &dir],
        &[&url],
    );
}

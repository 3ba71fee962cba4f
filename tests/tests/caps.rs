//! A worker is aimed only where its operator allows: a plan for a target outside its
//! `--allow-target` list, or above its `--max-inflight`, is refused with a message that
//! reaches the CLI, and not one request is sent.

#![allow(clippy::disallowed_types)] // these tests wait on real processes, in real time

use rackload_tests::*;

fn run(tag: &str, coord: &str, sim: &str, concurrency: &str) -> (Option<i32>, String) {
    let results = tempfile::tempdir().expect("tempdir");
    let mut cmd = rackload(tag);
    cmd.args([
        "run",
        "--coordinator",
        coord,
        "--workers",
        "1",
        "--base-url",
        sim,
        "--max-concurrency",
        concurrency,
        "--num-prompts",
        "8",
        "--warmup",
        "0",
        "--random-output-len",
        "4",
        "--results-dir",
    ])
    .arg(results.path());
    let out = run_with_timeout(cmd, 60.0);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (out.status.code(), stderr)
}

#[test]
fn plans_outside_the_allowlist_or_over_the_caps_are_refused() {
    let tag = new_tag("caps");
    let (_sim, sim_url) = start_sim(&tag, &["--ttft-ms", "1", "--itl-ms", "1"]);
    // A worker that may only aim at 10.0.0.0/8.
    let (_c1, coord1) = start_coordinator(&tag);
    let _w1 = start_worker_with(&tag, &coord1, "fenced", &["--allow-target", "10.0.0.0/8"]);
    let (code, stderr) = run(&tag, &coord1, &sim_url, "2");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--allow-target") && stderr.contains(&sim_url),
        "{stderr}"
    );
    assert_eq!(
        count(&get_json(&sim_url, "/stats")["received"]),
        0,
        "nothing was sent"
    );

    // A worker allowed loopback but at most 4 in flight.
    let (_c2, coord2) = start_coordinator(&tag);
    let _w2 = start_worker_with(
        &tag,
        &coord2,
        "capped",
        &["--allow-target", "127.0.0.0/8", "--max-inflight", "4"],
    );
    let (code, stderr) = run(&tag, &coord2, &sim_url, "8");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--max-inflight"), "{stderr}");
    assert_eq!(count(&get_json(&sim_url, "/stats")["received"]), 0);
    let (code, stderr) = run(&tag, &coord2, &sim_url, "4");
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(count(&get_json(&sim_url, "/stats")["received"]), 8);
}

//! The distributed fabric under failure, every part a real process on loopback: a worker
//! of another protocol version is refused; a worker killed mid-point costs its in-flight
//! requests, never the run; a killed coordinator stops every worker's load within the
//! lease and leaves finished points on disk.

#![allow(clippy::disallowed_types)] // these tests wait on real processes, in real time

use std::process::Stdio;
use std::time::Duration;

use rackload_tests::*;

fn wait_exit(child: &mut std::process::Child, secs: f64) -> Option<i32> {
    let mut status = None;
    wait_until(secs, "the CLI to exit", || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    status.and_then(|s| s.code())
}

#[test]
fn a_worker_of_another_protocol_version_is_refused_with_a_clear_message() {
    let tag = new_tag("version");
    let (_coord, url) = start_server(
        &tag,
        "coordinator",
        &["coordinator", "--listen", "127.0.0.1:0"],
    );
    let mut cmd = rackload(&tag);
    cmd.args([
        "worker",
        "--coordinator",
        &url,
        "--id",
        "old-one",
        "--protocol-version",
        "99",
    ]);
    let out = run_with_timeout(cmd, 30.0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("refused worker old-one") && stderr.contains("protocol version 99"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"));
    // and it is not in the fleet
    let mut cmd = rackload(&tag);
    cmd.args(["workers", "--coordinator", &url]);
    let out = run_with_timeout(cmd, 30.0);
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("old-one"));
}

#[test]
fn killing_a_worker_mid_point_degrades_the_point_and_later_points_use_the_rest() {
    let tag = new_tag("kill-worker");
    let (_sim, sim) = start_server(
        &tag,
        "sim",
        &[
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--ttft-ms",
            "5",
            "--itl-ms",
            "5",
        ],
    );
    let (_coord, coord) = start_server(
        &tag,
        "coordinator",
        &["coordinator", "--listen", "127.0.0.1:0"],
    );
    let mut workers: Vec<Proc> = (1..=3)
        .map(|k| start_worker(&tag, &coord, &format!("w{k}")))
        .collect();
    wait_until(20.0, "three workers", || {
        let mut cmd = rackload(&tag);
        cmd.args(["workers", "--coordinator", &coord]);
        String::from_utf8_lossy(&run_with_timeout(cmd, 30.0).stderr).contains("3 worker(s)")
    });
    let results = tempfile::tempdir().expect("tempdir");
    let mut cli = rackload(&tag)
        .args([
            "run",
            "--coordinator",
            &coord,
            "--base-url",
            &sim,
            "--workers",
            "3",
            "--max-concurrency",
            "6,4",
            "--num-prompts",
            "48",
            "--warmup",
            "0",
            "--random-input-len",
            "16",
            "--random-output-len",
            "150",
            "--random-range-ratio",
            "1",
        ])
        .arg("--results-dir")
        .arg(results.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the run");
    wait_until(30.0, "the first point to be under way", || {
        count(&get_json(&sim, "/stats")["served"]) >= 6
    });
    // Past the first 1-second report, w2 dies with requests in flight. (The coordinator
    // knows a worker's counts as of its last report.)
    pause(1.5);
    let victim = workers.remove(1);
    drop(victim);
    let code = wait_exit(&mut cli, 90.0);
    let mut stderr = String::new();
    if let Some(mut e) = cli.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut stderr);
    }
    assert_eq!(code, Some(0), "the run finishes: {stderr}");
    let run = run_json(results.path()).expect("run.json");
    let (first, second) = (&run["points"][0], &run["points"][1]);
    assert_eq!(first["degraded"], true, "{first}");
    assert_eq!(first["lost_workers"], serde_json::json!(["w2"]));
    assert_eq!(
        count(&first["sent"]),
        count(&first["completed"]) + count(&first["failed"]) + count(&first["lost"]),
        "{first}"
    );
    assert!(
        count(&first["lost"]) > 0,
        "w2 had requests in flight: {first}"
    );
    // later points use the remaining workers, whole again
    let ids: Vec<&str> = second["workers"]
        .as_array()
        .expect("workers")
        .iter()
        .filter_map(|w| w["id"].as_str())
        .collect();
    assert_eq!(ids, ["w1", "w3"]);
    assert_eq!(second["degraded"], false);
    assert_eq!(
        (count(&second["completed"]), count(&second["lost"])),
        (48, 0)
    );
    assert!(!stderr.contains("panicked"));
}

#[test]
fn killing_the_coordinator_stops_every_workers_load_within_the_lease() {
    let tag = new_tag("kill-coordinator");
    let (_sim, sim) = start_server(
        &tag,
        "sim",
        &[
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--ttft-ms",
            "5",
            "--itl-ms",
            "20",
        ],
    );
    let (coord_proc, coord) = start_server(
        &tag,
        "coordinator",
        &["coordinator", "--listen", "127.0.0.1:0"],
    );
    let _workers: Vec<Proc> = (1..=2)
        .map(|k| start_worker(&tag, &coord, &format!("w{k}")))
        .collect();
    let results = tempfile::tempdir().expect("tempdir");
    // A short first point, then one that would run for minutes.
    let mut cli = rackload(&tag)
        .args([
            "run",
            "--coordinator",
            &coord,
            "--base-url",
            &sim,
            "--workers",
            "2",
            "--max-concurrency",
            "2,4",
            "--num-prompts",
            "400",
            "--warmup",
            "0",
            "--random-input-len",
            "16",
            "--random-output-len",
            "600",
            "--random-range-ratio",
            "1",
            "--worker-wait",
            "20",
        ])
        .arg("--results-dir")
        .arg(results.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the run");
    // The first point is long too at 600 tokens × 20 ms; kill during point one once the
    // load is flowing. (Finished points on disk are checked by the e2e Ctrl-C test and
    // by run.json's status here.)
    wait_until(30.0, "load in flight", || {
        count(&get_json(&sim, "/stats")["in_flight"]) >= 2
    });
    pause(0.5);
    drop(coord_proc); // SIGKILL
    let killed = std::time::Instant::now();
    // Nothing new is sent once the workers know, and in-flight requests end within the
    // 5 s lease.
    wait_until(10.0, "the workers' load to stop", || {
        count(&get_json(&sim, "/stats")["in_flight"]) == 0
    });
    let stopped_after = killed.elapsed();
    let received = count(&get_json(&sim, "/stats")["received"]);
    pause(1.5);
    assert_eq!(
        count(&get_json(&sim, "/stats")["received"]),
        received,
        "no request after the stop"
    );
    assert!(
        stopped_after <= Duration::from_secs_f64(5.0 + 2.5 * patience()),
        "{stopped_after:?}"
    );
    let code = wait_exit(&mut cli, 30.0);
    assert_eq!(code, Some(2));
    let run = run_json(results.path()).expect("run.json");
    assert_eq!(
        run["status"], "failed",
        "run.json says the run did not finish: {run}"
    );
    assert!(
        run["message"]
            .as_str()
            .unwrap_or("")
            .contains("coordinator"),
        "{}",
        run["message"]
    );
}

#[test]
fn a_run_past_the_coordinators_max_run_duration_is_aborted() {
    let tag = new_tag("max-run");
    let (_sim, sim) = start_server(
        &tag,
        "sim",
        &[
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--ttft-ms",
            "5",
            "--itl-ms",
            "20",
        ],
    );
    let (_coord, coord) = start_server(
        &tag,
        "coordinator",
        &[
            "coordinator",
            "--listen",
            "127.0.0.1:0",
            "--max-run-duration",
            "2",
        ],
    );
    let _w = start_worker(&tag, &coord, "w1");
    let results = tempfile::tempdir().expect("tempdir");
    let mut cmd = rackload(&tag);
    cmd.args([
        "run",
        "--coordinator",
        &coord,
        "--base-url",
        &sim,
        "--workers",
        "1",
        "--max-concurrency",
        "2",
        "--num-prompts",
        "1000",
        "--random-output-len",
        "500",
    ])
    .arg("--results-dir")
    .arg(results.path());
    let out = run_with_timeout(cmd, 30.0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--max-run-duration"), "{stderr}");
    let run = run_json(results.path()).expect("run.json");
    assert_eq!(run["status"], "aborted");
    wait_until(10.0, "the worker's load to stop", || {
        count(&get_json(&sim, "/stats")["in_flight"]) == 0
    });
}

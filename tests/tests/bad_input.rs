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

/// `rackload run` on the standing coordinator at `url` (against a target nothing listens
/// on: these runs are refused before any request).
fn standing_run(url: &str) -> [&str; 7] {
    [
        "run",
        "--coordinator",
        url,
        "--base-url",
        "http://127.0.0.1:9",
        "--model",
        "m",
    ]
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
        &standing_run(&url),
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

/// Numbers and names that broke things before they were bounded where they enter: a
/// shard count past any run (it panicked allocating), a worker id that is empty, huge, or
/// carries a newline that would forge a row in `rackload workers`, and a sim profile
/// whose step would never end (the engine panicked and requests hung to their timeout).
#[test]
fn numbers_and_names_are_bounded_where_they_enter() {
    let tag = new_tag("bounded");
    check_refused(
        &tag,
        &[
            "workload",
            "sample",
            "--shard",
            "0/18446744073709551615",
            "--num-prompts",
            "3",
        ],
        &["--shard", "at most 10000"],
    );
    let huge = "w".repeat(100_000);
    for (id, why) in [
        ("", "cannot be empty"),
        (huge.as_str(), "at most 128"),
        ("w1\nw9 idle", "letters, digits"),
    ] {
        check_refused(
            &tag,
            &["worker", "--coordinator", "http://127.0.0.1:9", "--id", id],
            &["--id", why],
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let profile = dir.path().join("slow.toml");
    std::fs::write(
        &profile,
        "name = \"slow\"\ngpus_per_replica = 1\nmax_num_seqs = 8\nmax_num_batched_tokens = 64\nkv_cache_tokens = 1000\nstep_fixed_us = 1e30\nstep_per_seq_us = 1\nstep_per_kv_token_ns = 1\nprefill_tokens_per_s = 1000\n",
    )
    .expect("profile");
    check_refused(
        &tag,
        &[
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--profile",
            profile.to_str().expect("utf-8"),
        ],
        &["step_fixed_us", "at most 60"],
    );
}

/// A point too short for any request to end says so, rather than "0 of 0 requests
/// failed", and fails its gate (exit 1: nothing was measured).
#[test]
fn a_point_that_measured_nothing_says_so() {
    let tag = new_tag("nothing-measured");
    let results = tempfile::tempdir().expect("tempdir");
    let mut cmd = rackload(&tag);
    cmd.args([
        "run",
        "--duration",
        "0.001",
        "--sim-ttft-ms",
        "50",
        "--sim-itl-ms",
        "1",
    ])
    .arg("--results-dir")
    .arg(results.path());
    let out = run_with_timeout(cmd, 60.0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no measured request ended"), "{stderr}");
    assert!(!stderr.contains("0 of 0"), "{stderr}");
    assert_no_processes_left(&tag);
}

/// A worker pointed at a server that answers but is no coordinator (here the sim) says
/// so and gives up after --connect-wait, instead of retrying every 200 ms forever in
/// silence; its logs, sent to a pipe, carry no terminal colour codes. The CLI's commands
/// pointed there say so too.
#[test]
fn a_worker_facing_no_coordinator_says_so_within_its_connect_wait() {
    let (_sim, url) = start_sim(
        &new_tag("not-a-coordinator-sim"),
        &["--ttft-ms", "1", "--itl-ms", "1"],
    );
    let tag = new_tag("not-a-coordinator");
    let started = std::time::Instant::now();
    let mut cmd = rackload(&tag);
    cmd.args(["worker", "--coordinator", &url, "--connect-wait", "2"])
        .env("RUST_LOG", "info");
    let out = run_with_timeout(cmd, 30.0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("is this a rackload coordinator"),
        "{stderr}"
    );
    assert!(stderr.contains("retrying"), "the wait is said: {stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "no colour codes in a pipe: {stderr:?}"
    );
    assert!(started.elapsed().as_secs_f64() < 20.0 * patience());
    assert_no_processes_left(&tag);
    // The CLI's calls at it say the same, not tonic's "grpc-status header missing".
    for args in [
        &["workers", "--coordinator", &url][..],
        &["abort", "--coordinator", &url, "some-run"],
        &standing_run(&url),
    ] {
        check_refused(
            &tag,
            args,
            &["answered HTTP 404", "is this a rackload coordinator"],
        );
    }
}

/// A port that accepts and never answers is not waited on for minutes: `rackload abort`
/// and `rackload run --coordinator` give up after 10 s, a worker after its --connect-wait,
/// saying what they waited for.
#[test]
fn a_silent_coordinator_is_not_waited_on_for_minutes() {
    let tag = new_tag("silent-coordinator");
    // Bound, listening, never accepting: connections complete, nothing ever answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", silent.local_addr().expect("addr"));
    let started = std::time::Instant::now();
    check_refused(
        &tag,
        &["abort", "--coordinator", &url, "some-run"],
        &["did not answer within 10 s"],
    );
    check_refused(&tag, &standing_run(&url), &["did not answer within 10 s"]);
    // A worker's handshake there is bounded by its --connect-wait, and says why.
    check_refused(
        &tag,
        &["worker", "--coordinator", &url, "--connect-wait", "2"],
        &["opened no session", "is this a rackload coordinator"],
    );
    assert!(started.elapsed().as_secs_f64() < 50.0 * patience());
    drop(silent);
}

/// `rackload certs` never silently replaces a set (a new CA would not vouch for the
/// certificates already handed out): it refuses without --force, names the files, and
/// leaves them as they were; with --force it replaces them, and no temporary is left.
#[test]
fn certs_refuse_to_replace_a_set_without_force() {
    let tag = new_tag("certs-force");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().to_str().expect("utf-8");
    let mut first = rackload(&tag);
    first.args(["certs", "--out", out]);
    assert!(run_with_timeout(first, 30.0).status.success());
    let ca = std::fs::read(dir.path().join("ca.pem")).expect("ca.pem");
    check_refused(
        &tag,
        &["certs", "--out", out],
        &["already holds", "--force"],
    );
    assert_eq!(
        std::fs::read(dir.path().join("ca.pem")).expect("ca.pem"),
        ca
    );
    check_refused(
        &tag,
        &["certs", "--out", out, "--force", "--hosts", "ok,bad\nname"],
        &["--hosts", "not a host name"],
    );
    let mut forced = rackload(&tag);
    forced.args(["certs", "--out", out, "--force"]);
    assert!(run_with_timeout(forced, 30.0).status.success());
    assert_ne!(
        std::fs::read(dir.path().join("ca.pem")).expect("ca.pem"),
        ca
    );
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 7, "the set, and no temporary: {names:?}");
}

/// A header that would change how a request is framed or routed is refused where it
/// enters, flag or scenario file, naming it.
#[test]
fn headers_that_frame_or_route_a_request_are_refused() {
    let tag = new_tag("framing-headers");
    check_refused(
        &tag,
        &[
            "run",
            "--header",
            "Transfer-Encoding: chunked",
            "--num-prompts",
            "1",
        ],
        &["--header", "Transfer-Encoding", "cannot be set"],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("s.toml");
    std::fs::write(&file, "[target]\nheaders = { \"Host\" = \"elsewhere\" }\n").expect("write");
    check_refused(
        &tag,
        &["run", file.to_str().expect("utf-8"), "--num-prompts", "1"],
        &["target.headers", "Host", "cannot be set"],
    );
}

/// `--connect-wait` on the CLI's side of a standing coordinator: a `run` started before
/// its coordinator (a job beside it) says it is waiting and goes on once it is up; a
/// `workers` facing nothing gives up after its wait, saying how long it tried.
#[test]
fn a_client_started_before_its_coordinator_waits_for_it() {
    let tag = new_tag("connect-wait");
    let port = closed_port();
    let url = format!("http://127.0.0.1:{port}");
    let (_sim, sim) = start_sim(&tag, &["--ttft-ms", "1", "--itl-ms", "1"]);
    let (up_tx, up_rx) = std::sync::mpsc::channel::<()>();
    let (tag2, url2) = (tag.clone(), url.clone());
    let fabric = std::thread::spawn(move || {
        pause(1.5);
        let listen = format!("127.0.0.1:{port}");
        let (coordinator, _) =
            start_server(&tag2, "coordinator", &["coordinator", "--listen", &listen]);
        let worker = start_worker(&tag2, &url2, "w1");
        // Kept up until the run is over.
        let _ = up_rx.recv_timeout(std::time::Duration::from_secs(120));
        drop((worker, coordinator));
    });
    let results = tempfile::tempdir().expect("tempdir");
    let mut run = rackload(&tag);
    run.args([
        "run",
        "--coordinator",
        &url,
        "--connect-wait",
        "30",
        "--workers",
        "1",
    ])
    .args(["--base-url", &sim, "--num-prompts", "4"])
    .args([
        "--max-concurrency",
        "2",
        "--random-input-len",
        "8",
        "--random-output-len",
        "8",
    ])
    .arg("--results-dir")
    .arg(results.path());
    let out = run_with_timeout(run, 90.0);
    let _ = up_tx.send(());
    fabric.join().expect("fabric thread");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("retrying for up to 30 s"), "{stderr}");
    let run = run_json(results.path()).expect("run.json");
    assert_eq!(count(&run["points"][0]["completed"]), 4);

    let nothing = format!("http://127.0.0.1:{}", closed_port());
    let started = std::time::Instant::now();
    check_refused(
        &new_tag("connect-wait-nothing"),
        &["workers", "--coordinator", &nothing, "--connect-wait", "1"],
        &["cannot reach coordinator", "(tried for 1 s)"],
    );
    assert!(started.elapsed().as_secs_f64() < 20.0 * patience());
}

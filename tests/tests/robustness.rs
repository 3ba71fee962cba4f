//! The calm part of a bad day: servers that misbehave in every way the sim cannot stage
//! (silence, garbage bytes, a line without end, a 200 that is not a stream, usage that
//! cannot be true, a slow drip) cost each request one failure in its class and nothing
//! more; a closed pipe does not kill a run; a full disk leaves run.json saying so.

#![allow(clippy::disallowed_types)] // these tests wait on real processes, in real time

use std::io::Write;
use std::net::TcpStream;

use rackload_tests::scripted::*;
use rackload_tests::*;
use serde_json::Value;

fn silent(conn: &mut TcpStream) {
    say_nothing(conn);
}

fn garbage(conn: &mut TcpStream) {
    let _ = conn.write_all(b"\x16\x03\x01\x00garbage \xff\xfe not HTTP at all\r\n\r\n\x00\x00");
    hang_up(conn);
}

fn html_200(conn: &mut TcpStream) {
    let body = "<html><body>upstream down, said as a 200</body></html>";
    let _ = conn.write_all(
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    hang_up(conn);
}

fn absurd_usage(conn: &mut TcpStream) {
    let _ = chunked_head(conn, "text/event-stream")
        && chunk(conn, b"data: {\"choices\":[{\"index\":0,\"text\":\" a\"}]}\n\n")
        && chunk(conn, b"data: {\"choices\":[{\"index\":0,\"text\":\" b\"}]}\n\n")
        && chunk(
            conn,
            b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":8,\"completion_tokens\":18446744073709551615}}\n\n",
        )
        && chunk(conn, b"data: [DONE]\n\n")
        && last_chunk(conn);
    hang_up(conn);
}

/// One byte of a valid stream every 100 ms: never silent long enough for an idle
/// timeout, so only the request timeout ends it (bounded: a minute of bytes at most).
fn slow_drip(conn: &mut TcpStream) {
    if !chunked_head(conn, "text/event-stream") {
        return;
    }
    let event = b"data: {\"choices\":[{\"index\":0,\"text\":\" a\"}]}\n\n";
    for &b in event.iter().cycle().take(600) {
        if !chunk(conn, &[b]) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A header block without end: 200 then 4 MiB of headers (bounded; the client stops
/// reading long before).
fn header_flood(conn: &mut TcpStream) {
    if conn
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n")
        .is_err()
    {
        return;
    }
    let line = format!("x-flood: {}\r\n", "y".repeat(1000));
    for _ in 0..4096 {
        if conn.write_all(line.as_bytes()).is_err() {
            return;
        }
    }
    hang_up(conn);
}

/// One SSE line without end (3 MiB, then a clean hang-up).
fn endless_line(conn: &mut TcpStream) {
    if !chunked_head(conn, "text/event-stream") {
        return;
    }
    let line = [b"data: ".as_slice(), &[b'x'; 64 * 1024]].concat();
    for _ in 0..48 {
        if !chunk(conn, &line) {
            return;
        }
    }
    hang_up(conn);
}

/// Runs 4 requests (2 at a time) at `url` through `fabric`; returns the point.
fn point_against(tag: &str, fabric: &Fabric, url: &str, extra: &[&str]) -> Value {
    let results = tempfile::tempdir().expect("tempdir");
    let mut cmd = rackload(tag);
    cmd.args(["run", "--coordinator", &fabric.url, "--workers", "1"])
        .args(["--base-url", url, "--model", "m", "--num-prompts", "4"])
        .args(["--max-concurrency", "2", "--warmup", "0"])
        .args(["--random-input-len", "8", "--random-output-len", "8"])
        .args(["--max-failure-rate", "1"])
        .args(extra)
        .arg("--results-dir")
        .arg(results.path());
    let out = run_with_timeout(cmd, 90.0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let run = run_json(results.path()).unwrap_or_else(|| panic!("no run.json: {stderr}"));
    assert_eq!(run["status"], "completed", "{stderr}");
    run["points"][0].clone()
}

/// A misbehaviour: its name, its script, the run's extra flags, the class it must land in.
type Case = (
    &'static str,
    fn(&mut TcpStream),
    &'static [&'static str],
    &'static str,
);

/// Each misbehaviour fails every request in the class a user would look for, within the
/// timeouts given, and the run completes.
#[test]
fn misbehaving_servers_fail_each_request_in_its_class() {
    let tag = new_tag("misbehaving");
    let fabric = start_fabric(&tag, 1);
    let cases: [Case; 7] = [
        ("silent", silent, &["--first-byte-timeout", "1"], "timeout"),
        ("garbage", garbage, &[], "malformed"),
        ("a 200 that is not a stream", html_200, &[], "malformed"),
        ("absurd usage", absurd_usage, &[], "malformed"),
        (
            "slow drip",
            slow_drip,
            &["--request-timeout", "2"],
            "timeout",
        ),
        ("a line without end", endless_line, &[], "malformed"),
        ("a header block without end", header_flood, &[], "malformed"),
    ];
    for (name, script, extra, class) in cases {
        let url = scripted_server(script);
        let started = std::time::Instant::now();
        let p = point_against(&tag, &fabric, &url, extra);
        assert_eq!(
            p["failed_by_class"][class].as_u64(),
            Some(4),
            "{name}: {}",
            p["failed_by_class"]
        );
        assert_eq!(count(&p["completed"]), 0, "{name}: {p}");
        assert!(
            started.elapsed().as_secs_f64() < 30.0 * patience(),
            "{name} took {:?}",
            started.elapsed()
        );
    }
}

/// `rackload run | head -3` closes the CLI's stdout long before the run ends: the run goes
/// on to its end, its results are written, and nothing panics.
#[test]
fn a_closed_stdout_does_not_end_the_run() {
    let tag = new_tag("closed-stdout");
    let results = tempfile::tempdir().expect("tempdir");
    // `| true` closes the pipe's read end at once: every line printed meets it closed.
    let mut cmd = std::process::Command::new("bash");
    cmd.args(["-c", r#""$@" | true; exit "${PIPESTATUS[0]}""#, "bash"])
        .arg(rackload_bin())
        .args(["run", "--num-prompts", "4", "--max-concurrency", "2,4"])
        .args(["--random-input-len", "8", "--random-output-len", "8"])
        .arg("--results-dir")
        .arg(results.path())
        .env(TAG_VAR, &tag)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null());
    let out = run_with_timeout(cmd, 90.0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let run = run_json(results.path()).expect("run.json");
    assert_eq!(run["status"], "completed");
    assert_eq!(run["points"].as_array().map(Vec::len), Some(2));
    assert_no_processes_left(&tag);
}

/// `unshare -rm` gives this test a mount namespace of its own, where it may mount a
/// 256 KiB tmpfs; false (and the test says why it is skipped) where the machine forbids
/// user namespaces.
fn can_mount_a_tmpfs() -> bool {
    let ok = std::process::Command::new("unshare")
        .args(["-rm", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: `unshare -rm` is not allowed here, so no tmpfs can be mounted");
    }
    ok
}

/// A results folder on a disk that fills up during the run (a 256 KiB tmpfs, filled by
/// `dd` once run.json is there): the run is aborted with exit 2 and a message that says
/// the disk is full, no temporary is left, and run.json (rewritten in place, as there is
/// no room for a second copy) says the run failed and why. `rackload certs` on the same
/// full disk fails saying so, and leaves no file (no 0-byte key).
#[test]
fn a_full_disk_ends_the_run_with_run_json_saying_why() {
    if !can_mount_a_tmpfs() {
        return;
    }
    let tag = new_tag("full-disk");
    let mount = tempfile::tempdir().expect("tempdir");
    let script = r#"
        set -u
        mount -t tmpfs -o size=256k tmpfs "$1" || exit 97
        "$2" run --results-dir "$1" --duration 3 --max-concurrency 2,4 \
            --random-input-len 16 --random-output-len 16 &
        pid=$!
        i=0
        while [ -z "$(ls "$1"/*/run.json 2>/dev/null)" ] && [ $i -lt 600 ]; do
            sleep 0.05; i=$((i+1))
        done
        dd if=/dev/zero of="$1/filler" bs=4k 2>/dev/null
        wait $pid
        rc=$?
        "$2" certs --out "$1/certs" 2>&1
        echo "== certs rc=$?"
        ls -A "$1/certs" 2>/dev/null
        echo "== files"
        ls -A "$1"/*/ "$1"/*/points
        echo "== run.json"
        cat "$1"/*/run.json
        exit $rc
    "#;
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["-rm", "sh", "-c", script, "sh"])
        .arg(mount.path())
        .arg(rackload_bin())
        .env(TAG_VAR, &tag)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null());
    let out = run_with_timeout(cmd, 90.0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(97), "mount failed: {stderr}");
    assert_eq!(out.status.code(), Some(2), "{stderr}\n{stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("No space left on device"), "{stderr}");
    // `certs` on the same full disk: exit 2, saying so, and no file at all (no 0-byte key).
    let (said, after) = stdout
        .split_once("== certs rc=")
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        said.contains("No space left on device"),
        "certs said: {said}"
    );
    let (certs, rest) = after
        .split_once("== files")
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(certs.starts_with("2\n"), "certs: {certs}");
    assert_eq!(
        certs.trim_start_matches("2\n").trim(),
        "",
        "files left: {certs}"
    );
    let (files, record) = rest
        .split_once("== run.json")
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(!files.contains(".tmp-"), "a temporary was left: {files}");
    let run: Value =
        serde_json::from_str(record.trim()).unwrap_or_else(|e| panic!("{e}: {record}"));
    assert_eq!(run["status"], "failed", "{run}");
    assert!(
        run["message"]
            .as_str()
            .is_some_and(|m| m.contains("No space left on device")),
        "{}",
        run["message"]
    );
    assert_no_processes_left(&tag);
}

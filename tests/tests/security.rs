//! A fabric nobody else can aim: a token or mutual TLS shuts out workers and CLIs without
//! the right credentials (and they send the target nothing), plaintext without a token is
//! refused off loopback, and no secret shows in any log, trace or result file.

#![allow(clippy::disallowed_types)] // these tests wait on real processes, in real time

use std::path::Path;
use std::process::{Command, Stdio};

use rackload_tests::otlp::OtlpReceiver;
use rackload_tests::*;

fn received(sim: &str) -> u64 {
    count(&get_json(sim, "/stats")["received"])
}

fn run_cmd(tag: &str, coordinator: &str, sim: &str, results: &Path) -> Command {
    let mut cmd = rackload(tag);
    cmd.args([
        "run",
        "--coordinator",
        coordinator,
        "--workers",
        "1",
        "--base-url",
        sim,
    ])
    .args([
        "--max-concurrency",
        "2",
        "--num-prompts",
        "6",
        "--warmup",
        "0",
    ])
    .args([
        "--random-output-len",
        "4",
        "--worker-wait",
        "5",
        "--results-dir",
    ])
    .arg(results);
    cmd
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every file under `dir`, as text.
fn files_text(dir: &Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).expect("dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            text += &files_text(&path);
        } else {
            text += &String::from_utf8_lossy(&std::fs::read(&path).expect("file"));
        }
    }
    text
}

#[test]
fn a_token_shuts_out_workers_and_clients_without_it_and_no_secret_leaks() {
    const TOKEN: &str = "fabric-token-6b1f0c9e";
    const API_KEY: &str = "sk-target-key-93d2a7";
    // A secret in the target URL's query (as a signed URL or `?api-key=` carries one):
    // it is sent with every request, and shown nowhere.
    const URL_SECRET: &str = "url-secret-5e0b44";
    let tag = new_tag("token");
    let otlp = OtlpReceiver::start();
    let (_sim, sim) = start_sim(&tag, &["--ttft-ms", "1", "--itl-ms", "1"]);
    let logs = tempfile::tempdir().expect("tempdir");
    let log = |name: &str| std::fs::File::create(logs.path().join(name)).expect("log");
    let mut coord = rackload(&tag);
    coord
        .env("RACKLOAD_TOKEN", TOKEN)
        .env("RUST_LOG", "info,rackload=debug")
        .args(["--otlp-endpoint", &otlp.grpc_url, "--log-format", "json"])
        .args(["coordinator", "--listen", "127.0.0.1:0"])
        .stderr(log("coordinator.log"));
    let (_coord, url) = start_command("coordinator", coord);

    // A worker with the wrong token is refused and stops; it never got a plan.
    let mut bad = worker_command(&tag, &url, "w-bad", &[]);
    bad.env("RACKLOAD_TOKEN", "not-the-token")
        .stderr(Stdio::piped());
    let out = run_with_timeout(bad, 30.0);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("wrong token"), "{}", stderr(&out));
    // A CLI without the token cannot submit a run.
    let results = tempfile::tempdir().expect("tempdir");
    let out = run_with_timeout(run_cmd(&tag, &url, &sim, results.path()), 30.0);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("requires a token"),
        "{}",
        stderr(&out)
    );
    assert_eq!(received(&sim), 0, "nothing reached the target");

    // With the token, the run goes; the API key reaches the target only.
    let mut good = worker_command(&tag, &url, "w-good", &["--log-format", "json"]);
    good.env("RACKLOAD_TOKEN", TOKEN)
        .env("RUST_LOG", "info,rackload=debug")
        .args(["--otlp-endpoint", &otlp.grpc_url])
        .stderr(log("worker.log"));
    let _good = Proc {
        name: "w-good".into(),
        child: good.spawn().expect("worker"),
    };
    let signed = format!("{sim}/?sig={URL_SECRET}");
    let mut run = run_cmd(&tag, &url, &signed, results.path());
    run.env("RACKLOAD_TOKEN", TOKEN)
        .env("RUST_LOG", "info,rackload=debug")
        .args([
            "--api-key",
            API_KEY,
            "--trace-sample",
            "1",
            "--log-format",
            "json",
        ]);
    let out = run_with_timeout(run, 60.0);
    assert!(out.status.success(), "{}", stderr(&out));
    let run_json = run_json(results.path()).expect("run.json");
    assert_eq!(count(&run_json["points"][0]["completed"]), 6);
    wait_until(20.0, "the request spans", || {
        otlp.spans()
            .iter()
            .filter(|s| s.name.starts_with("text_completion"))
            .count()
            >= 6
    });

    // No secret in any output: logs, stdout/stderr, results (run.json, points, report,
    // plots), or any span attribute.
    let mut everything = files_text(logs.path()) + &files_text(results.path());
    everything += &String::from_utf8_lossy(&out.stdout);
    everything += &stderr(&out);
    for s in otlp.spans() {
        everything += &format!("{s:?}");
    }
    assert!(everything.len() > 10_000, "outputs were read");
    assert!(
        everything.contains("sig=REDACTED"),
        "the URL is shown, redacted"
    );
    for secret in [TOKEN, API_KEY, URL_SECRET] {
        assert!(!everything.contains(secret), "{secret} leaked");
    }
}

fn certs(tag: &str, dir: &Path) {
    let mut cmd = rackload(tag);
    cmd.args(["certs", "--out"])
        .arg(dir)
        .args(["--hosts", "127.0.0.1,localhost"]);
    let out = run_with_timeout(cmd, 30.0);
    assert!(out.status.success(), "{}", stderr(&out));
}

fn tls_args(dir: &Path, who: &str) -> Vec<String> {
    let p = |f: &str| dir.join(f).display().to_string();
    vec![
        "--tls-cert".into(),
        p(&format!("{who}.pem")),
        "--tls-key".into(),
        p(&format!("{who}-key.pem")),
        "--tls-ca".into(),
        p("ca.pem"),
    ]
}

#[test]
fn mutual_tls_admits_only_certificates_of_its_own_ca() {
    let tag = new_tag("mtls");
    let (_sim, sim) = start_sim(&tag, &["--ttft-ms", "1", "--itl-ms", "1"]);
    let (ours, theirs) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    certs(&tag, ours.path());
    certs(&tag, theirs.path());
    let mut args = vec![
        "coordinator".to_owned(),
        "--listen".into(),
        "127.0.0.1:0".into(),
    ];
    args.extend(tls_args(ours.path(), "coordinator"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (_coord, url) = start_server(&tag, "coordinator", &args);
    assert!(url.starts_with("https://"), "{url}");

    // A worker from another CA neither trusts the coordinator nor is trusted by it.
    // A certificate the worker itself rejects is fatal: it stops at once instead of
    // retrying for its minute of --connect-wait (the 30 s timeout below would catch that).
    // A coordinator that rejects the worker's certificate just drops the connection, which
    // looks like any other failure to connect: the worker retries until --connect-wait.
    for (cert_dir, ca_dir, wait, why) in [
        (
            theirs.path(),
            theirs.path(),
            "60",
            "the coordinator's certificate is not from its CA",
        ),
        (
            theirs.path(),
            ours.path(),
            "3",
            "its own certificate is not from the coordinator's CA",
        ),
    ] {
        let mut extra = tls_args(cert_dir, "worker");
        extra[5] = ca_dir.join("ca.pem").display().to_string();
        extra.extend(["--connect-wait".into(), wait.into()]);
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let mut bad = worker_command(&tag, &url, "w-other-ca", &extra);
        bad.stderr(Stdio::piped());
        let out = run_with_timeout(bad, 30.0);
        assert!(!out.status.success(), "{why}");
        assert!(
            stderr(&out).to_lowercase().contains("certificate")
                || stderr(&out).to_lowercase().contains("tls"),
            "{why}: {}",
            stderr(&out)
        );
    }
    // A CLI that trusts the coordinator but has no certificate cannot submit.
    let results = tempfile::tempdir().expect("tempdir");
    let mut run = run_cmd(&tag, &url, &sim, results.path());
    run.arg("--fabric-tls-ca").arg(ours.path().join("ca.pem"));
    let out = run_with_timeout(run, 30.0);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(received(&sim), 0, "nothing reached the target");

    // Our worker and our client: the run goes over TLS.
    let extra = tls_args(ours.path(), "worker");
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let _good = start_worker_with(&tag, &url, "w-ours", &extra);
    let mut run = run_cmd(&tag, &url, &sim, results.path());
    run.arg("--fabric-tls-cert")
        .arg(ours.path().join("client.pem"));
    run.arg("--fabric-tls-key")
        .arg(ours.path().join("client-key.pem"));
    run.arg("--fabric-tls-ca").arg(ours.path().join("ca.pem"));
    let out = run_with_timeout(run, 60.0);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        count(&run_json(results.path()).expect("run.json")["points"][0]["completed"]),
        6
    );
    // Keys are private to their owner.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(ours.path().join("worker-key.pem"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "key mode {mode:o}");
}

/// Plaintext off loopback is refused with or without a token: a token alone used to be
/// accepted, and then crossed the network in clear.
#[test]
fn plaintext_is_refused_off_loopback_even_with_a_token() {
    let tag = new_tag("plaintext");
    let out = run_with_timeout(
        {
            let mut c = rackload(&tag);
            c.args(["coordinator", "--listen", "0.0.0.0:0"]);
            c
        },
        20.0,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--insecure"), "{}", stderr(&out));
    // Refused before dialling: no packet leaves for the (documentation-range) address.
    let mut w = worker_command(&tag, "http://192.0.2.10:7400", "w", &[]);
    w.stderr(Stdio::piped());
    let out = run_with_timeout(w, 20.0);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("refusing plaintext"),
        "{}",
        stderr(&out)
    );
    // A token does not make plaintext safe: it would travel in clear.
    let out = run_with_timeout(
        {
            let mut c = rackload(&tag);
            c.args(["coordinator", "--listen", "0.0.0.0:0"])
                .env("RACKLOAD_TOKEN", "plain-token");
            c
        },
        20.0,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("in clear"), "{}", stderr(&out));
    let mut w = worker_command(&tag, "http://192.0.2.10:7400", "w", &[]);
    w.env("RACKLOAD_TOKEN", "plain-token")
        .stderr(Stdio::piped());
    let out = run_with_timeout(w, 20.0);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("in clear"), "{}", stderr(&out));
    // Explicitly insecure, it listens.
    let (_c, url) = start_server(
        &tag,
        "coordinator",
        &["coordinator", "--listen", "0.0.0.0:0", "--insecure"],
    );
    assert!(url.starts_with("http://0.0.0.0:"), "{url}");
}

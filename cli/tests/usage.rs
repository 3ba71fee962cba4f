//! Usage errors of the `rackload` binary: one clear line, exit code 2, no panic. (Living
//! in the binary's own package also makes cargo build the binary for the end-to-end
//! tests in `tests/`.)

use std::process::Command;

fn rackload(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rackload"))
        .args(args)
        .output()
        .expect("run rackload");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (out.status.code().unwrap_or(-1), stderr)
}

#[test]
fn bad_target_options_name_the_flag_before_anything_starts() {
    let base = ["run", "--base-url", "http://127.0.0.1:9", "--model", "m"];
    for (extra, needle) in [
        (
            &["--extra-body", "[1]"][..],
            "--extra-body must be a JSON object",
        ),
        (&["--extra-body", "{"][..], "--extra-body is not JSON"),
        (
            &["--extra-body", "@/nonexistent/body.json"][..],
            "--extra-body: cannot read /nonexistent/body.json: No such file or directory",
        ),
        (&["--header", "no-colon"][..], "--header \"no-colon\""),
        (&["--header", "bad name: v"][..], "header"),
        (
            &["--tls-ca", "/nonexistent/ca.pem"][..],
            "--tls-ca: cannot read",
        ),
        (&["--idle-timeout=-1"][..], "--idle-timeout"),
        (&["--http", "spdy"][..], "spdy"),
    ] {
        let mut args = base.to_vec();
        args.extend(extra);
        let (code, stderr) = rackload(&args);
        assert_eq!(code, 2, "{extra:?}: {stderr}");
        assert!(stderr.contains(needle), "{extra:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{extra:?}: {stderr}");
    }
    let (code, stderr) = rackload(&["sim", "--faults", "boom=0.1"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("unknown fault \"boom\""), "{stderr}");
}

#[test]
fn frontier_reads_results_and_names_what_is_missing() {
    // Read at run time: a shared target dir may have been built from another checkout.
    let manifest =
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
    let fixtures = format!("{manifest}/../analysis/tests/fixtures");
    let vllm = format!("{fixtures}/vllm-bench-serve-b200-c64.json");
    let (code, stderr) = rackload(&["frontier", &vllm]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--system"), "{stderr}");
    let (code, stderr) = rackload(&["frontier", &vllm, "--system", "tpu-v9", "--gpus", "1"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("unknown system \"tpu-v9\""), "{stderr}");
    let (code, stderr) = rackload(&["frontier", "/nonexistent/run.json"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("cannot read /nonexistent/run.json"),
        "{stderr}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rackload"))
        .args([
            "frontier", &vllm, "--system", "b200", "--gpus", "1", "--format", "json",
        ])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["groups"][0]["name"], "b200 · vllm");
    assert_eq!(v["groups"][0]["points"][0]["on_frontier"], true);
}

#[test]
fn unknown_flag_is_one_line_and_exit_2() {
    let (code, stderr) = rackload(&["run", "--bogus"]);
    assert_eq!(code, 2);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--bogus"), "{stderr}");
}

#[test]
fn bad_numbers_and_modes_are_refused_before_anything_starts() {
    let (code, stderr) = rackload(&["run", "--max-concurrency", "0"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--max-concurrency"), "{stderr}");
    let (code, stderr) = rackload(&[
        "run",
        "--range-mode",
        "symmetric",
        "--random-range-ratio",
        "1",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("symmetric") && stderr.contains("0 <= r < 1"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    let (code, stderr) = rackload(&["run", "--random-range-ratio", "1.5"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--random-range-ratio: 1.5 is not a ratio between 0 and 1"),
        "{stderr}"
    );
}

#[test]
fn help_exits_0() {
    let out = Command::new(env!("CARGO_BIN_EXE_rackload"))
        .args(["run", "--help"])
        .output()
        .expect("run rackload");
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--max-concurrency"));
}

#[test]
fn every_list_and_range_flag_parses_without_panicking() {
    // Valid values: parsing succeeds and the run fails later, on the unreachable coordinator.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let coord = format!("http://127.0.0.1:{closed}");
    for extra in [
        &["--concurrency-range", "1:8:x2"][..],
        &["--concurrency-range", "8:64:+8"],
        &["--max-concurrency", "4,8,16"],
        &["--request-rate", "10,20,40"],
        &["--request-rate", "inf"],
    ] {
        let mut args = vec![
            "run",
            "--coordinator",
            &coord,
            "--base-url",
            "http://127.0.0.1:9",
            "--model",
            "m",
        ];
        args.extend_from_slice(extra);
        let (code, stderr) = rackload(&args);
        assert_eq!(code, 2, "{extra:?}: {stderr}");
        assert!(
            stderr.contains("cannot reach coordinator"),
            "{extra:?}: {stderr}"
        );
    }
    // Invalid ones are one clear line.
    for bad in [
        &["--concurrency-range", "8:4:x2"][..],
        &["--concurrency-range", "1:8:x1"],
        &["--request-rate", "-3"],
    ] {
        let mut args = vec!["run"];
        args.extend_from_slice(bad);
        let (code, stderr) = rackload(&args);
        assert_eq!(code, 2, "{bad:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{bad:?}: {stderr}");
    }
}

/// The messages the hostile-input review found wanting, each as a user meets it: a missing
/// argument named; a wrong type in a scenario file at its line, not "untagged enum
/// OneOrMany"; a bad number in a file blamed on the file's key, not a flag; an empty or
/// filtered-out ShareGPT file in words, not a Rust debug dump; an OS error said once; a
/// control character in a value escaped, not printed.
#[test]
fn messages_name_what_is_wrong_in_one_plain_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p.to_string_lossy().into_owned()
    };
    let one_line = |args: &[&str], wanted: &[&str], unwanted: &[&str]| {
        let (code, stderr) = rackload(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        for w in wanted {
            assert!(stderr.contains(w), "{args:?}: {stderr} lacks {w:?}");
        }
        for u in unwanted {
            assert!(!stderr.contains(u), "{args:?}: {stderr} has {u:?}");
        }
    };
    one_line(&["worker"], &["--coordinator <URL>"], &[]);
    one_line(&["abort"], &["--coordinator <URL>", "<RUN>"], &[]);
    let typed = file("typed.toml", "[run]\nmax_concurrency = \"x\"\n");
    one_line(
        &["run", &typed],
        &["line 2 (max_concurrency = \"x\")", "a list of them"],
        &["untagged"],
    );
    let negative = file("negative.toml", "[run]\nmax_concurrency = -3\n");
    one_line(&["run", &negative], &["run.max_concurrency: -3"], &[]);
    let nan = file("nan.toml", "[workload]\nrequest_rate = nan\n");
    one_line(
        &["run", &nan],
        &["nan.toml: workload.request_rate: NaN"],
        &["--request-rate"],
    );
    let empty = file("empty.json", "");
    let none = file("none.json", "[]");
    for (path, wanted) in [
        (&empty, "the file is empty"),
        (&none, "0 entries in the file"),
    ] {
        one_line(
            &["run", "--dataset-name", "sharegpt", "--dataset-path", path],
            &[wanted],
            &["LoadReport", "{ "],
        );
    }
    one_line(
        &[
            "run",
            "--num-prompts",
            "1",
            "--results-dir",
            "/dev/null/results",
        ],
        &["/dev/null/results"],
        &["(os error 20): Not a directory"],
    );
    one_line(
        &["run", "--model", "a\nb\u{1b}[2J", "--base-url", "http//x"],
        &["--base-url"],
        &["\u{1b}"],
    );
    one_line(
        &[
            "run",
            "--dataset-name",
            "sharegpt",
            "--dataset-path",
            "/dev/zero",
        ],
        &["/dev/zero is a device, not a file"],
        &[],
    );
    one_line(
        &["run", "--goodput", "ttft"],
        &["--goodput: \"ttft\" is not KEY:MS"],
        &[],
    );
    one_line(
        &["run", "--goodput", "p99:5"],
        &["--goodput: \"p99\" is not ttft, tpot or e2el"],
        &[],
    );
    one_line(
        &["run", "--gpu-metrics", "ftp://node:9400/metrics?k=s3cret"],
        &[
            "--gpu-metrics",
            "must be an http:// or https:// URL",
            "k=REDACTED",
        ],
        &["s3cret"],
    );
    one_line(
        &[
            "run",
            "--node-power",
            "https://root:s3cret@bmc/redfish/v1/Chassis/1/Power",
        ],
        &[
            "--node-power",
            "carries credentials",
            "RACKLOAD_REDFISH_USERNAME",
        ],
        &["s3cret"],
    );
    let slo = file("slo.toml", "[run]\ngoodput = { ttft_ms = -1 }\n");
    one_line(&["run", &slo], &["slo.toml: run.goodput: ttft: -1.0"], &[]);
    one_line(
        &["run", "--request-rate", "1,1e-19"],
        &["--request-rate: 1e-19 is not a rate between 0.001 and 10000000"],
        &[],
    );
    one_line(
        &[
            "run",
            "--base-url",
            "http://127.0.0.1:9",
            "--tls-ca",
            "/dev/zero",
        ],
        &["--tls-ca: /dev/zero is a device"],
        &[],
    );
}

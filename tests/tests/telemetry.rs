//! The rack's meters joined to the points: GPU power read from a Prometheus exporter
//! during every point and integrated over the point's measurement window into energy and
//! J/token; the embedded sim serving its own GPUs' power; an exporter that does not answer
//! costing a warning, never the run.

#![allow(clippy::disallowed_types)] // these tests wait on real processes, in real time

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;

use rackload_tests::scripted::*;
use rackload_tests::*;
use serde_json::Value;

/// A DCGM exporter whose two GPUs draw 300 W each, always.
fn constant_dcgm(conn: &mut TcpStream) {
    let body = "# TYPE DCGM_FI_DEV_POWER_USAGE gauge\n\
        DCGM_FI_DEV_POWER_USAGE{gpu=\"0\",UUID=\"GPU-0\"} 300\n\
        DCGM_FI_DEV_POWER_USAGE{gpu=\"1\",UUID=\"GPU-1\"} 300\n\
        DCGM_FI_DEV_GPU_UTIL{gpu=\"0\"} 97\n";
    let _ = conn.write_all(
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    hang_up(conn);
}

fn run_embedded(tag: &str, args: &[&str], results: &Path) -> Value {
    let mut cmd = rackload(tag);
    cmd.arg("run")
        .args(args)
        .args(["--random-input-len", "16", "--random-output-len", "32"])
        .arg("--results-dir")
        .arg(results);
    let out = run_with_timeout(cmd, 120.0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    run_json(results).unwrap_or_else(|| panic!("no run.json: {stderr}"))
}

fn f(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("no {key} in {v}"))
}

/// Constant power is measured exactly: the mean is the exporter's 600 W, the energy 600 W
/// times the measurement window, J/token that energy over the tokens (each within 1%);
/// the readings are kept in `telemetry/<label>.jsonl.gz`.
#[test]
fn constant_gpu_power_gives_exact_energy_per_token() {
    let tag = new_tag("constant-power");
    let exporter = scripted_server(constant_dcgm);
    let results = tempfile::tempdir().expect("tempdir");
    let run = run_embedded(
        &tag,
        &[
            "--gpu-metrics",
            &format!("{exporter}/metrics"),
            "--telemetry-interval",
            "0.2",
            "--sim-ttft-ms",
            "20",
            "--sim-itl-ms",
            "4",
            "--max-concurrency",
            "4",
            "--duration",
            "2",
        ],
        results.path(),
    );
    let p = &run["points"][0];
    let close = |a: f64, b: f64| (a - b).abs() <= 0.01 * b.abs();
    assert!(close(f(p, "gpu_power_w"), 600.0), "{p}");
    assert_eq!(p["gpus_measured"], 2);
    let energy = f(p, "energy_j");
    eprintln!(
        "measured {} W over {} s: {energy} J, {} J/token",
        f(p, "gpu_power_w"),
        f(p, "duration_s"),
        f(p, "j_per_token")
    );
    assert!(close(energy, 600.0 * f(p, "duration_s")), "{p}");
    let tokens = f(p, "total_input_tokens") + f(p, "total_output_tokens");
    assert!(close(f(p, "j_per_token"), energy / tokens), "{p}");
    assert!(
        close(
            f(p, "j_per_output_token"),
            energy / f(p, "total_output_tokens")
        ),
        "{p}"
    );
    let dir = run_dir(results.path()).expect("run dir");
    let label = p["label"].as_str().expect("label");
    let readings = jsonl_gz(&dir.join(format!("telemetry/{label}.jsonl.gz")));
    assert!(
        readings.len() >= 5,
        "readings every 0.2 s over 2 s: {}",
        readings.len()
    );
    assert!(
        readings
            .iter()
            .all(|r| r["watts"] == 600.0 && r["gpus"] == 2)
    );
    assert_no_processes_left(&tag);

    // `rackload frontier` puts the measured figures beside the provisioned ones: 300 W a
    // GPU times the catalog's overhead (b200: all-in kW over TDP), over tok/s/GPU.
    let mut frontier = rackload(&tag);
    frontier
        .arg("frontier")
        .arg(dir.join("run.json"))
        .args(["--system", "b200", "--gpus", "2", "--format", "json"]);
    let out = run_with_timeout(frontier, 30.0);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let point = &v["groups"][0]["points"][0];
    let m = &point["measured_power"];
    let overhead = f(m, "overhead");
    assert!(overhead > 1.0, "{m}");
    assert!(close(f(m, "kw_per_gpu"), 0.3 * overhead), "{m}");
    assert!(
        close(
            f(m, "joules_per_token"),
            300.0 * overhead / f(point, "tput_per_gpu")
        ),
        "{point}"
    );
    assert!(
        f(point, "joules_per_token") > 0.0,
        "the provisioned figure stays"
    );
}

/// The embedded sim is a rack you can measure: its GPUs draw more as its batch fills, and
/// the energy per output token falls as concurrency rises. An exporter that does not
/// answer is a warning, never a failed run.
#[test]
fn the_embedded_sims_energy_per_token_falls_as_concurrency_rises() {
    let tag = new_tag("sim-power");
    let results = tempfile::tempdir().expect("tempdir");
    let run = run_embedded(
        &tag,
        &[
            "--max-concurrency",
            "2,64",
            "--duration",
            "1.5",
            "--warmup",
            "0",
            "--telemetry-interval",
            "0.05",
        ],
        results.path(),
    );
    let (low, high) = (&run["points"][0], &run["points"][1]);
    for p in [low, high] {
        eprintln!(
            "{}: {} W, {} J/output token",
            p["label"], p["gpu_power_w"], p["j_per_output_token"]
        );
    }
    assert!(
        f(high, "gpu_power_w") > f(low, "gpu_power_w"),
        "{low}\n{high}"
    );
    assert!(
        f(high, "j_per_output_token") < f(low, "j_per_output_token") / 2.0,
        "{low}\n{high}"
    );
    assert_no_processes_left(&tag);

    let silent = format!("http://127.0.0.1:{}/metrics", closed_port());
    let tag = new_tag("no-exporter");
    let results = tempfile::tempdir().expect("tempdir");
    let run = run_embedded(
        &tag,
        &[
            "--gpu-metrics",
            &silent,
            "--sim-ttft-ms",
            "5",
            "--sim-itl-ms",
            "1",
            "--num-prompts",
            "8",
            "--max-concurrency",
            "2",
        ],
        results.path(),
    );
    assert_eq!(run["status"], "completed");
    assert!(
        run["points"][0].get("gpu_power_w").is_none(),
        "{}",
        run["points"][0]
    );
}

/// The server's own view joined to the point: on the embedded sim (its `/metrics` read by
/// default, as any http:// base URL's), the server's mean running requests over the
/// window is within 10% of the client's mean in flight (Little: throughput × mean E2EL),
/// and the server's TTFT quantiles are reported beside the client's.
#[test]
fn the_servers_running_requests_agree_with_the_clients_in_flight() {
    let tag = new_tag("server-metrics");
    let results = tempfile::tempdir().expect("tempdir");
    let run = run_embedded(
        &tag,
        &[
            "--max-concurrency",
            "16",
            "--duration",
            "2",
            "--warmup",
            "0",
            "--telemetry-interval",
            "0.1",
        ],
        results.path(),
    );
    let p = &run["points"][0];
    let server = &p["server"];
    let running = f(server, "mean_running");
    let in_flight = f(p, "request_throughput") * f(p, "mean_e2el_ms") / 1000.0;
    eprintln!("server mean running {running}, client mean in flight {in_flight:.2}");
    assert!(
        (running - in_flight).abs() <= 0.1 * in_flight,
        "server {running} vs client {in_flight}: {server}"
    );
    assert!(f(server, "readings") >= 5.0, "{server}");
    assert!(f(server, "ttft_p50_ms") > 0.0, "{server}");
    assert_no_processes_left(&tag);
}

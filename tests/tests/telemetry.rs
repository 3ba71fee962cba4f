//! The rack's meters joined to the points: GPU power read from a Prometheus exporter and
//! node power from a BMC over Redfish during every point, integrated over the point's
//! measurement window into energy and J/token; the embedded sim serving its own GPUs' and
//! chassis' power; an exporter that does not answer costing a warning, never the run.

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

/// A BMC whose chassis draws 2,000 W, always, over Redfish, to the right credentials
/// only (admin:s3cret); anyone else gets a 401.
fn constant_bmc(head: &str, conn: &mut TcpStream) {
    let authorised = head
        .lines()
        .any(|l| l.eq_ignore_ascii_case("authorization: Basic YWRtaW46czNjcmV0"));
    let (status, body) = if authorised {
        (
            "200 OK",
            r#"{"@odata.id": "/redfish/v1/Chassis/1/Power", "PowerControl": [{"Name": "System Power Control", "PowerConsumedWatts": 2000}]}"#,
        )
    } else {
        ("401 Unauthorized", r#"{"error": "login"}"#)
    };
    let _ = conn.write_all(
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    hang_up(conn);
}

fn run_embedded(tag: &str, args: &[&str], results: &Path) -> Value {
    run_embedded_with(tag, args, &[], results)
}

fn run_embedded_with(tag: &str, args: &[&str], env: &[(&str, &str)], results: &Path) -> Value {
    let mut cmd = rackload(tag);
    cmd.envs(env.iter().copied());
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
/// likewise the node's 2,000 W from its BMC over Redfish, with basic-auth credentials
/// from the environment. The readings and the client's timeline are kept in
/// `telemetry/<label>.jsonl.gz`.
#[test]
fn constant_gpu_power_gives_exact_energy_per_token() {
    let tag = new_tag("constant-power");
    let exporter = scripted_server(constant_dcgm);
    let bmc = scripted_server_seeing(constant_bmc);
    let results = tempfile::tempdir().expect("tempdir");
    let run = run_embedded_with(
        &tag,
        &[
            "--node-power",
            &format!("{bmc}/redfish/v1/Chassis/1/Power?token=s3cret"),
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
        &[
            ("RACKLOAD_REDFISH_USERNAME", "admin"),
            ("RACKLOAD_REDFISH_PASSWORD", "s3cret"),
        ],
        results.path(),
    );
    let p = &run["points"][0];
    let close = |a: f64, b: f64| (a - b).abs() <= 0.01 * b.abs();
    assert!(close(f(p, "node_power_w"), 2000.0), "{p}");
    assert_eq!(p["nodes_measured"], 1);
    assert!(
        close(f(p, "node_energy_j"), 2000.0 * f(p, "duration_s")),
        "{p}"
    );
    assert!(
        close(
            f(p, "node_j_per_output_token"),
            f(p, "node_energy_j") / f(p, "total_output_tokens")
        ),
        "{p}"
    );
    assert!(
        !std::fs::read_to_string(run_dir(results.path()).expect("dir").join("run.json"))
            .expect("run.json")
            .contains("s3cret"),
        "credentials, and a URL's query values, stay out of the results"
    );
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
    let lines = jsonl_gz(&dir.join(format!("telemetry/{label}.jsonl.gz")));
    let kind = |k: &str| -> Vec<&Value> { lines.iter().filter(|l| l["kind"] == k).collect() };
    let gpu = kind("gpu");
    assert!(
        gpu.len() >= 5,
        "readings every 0.2 s over 2 s: {}",
        gpu.len()
    );
    assert!(gpu.iter().all(|r| r["watts"] == 600.0 && r["gpus"] == 2));
    // Each GPU by its exporter and labels.
    let host = exporter.trim_start_matches("http://");
    for r in &gpu {
        let per_gpu = r["per_gpu"].as_object().expect("per-GPU power");
        assert_eq!(per_gpu.len(), 2, "{r}");
        assert_eq!(per_gpu[&format!("{host} gpu=0,UUID=GPU-0")], 300.0, "{r}");
    }
    let node = kind("node");
    assert!(node.len() >= 5, "{}", node.len());
    assert!(node.iter().all(|r| r["watts"] == 2000.0 && r["nodes"] == 1));
    // The client's timeline: a bin a second, which together hold every completed
    // request of the point, and a TTFT for each second in which requests started.
    let client = kind("client");
    assert!(client.len() >= 2, "{client:?}");
    let binned: f64 = client.iter().map(|b| f(b, "completed")).sum();
    assert_eq!(binned, f(p, "completed"), "{client:?}");
    assert!(client.iter().any(|b| b["ttft_p50_ms"].as_f64().is_some()));
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
    // The energy part of $/M tokens at the catalog's $0.08/kWh: provisioned from the
    // catalog's all-in kW, measured from the measured kW.
    let per_mtok = |kw: f64| kw * 0.08 / (f(point, "tput_per_gpu") * 3600.0 / 1e6);
    assert!(
        close(f(m, "energy_cost_per_mtok"), per_mtok(f(m, "kw_per_gpu"))),
        "{point}"
    );
    assert!(f(point, "energy_cost_per_mtok") > 0.0, "{point}");
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
            "{}: GPUs {} W, {} J/output token; node {} W, {} J/output token",
            p["label"],
            p["gpu_power_w"],
            p["j_per_output_token"],
            p["node_power_w"],
            p["node_j_per_output_token"]
        );
        // The sim's chassis (over Redfish) is its GPUs plus the profile's 2,000 W.
        assert!(
            (f(p, "node_power_w") - f(p, "gpu_power_w") - 2000.0).abs() < 0.05 * 2000.0,
            "{p}"
        );
    }
    assert!(
        f(high, "node_j_per_output_token") < f(low, "node_j_per_output_token") / 2.0,
        "{low}\n{high}"
    );
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
    // The tokens the server counted between its first and last reading inside the window
    // (0.1 s apart): the client's, less what the edges of the window missed.
    let (generated, output) = (f(server, "generation_tokens"), f(p, "total_output_tokens"));
    eprintln!("server generated {generated} tokens, client received {output}");
    assert!(
        (0.8 * output..=1.02 * output).contains(&generated),
        "{generated} vs {output}"
    );
    assert_no_processes_left(&tag);
}

/// `rackload sim --gpu-metrics-listen ADDR` serves the rack's meters apart from the model
/// server, as a rack does (DCGM's `/metrics`, the BMC's Redfish page), and a run against
/// the sim as an outside target reads both: the node draws the GPUs plus the profile's
/// 2,000 W.
#[test]
fn the_sims_meters_on_their_own_address_are_read_as_a_racks() {
    let tag = new_tag("sim-meters");
    let port = closed_port();
    let meters = format!("http://127.0.0.1:{port}");
    let (sim, url) = start_sim(
        &tag,
        &["--gpu-metrics-listen", &format!("127.0.0.1:{port}")],
    );
    wait_until(10.0, "the meters answer", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let results = tempfile::tempdir().expect("tempdir");
    let run = run_embedded(
        &tag,
        &[
            "--base-url",
            &url,
            "--gpu-metrics",
            &format!("{meters}/metrics"),
            "--node-power",
            &format!("{meters}/redfish/v1/Chassis/1/Power"),
            "--telemetry-interval",
            "0.1",
            "--max-concurrency",
            "8",
            "--duration",
            "1.5",
            "--warmup",
            "0",
        ],
        results.path(),
    );
    let p = &run["points"][0];
    let (gpu, node) = (f(p, "gpu_power_w"), f(p, "node_power_w"));
    assert!(gpu > 150.0, "the batch draws more than idle: {p}");
    assert!((node - gpu - 2000.0).abs() < 100.0, "{p}");
    assert_eq!(p["nodes_measured"], 1);
    drop(sim);
    assert_no_processes_left(&tag);
}

//! The container files agree with the binary: deploy/compose.yaml's services, run as local
//! processes with their own commands and environment (no container engine here: only
//! addresses are mapped to loopback and the benchmark is shrunk), make a working fabric,
//! and the Dockerfile runs that binary as a non-root user with the ports compose uses.

#![allow(clippy::disallowed_types)] // these tests wait on real processes, in real time

use std::collections::BTreeMap;

use rackload_tests::*;
use serde_yaml::Value;

struct Service {
    command: Vec<String>,
    environment: BTreeMap<String, String>,
    replicas: usize,
}

fn services() -> BTreeMap<String, Service> {
    let path = manifest_dir().join("../deploy/compose.yaml");
    let doc: Value = serde_yaml::from_str(&std::fs::read_to_string(&path).expect("compose.yaml"))
        .expect("compose.yaml is YAML");
    let mut out = BTreeMap::new();
    for (name, s) in doc["services"].as_mapping().expect("services") {
        let command = s["command"]
            .as_sequence()
            .expect("command as a list")
            .iter()
            .map(|v| v.as_str().expect("string argument").to_owned())
            .collect();
        let environment = s["environment"]
            .as_mapping()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        (
                            k.as_str().expect("key").to_owned(),
                            v.as_str().expect("value").to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let replicas = s["deploy"]["replicas"].as_u64().unwrap_or(1) as usize;
        out.insert(
            name.as_str().expect("name").to_owned(),
            Service {
                command,
                environment,
                replicas,
            },
        );
    }
    out
}

/// Replaces the value after `flag` (which must be there).
fn set(cmd: &mut [String], flag: &str, value: &str) {
    let k = cmd
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("{flag} not in {cmd:?}"));
    cmd[k + 1] = value.to_owned();
}

/// Maps compose's addresses onto this host's loopback.
fn map(cmd: &[String], from: &[(&str, &str)]) -> Vec<String> {
    cmd.iter()
        .map(|a| from.iter().fold(a.clone(), |a, (f, t)| a.replace(f, t)))
        .collect()
}

const TOKEN: &str = "compose-test-token";

fn command(tag: &str, s: &Service, args: &[String]) -> std::process::Command {
    let mut c = rackload(tag);
    c.args(args);
    for (k, v) in &s.environment {
        // compose's `${RACKLOAD_TOKEN:?...}` is the operator's token.
        let v = if v.starts_with("${RACKLOAD_TOKEN") {
            TOKEN
        } else {
            v
        };
        c.env(k, v);
    }
    c
}

#[test]
fn the_compose_services_commands_make_a_working_fabric() {
    let tag = new_tag("compose");
    let s = services();
    for name in ["sim", "coordinator", "worker", "bench"] {
        assert!(s.contains_key(name), "compose.yaml has no {name} service");
    }
    // The token travels in the environment (never on a command line ps would show).
    for name in ["coordinator", "worker", "bench"] {
        assert!(s[name].environment.contains_key("RACKLOAD_TOKEN"), "{name}");
        assert!(!s[name].command.iter().any(|a| a == "--token"), "{name}");
    }

    let sim_args = map(&s["sim"].command, &[("0.0.0.0:8000", "127.0.0.1:0")]);
    let (_sim, sim_url) = start_command("sim", command(&tag, &s["sim"], &sim_args));
    let sim_addr = sim_url.trim_start_matches("http://").to_owned();

    let metrics = format!("127.0.0.1:{}", closed_port());
    let coord_args = map(
        &s["coordinator"].command,
        &[("0.0.0.0:7400", "127.0.0.1:0"), ("0.0.0.0:9400", &metrics)],
    );
    let (_coord, coord_url) =
        start_command("coordinator", command(&tag, &s["coordinator"], &coord_args));

    let worker_args = map(
        &s["worker"].command,
        &[
            ("http://coordinator:7400", &coord_url),
            ("sim:8000", &sim_addr),
        ],
    );
    let workers = s["worker"].replicas;
    assert!(workers >= 2, "compose runs several workers");
    let _workers: Vec<Proc> = (0..workers)
        .map(|k| {
            let mut c = command(&tag, &s["worker"], &worker_args);
            c.args(["--id", &format!("compose-{k}")])
                .stdout(std::process::Stdio::null());
            Proc {
                name: format!("worker {k}"),
                child: c.spawn().expect("worker"),
            }
        })
        .collect();

    let results = tempfile::tempdir().expect("tempdir");
    let results_dir = results.path().display().to_string();
    let mut bench = map(
        &s["bench"].command,
        &[
            ("http://coordinator:7400", &coord_url),
            ("http://sim:8000", &sim_url),
            ("/results", &results_dir),
        ],
    );
    // The same flags, a smaller benchmark.
    set(&mut bench, "--max-concurrency", "4,8");
    set(&mut bench, "--num-prompts", "16");
    bench.extend(
        [
            "--random-input-len",
            "32",
            "--random-output-len",
            "8",
            "--warmup",
            "0",
        ]
        .map(String::from),
    );
    set(&mut bench, "--workers", &workers.to_string());
    let out = run_with_timeout(command(&tag, &s["bench"], &bench), 120.0);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = run_json(results.path()).expect("run.json");
    let points = run["points"].as_array().expect("points");
    assert_eq!(points.len(), 2);
    assert!(points.iter().all(|p| count(&p["completed"]) == 16));
    // The coordinator's metrics port answers as compose publishes it.
    assert!(
        get_text(&format!("http://{metrics}"), "/metrics").contains("rackload_workers_connected")
    );
}

#[test]
fn the_dockerfile_runs_the_binary_as_non_root_with_the_ports_compose_uses() {
    let path = manifest_dir().join("../deploy/Dockerfile");
    let text = std::fs::read_to_string(path).expect("Dockerfile");
    let last_stage = text.rsplit("\nFROM ").next().expect("a final stage");
    assert!(last_stage.contains("ENTRYPOINT [\"/usr/local/bin/rackload\"]"));
    let user = last_stage
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER in the runtime stage");
    assert!(
        !user.starts_with("0") && !user.starts_with("root"),
        "{user}"
    );
    assert!(text.contains("cargo build --release --locked -p rackload"));
    let exposed: Vec<&str> = last_stage
        .lines()
        .filter_map(|l| l.strip_prefix("EXPOSE "))
        .flat_map(|l| l.split_whitespace())
        .collect();
    for (name, s) in services() {
        for a in &s.command {
            if let Some(port) = a.strip_prefix("0.0.0.0:") {
                assert!(
                    exposed.contains(&port),
                    "{name} listens on {port}, not EXPOSEd"
                );
            }
        }
    }
}

/// deploy/slurm/rackload.sbatch under a stand-in Slurm: `scontrol show hostnames` names
/// one node (this host, as `localhost`) and `srun` runs its command there once.
#[test]
fn the_slurm_script_runs_a_benchmark_on_its_allocation() {
    use std::os::unix::fs::PermissionsExt as _;
    let tag = new_tag("slurm");
    let (sim, sim_url) = start_sim(&tag, &["--ttft-ms", "1", "--itl-ms", "1"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).expect("bin");
    for (name, body) in [
        ("scontrol", "#!/bin/sh\necho localhost\n"),
        (
            "srun",
            "#!/bin/sh\nwhile [ $# -gt 0 ]; do case \"$1\" in --*) shift ;; *) break ;; esac; done\nexec \"$@\"\n",
        ),
    ] {
        let p = bin.join(name);
        std::fs::write(&p, body).expect("shim");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let scenario = dir.path().join("small.toml");
    std::fs::write(
        &scenario,
        "[workload]\nrandom_input_len = 32\nrandom_output_len = 8\n\n[run]\nmax_concurrency = [2, 4]\nnum_prompts = 8\nwarmup = 0\n",
    )
    .expect("scenario");
    let results = dir.path().join("results");
    let rackload_dir = rackload_bin().parent().expect("bin dir").to_owned();
    let path = format!(
        "{}:{}:{}",
        bin.display(),
        rackload_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // Two distinct free ports (held together while chosen).
    let ports: Vec<u16> = {
        let held: Vec<std::net::TcpListener> = (0..2)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
            .collect();
        held.iter()
            .map(|l| l.local_addr().expect("addr").port())
            .collect()
    };
    let mut c = std::process::Command::new("bash");
    c.arg(manifest_dir().join("../deploy/slurm/rackload.sbatch"))
        .arg(&scenario)
        .current_dir(dir.path())
        .env(TAG_VAR, &tag)
        .env("PATH", path)
        .env("SLURM_JOB_NODELIST", "localhost")
        .env("RACKLOAD_TOKEN", "slurm-test-token")
        .env("TARGET", &sim_url)
        .env("RESULTS", &results)
        .env("RACKLOAD_PORT", ports[0].to_string())
        .env("RACKLOAD_METRICS_PORT", ports[1].to_string());
    let out = run_with_timeout(c, 120.0);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let run = run_json(&results).expect("run.json on the shared path");
    let points = run["points"].as_array().expect("points");
    assert_eq!(points.len(), 2);
    assert!(points.iter().all(|p| count(&p["completed"]) == 8));
    for log in ["coordinator", "workers"] {
        assert!(
            dir.path()
                .join(format!("rackload-local-{log}.log"))
                .exists(),
            "{log} log"
        );
    }
    // The coordinator and workers the script started are gone with it.
    drop(sim);
    assert_no_processes_left(&tag);
}

//! Many hosts on one machine: the coordinator, three workers and the sim each in a network
//! namespace of its own, joined by veth pairs to a bridge in a "switch" namespace, with
//! addresses from 198.18.0.0/24 (RFC 2544's benchmarking range) that exist only inside
//! these namespaces. A 3-point sweep runs across them and the counts must be exact.
//! Needs root and iproute2; skipped with a printed reason otherwise.

#![allow(clippy::disallowed_types)] // these tests wait on real processes, in real time

use std::process::{Command, Stdio};

use rackload_tests::*;
use serde_json::Value;

/// Namespaces made by this test, deleted (with every process in them) on drop.
struct Netns {
    names: Vec<String>,
}

impl Drop for Netns {
    fn drop(&mut self) {
        for n in &self.names {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", n]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Hosts and their addresses.
const HOSTS: [(&str, &str); 5] = [
    ("co", "198.18.0.1"),
    ("w1", "198.18.0.2"),
    ("w2", "198.18.0.3"),
    ("w3", "198.18.0.4"),
    ("sim", "198.18.0.5"),
];

fn build(prefix: &str) -> Result<Netns, String> {
    let sw = format!("{prefix}sw");
    let mut net = Netns {
        names: vec![sw.clone()],
    };
    ip(&["netns", "add", &sw])?;
    ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
    ip(&["-n", &sw, "link", "set", "br0", "up"])?;
    for (k, (host, addr)) in HOSTS.iter().enumerate() {
        let ns = format!("{prefix}{host}");
        ip(&["netns", "add", &ns])?;
        net.names.push(ns.clone());
        let port = format!("p{k}");
        ip(&[
            "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ])?;
        ip(&["-n", &sw, "link", "set", &port, "master", "br0", "up"])?;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
    }
    Ok(net)
}

fn in_ns(ns: &str, tag: &str, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns])
        .arg(rackload_bin())
        .args(args)
        .env(TAG_VAR, tag)
        .env("RUST_LOG", "warn")
        // Off loopback the fabric needs credentials: every host shares the token.
        .env("RACKLOAD_TOKEN", "multihost-token")
        .stdin(Stdio::null());
    c
}

/// Spawns a server and waits until it says it is listening (its first stdout line), so
/// that nothing races its bind.
fn spawn_listening(name: &str, mut c: Command) -> Proc {
    use std::io::BufRead;
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = std::io::BufReader::new(out).read_line(&mut line);
    }
    assert!(
        line.starts_with("listening on"),
        "{name} printed {line:?} instead of its address"
    );
    Proc {
        name: name.to_owned(),
        child,
    }
}

fn spawn(name: &str, mut c: Command) -> Proc {
    let child = c
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    Proc {
        name: name.to_owned(),
        child,
    }
}

#[test]
fn a_three_point_sweep_across_five_namespaces_counts_exactly() {
    let root = std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    if !root || Command::new("ip").arg("-V").output().is_err() {
        eprintln!("skipped: needs root and iproute2 to create network namespaces");
        return;
    }
    let prefix = format!("rl{}", std::process::id() % 100_000);
    let net = match build(&prefix) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("skipped: cannot create network namespaces here: {e}");
            return;
        }
    };
    let ns = |h: &str| format!("{prefix}{h}");
    let tag = new_tag("netns");
    let _sim = spawn_listening(
        "sim",
        in_ns(
            &ns("sim"),
            &tag,
            &[
                "sim",
                "--listen",
                "198.18.0.5:8000",
                "--ttft-ms",
                "5",
                "--itl-ms",
                "1",
            ],
        ),
    );
    let _coord = spawn_listening(
        "coordinator",
        in_ns(
            &ns("co"),
            &tag,
            &["coordinator", "--listen", "198.18.0.1:7400", "--insecure"],
        ),
    );
    let coord = "http://198.18.0.1:7400";
    let _workers: Vec<Proc> = ["w1", "w2", "w3"]
        .iter()
        .map(|w| {
            spawn(
                w,
                in_ns(
                    &ns(w),
                    &tag,
                    &[
                        "worker",
                        "--coordinator",
                        coord,
                        "--id",
                        w,
                        "--connect-wait",
                        "20",
                        "--insecure",
                    ],
                ),
            )
        })
        .collect();
    let results = tempfile::tempdir().expect("tempdir");
    let dir = results.path().to_string_lossy().into_owned();
    let cmd = in_ns(
        &ns("co"),
        &tag,
        &[
            "run",
            "--fabric-insecure",
            "--coordinator",
            coord,
            "--base-url",
            "http://198.18.0.5:8000",
            "--workers",
            "3",
            "--max-concurrency",
            "3,6,9",
            "--num-prompts",
            "18",
            "--warmup",
            "0",
            "--random-input-len",
            "32",
            "--random-output-len",
            "16",
            "--worker-wait",
            "30",
            "--results-dir",
            &dir,
        ],
    );
    let out = run_with_timeout(cmd, 120.0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let dir = run_dir(results.path()).expect("a run directory");
    let run: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).expect("run.json"))
            .expect("json");
    let points = run["points"].as_array().expect("points");
    assert_eq!(points.len(), 3);
    let mut total = 0;
    for p in points {
        assert_eq!(p["completed"], 18, "{p}");
        assert_eq!(p["failed"], 0);
        let per_worker: u64 = p["workers"]
            .as_array()
            .expect("workers")
            .iter()
            .map(|w| w["completed"].as_u64().unwrap_or(0))
            .sum();
        assert_eq!(per_worker, 18);
        total += 18;
    }
    // What the sim in its own namespace served.
    let stats = Command::new("ip")
        .args(["netns", "exec", &ns("sim"), "python3", "-c", "import urllib.request;print(urllib.request.urlopen('http://198.18.0.5:8000/stats').read().decode())"])
        .output()
        .expect("python3");
    let stats: Value = serde_json::from_slice(&stats.stdout).expect("stats json");
    assert_eq!(stats["served"], total, "{stats}");
    drop(net);
}

//! A tiny process harness for end-to-end tests (after ripgrep's `TestCommand`): find the
//! real `rackload` binary, start servers on port 0 and read the address they print, wait
//! with a patience that `RACKLOAD_TEST_PATIENCE` can raise, read the sim's `/stats`, and
//! find any process a test left behind. [`otlp`] is a real OTLP trace receiver.
#![allow(clippy::disallowed_types)] // the harness waits on real processes, in real time

pub mod otlp;
pub mod scripted;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `rackload` binary built next to this test (cargo builds it with the workspace).
pub fn rackload_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("RACKLOAD_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/rackload
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join("rackload");
    assert!(
        bin.exists(),
        "{} not built; run the tests with `cargo nextest run --workspace`",
        bin.display()
    );
    bin
}

/// This crate's directory, read when the test runs: cargo and nextest set
/// `CARGO_MANIFEST_DIR` at run time, while `env!` would bake in the path of whichever
/// checkout first built a shared target dir (CI clones elsewhere and reuses the build).
pub fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// How much longer than nominal a test may wait (for slow or busy machines).
pub fn patience() -> f64 {
    std::env::var("RACKLOAD_TEST_PATIENCE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0)
}

/// A tag that marks every process a test starts (through the environment), so that the
/// test can prove none is left behind.
pub fn new_tag(name: &str) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{name}-{}-{nanos}-{n}", std::process::id())
}

pub const TAG_VAR: &str = "RACKLOAD_TEST_TAG";

/// A `rackload` command carrying `tag`.
pub fn rackload(tag: &str) -> Command {
    let mut c = Command::new(rackload_bin());
    c.env(TAG_VAR, tag)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    c
}

/// A child process killed when dropped.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    pub child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a server subcommand on port 0 and returns it with the URL it printed.
pub fn start_server(tag: &str, name: &str, args: &[&str]) -> (Proc, String) {
    let mut cmd = rackload(tag);
    cmd.args(args);
    start_command(name, cmd)
}

/// Starts a server command (a `rackload` one, with its flags and environment set) and
/// returns it with the URL it printed.
pub fn start_command(name: &str, mut cmd: Command) -> (Proc, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read server output");
    let url = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{name} printed {line:?} instead of its address"))
        .trim()
        .to_owned();
    (
        Proc {
            name: name.to_owned(),
            child,
        },
        url,
    )
}

/// Starts a worker process.
pub fn start_worker(tag: &str, coordinator: &str, id: &str) -> Proc {
    start_worker_with(tag, coordinator, id, &[])
}

/// The command of a worker `id` of `coordinator` with `extra` flags (stdout discarded).
pub fn worker_command(tag: &str, coordinator: &str, id: &str, extra: &[&str]) -> Command {
    let mut c = rackload(tag);
    c.args(["worker", "--coordinator", coordinator, "--id", id])
        .args(extra)
        .stdout(Stdio::null());
    c
}

/// Starts a worker process with `extra` flags (caps, allowlist, log format...).
pub fn start_worker_with(tag: &str, coordinator: &str, id: &str, extra: &[&str]) -> Proc {
    let child = worker_command(tag, coordinator, id, extra)
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start worker");
    Proc {
        name: id.to_owned(),
        child,
    }
}

/// Starts `rackload sim` on a free loopback port with `extra` flags; returns it and its URL.
pub fn start_sim(tag: &str, extra: &[&str]) -> (Proc, String) {
    let mut args = vec!["sim", "--listen", "127.0.0.1:0"];
    args.extend(extra);
    start_server(tag, "sim", &args)
}

/// A standing coordinator and its workers, for runs against servers a test starts.
#[derive(Debug)]
pub struct Fabric {
    _coordinator: Proc,
    _workers: Vec<Proc>,
    /// The coordinator's URL.
    pub url: String,
}

/// Starts a coordinator and `workers` workers (ids w1, w2, ...).
pub fn start_fabric(tag: &str, workers: usize) -> Fabric {
    let (coordinator, url) = start_coordinator(tag);
    let workers = (1..=workers)
        .map(|k| start_worker(tag, &url, &format!("w{k}")))
        .collect();
    Fabric {
        _coordinator: coordinator,
        _workers: workers,
        url,
    }
}

/// Starts a coordinator on a free loopback port; returns it and its URL.
pub fn start_coordinator(tag: &str) -> (Proc, String) {
    start_server(
        tag,
        "coordinator",
        &["coordinator", "--listen", "127.0.0.1:0"],
    )
}

/// Lets `secs` × patience of wall time pass (for "nothing happens meanwhile" checks).
pub fn pause(secs: f64) {
    std::thread::sleep(Duration::from_secs_f64(secs * patience()));
}

/// Waits until `f` holds, for `secs` × patience; panics with `what` otherwise.
pub fn wait_until(secs: f64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs_f64(secs * patience());
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// GET `path` from `base` (an `http://host:port` URL): the body as text.
pub fn get_text(base: &str, path: &str) -> String {
    get_text_with(base, path, &[])
}

/// GET `path` from `base` with extra request headers: the body as text.
pub fn get_text_with(base: &str, path: &str, headers: &[(&str, &str)]) -> String {
    let addr = base.trim_start_matches("http://").trim_end_matches('/');
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n"
    )
    .expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    resp.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

/// GET `path` from `base` and parse the JSON body.
pub fn get_json(base: &str, path: &str) -> serde_json::Value {
    let body = get_text(base, path);
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

/// Pids of live processes whose environment carries `tag`.
pub fn processes_tagged(tag: &str) -> Vec<u32> {
    let needle = format!("{TAG_VAR}={tag}");
    let mut pids = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        // Zombies have an empty environ and are not running anything.
        let Ok(env) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if env.split(|&b| b == 0).any(|kv| kv == needle.as_bytes()) {
            pids.push(pid);
        }
    }
    pids
}

/// Waits until no process carries `tag`.
pub fn assert_no_processes_left(tag: &str) {
    let mut left = Vec::new();
    let deadline = Instant::now() + Duration::from_secs_f64(5.0 * patience());
    while Instant::now() < deadline {
        left = processes_tagged(tag);
        if left.is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("processes left behind: {left:?}");
}

/// A loopback port with nothing listening on it.
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    port
}

/// Runs a command to completion with a time limit, returning its output.
pub fn run_with_timeout(mut cmd: Command, secs: f64) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rackload");
    // Drain both pipes on threads so a chatty child never blocks on a full pipe.
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + Duration::from_secs_f64(secs * patience());
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "command did not finish in {secs} s\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out.join().unwrap_or_default()),
                String::from_utf8_lossy(&err.join().unwrap_or_default())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// A JSON count, or a panic naming the value.
pub fn count(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// The `run.json` of the one run under `results`, if it is there.
pub fn run_json(results: &std::path::Path) -> Option<serde_json::Value> {
    let run = run_dir(results)?;
    serde_json::from_str(&std::fs::read_to_string(run.join("run.json")).ok()?).ok()
}

/// The one run directory under `results` (None before the run made it).
pub fn run_dir(results: &std::path::Path) -> Option<PathBuf> {
    let mut runs = std::fs::read_dir(results).ok()?.flatten();
    let run = runs.next()?.path();
    assert!(
        runs.next().is_none(),
        "more than one run under {}",
        results.display()
    );
    Some(run)
}

/// Every line of a gzipped JSON-lines file the run wrote (`requests/…`, `telemetry/…`),
/// gzip members concatenated as they were appended.
pub fn jsonl_gz(path: &std::path::Path) -> Vec<serde_json::Value> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    BufReader::new(flate2::read::MultiGzDecoder::new(file))
        .lines()
        .map(|l| serde_json::from_str(&l.expect("a line")).expect("a JSON line"))
        .collect()
}

/// The shared Qwen2.5 tokenizer (../shared/data). Its absence fails the test loudly: CI
/// lays shared/ beside the checkout, and a test that passed without its data would say
/// nothing.
pub fn shared_tokenizer() -> PathBuf {
    let p = manifest_dir().join("../../shared/data/tokenizer/qwen2.5/tokenizer.json");
    assert!(
        p.exists(),
        "{} is absent: the tests read ../shared/data beside the checkout (see its README)",
        p.display()
    );
    p
}

//! The embedded mode's child processes (sim, coordinator, workers): started from this same
//! binary on loopback, each in its own process group so that a terminal's Ctrl-C reaches
//! only the CLI, which then stops them in order. They are killed if the CLI dies
//! (`PR_SET_PDEATHSIG`) and reaped on every exit path, so none is ever orphaned.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Children in start order; stopped in reverse order.
#[derive(Debug, Default)]
pub struct Children {
    procs: Vec<(String, Child)>,
}

/// The line a server child prints first on stdout once it is listening.
pub const LISTENING: &str = "listening on ";

fn command(args: &[&str]) -> anyhow::Result<Command> {
    let exe = std::env::current_exe().context("cannot find the rackload binary")?;
    let mut cmd = Command::new(exe);
    // The global flags first: children log and export traces as the CLI was told to.
    if crate::log_format() == crate::args::LogFormat::Json {
        cmd.args(["--log-format", "json"]);
    }
    if let Some(otlp) = crate::otlp_flag() {
        cmd.args(["--otlp-endpoint", otlp]);
    }
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .process_group(0);
    // The embedded fabric is loopback-only plaintext: fabric credentials meant for a
    // standing coordinator must not reach the children.
    for var in [
        "RACKLOAD_TOKEN",
        "RACKLOAD_TLS_CERT",
        "RACKLOAD_TLS_KEY",
        "RACKLOAD_TLS_CA",
    ] {
        cmd.env_remove(var);
    }
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "warn");
    }
    die_with_parent(&mut cmd);
    Ok(cmd)
}

#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent; this runs in
    // the child between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

impl Children {
    /// Starts a server child and waits for the address it prints.
    pub async fn start_server(&mut self, name: &str, args: &[&str]) -> anyhow::Result<String> {
        let mut child = command(args)?
            .spawn()
            .with_context(|| format!("cannot start the {name}"))?;
        let stdout = child.stdout.take().context("child has no stdout")?;
        self.procs.push((name.to_owned(), child));
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(15), lines.next_line())
            .await
            .with_context(|| format!("the {name} did not start within 15 s"))?
            .with_context(|| format!("cannot read the {name}'s output"))?;
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        match first.as_deref().and_then(|l| l.strip_prefix(LISTENING)) {
            Some(addr) => Ok(addr.trim().to_owned()),
            None => bail!("the {name} exited before it was listening"),
        }
    }

    /// Starts a child that prints nothing to wait for.
    pub fn start(&mut self, name: &str, args: &[&str]) -> anyhow::Result<()> {
        let mut cmd = command(args)?;
        cmd.stdout(Stdio::null());
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        self.procs.push((name.to_owned(), child));
        Ok(())
    }

    /// Names of children that have exited, with their status.
    pub fn exited(&mut self) -> Vec<String> {
        self.procs
            .iter_mut()
            .filter_map(|(name, c)| match c.try_wait() {
                Ok(Some(status)) => Some(format!("{name} exited ({status})")),
                _ => None,
            })
            .collect()
    }

    /// Stops every child, newest first: SIGTERM, then SIGKILL after a grace period.
    pub async fn shutdown(&mut self) {
        for (_, child) in self.procs.iter().rev() {
            if let Some(pid) = child.id() {
                // A pid we spawned and have not reaped: it is ours to signal.
                #[allow(unsafe_code)]
                // SAFETY: kill(2) has no memory-safety preconditions.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGTERM);
                }
            }
        }
        for (name, child) in self.procs.iter_mut().rev() {
            match tokio::time::timeout(Duration::from_secs(3), child.wait()).await {
                Ok(_) => {}
                Err(_) => {
                    tracing::warn!("{name} did not stop within 3 s; killing it");
                    let _ = child.kill().await;
                }
            }
        }
        self.procs.clear();
    }
}

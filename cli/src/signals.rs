//! The signals that end a process the way Ctrl-C does: SIGINT, SIGTERM (how Kubernetes and
//! Slurm stop a job) and SIGHUP (a closed terminal). `rackload run` aborts its run on the
//! first, keeps what finished, and leaves at once on a second; the servers (coordinator,
//! worker, sim) shut down gracefully.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// The three signals, listened to from creation on (their default action, to die at
/// once, is off while this lives).
pub struct Interrupts {
    int: Option<Signal>,
    term: Option<Signal>,
    hup: Option<Signal>,
}

fn listen(kind: SignalKind, name: &str) -> Option<Signal> {
    signal(kind)
        .map_err(|e| tracing::warn!("cannot listen for {name}: {e}"))
        .ok()
}

async fn recv(s: &mut Option<Signal>) -> Option<()> {
    match s {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

impl Interrupts {
    pub fn new() -> Interrupts {
        Interrupts {
            int: listen(SignalKind::interrupt(), "SIGINT"),
            term: listen(SignalKind::terminate(), "SIGTERM"),
            hup: listen(SignalKind::hangup(), "SIGHUP"),
        }
    }

    /// The next signal, by name.
    pub async fn next(&mut self) -> &'static str {
        tokio::select! {
            Some(()) = recv(&mut self.int) => "SIGINT",
            Some(()) = recv(&mut self.term) => "SIGTERM",
            Some(()) = recv(&mut self.hup) => "SIGHUP",
            // Every stream closed: nothing more can arrive.
            else => std::future::pending().await,
        }
    }
}

/// Resolves on SIGINT, SIGTERM or SIGHUP.
pub async fn shutdown_signal() {
    let name = Interrupts::new().next().await;
    tracing::info!("{name}: shutting down");
}

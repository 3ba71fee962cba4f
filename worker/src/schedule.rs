//! The closed loop: C tasks, each sending its next request as soon as its previous one
//! ended. Tasks take the shard's requests in index order from one shared counter, so the
//! shard sends exactly its stripe of the global stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rackload_workloads::{Stripe, WorkloadSpec};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::recorder::Recorder;
use crate::target::OpenAiTarget;

/// How a running shard should end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopMode {
    /// Keep going.
    Run,
    /// Send nothing new; let in-flight requests finish.
    Drain,
    /// Cancel in-flight requests now.
    Abort,
}

/// One worker's part of a closed-loop point.
#[derive(Clone, Debug)]
pub struct ClosedLoop {
    pub workload: WorkloadSpec,
    pub stripe: Stripe,
    pub concurrency: u32,
}

/// Failures logged per shard before the rest are only counted.
const LOGGED_FAILURES: u64 = 5;

impl ClosedLoop {
    /// Runs until the stripe is exhausted or `stop` says otherwise.
    pub async fn run(
        &self,
        target: Arc<OpenAiTarget>,
        recorder: Arc<Recorder>,
        mut stop: watch::Receiver<StopMode>,
    ) {
        let next = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(AtomicU64::new(0));
        let mut tasks = JoinSet::new();
        for _ in 0..self.concurrency {
            let (target, recorder, next, failures) = (
                target.clone(),
                recorder.clone(),
                next.clone(),
                failures.clone(),
            );
            let (workload, stripe) = (self.workload.clone(), self.stripe);
            let stop = stop.clone();
            tasks.spawn(async move {
                let mut itl = Vec::with_capacity(1024);
                while *stop.borrow() == StopMode::Run {
                    let Some(index) = stripe.nth(next.fetch_add(1, Ordering::Relaxed)) else {
                        break;
                    };
                    // The spec was validated when the plan was accepted.
                    let Ok(req) = workload.request(index) else {
                        break;
                    };
                    itl.clear();
                    recorder.sent();
                    match target.send(&req, &mut itl).await {
                        Ok(done) => recorder.completed(&done, req.input_len, &itl, Instant::now()),
                        Err(failed) => {
                            recorder.failed(failed.class);
                            if failures.fetch_add(1, Ordering::Relaxed) < LOGGED_FAILURES {
                                tracing::warn!(request = index, "request failed: {failed}");
                            }
                        }
                    }
                }
            });
        }
        loop {
            tokio::select! {
                joined = tasks.join_next() => {
                    if joined.is_none() {
                        return;
                    }
                }
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() == StopMode::Abort {
                        tasks.abort_all();
                        while tasks.join_next().await.is_some() {}
                        return;
                    }
                }
            }
        }
    }
}

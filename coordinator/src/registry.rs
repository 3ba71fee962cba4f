//! The fleet: every connected worker with what it said in its hello, the channel to send
//! it messages, and — while a run holds it — the run's inbox for its acks and reports.

use std::collections::BTreeMap;
use std::sync::Mutex;

use rackload_proto::v1::{CoordinatorMessage, Hello, PlanAck, Report, WorkerInfo};
use tokio::sync::mpsc;
use tonic::Status;

/// What a worker's session forwards to the run that holds the worker.
#[derive(Debug)]
pub enum WorkerEvent {
    Ack(String, PlanAck),
    Interval(String, Report),
    Final(String, Report),
    /// The session ended.
    Lost(String, String),
}

pub type Outbox = mpsc::Sender<Result<CoordinatorMessage, Status>>;

#[derive(Debug)]
pub struct WorkerEntry {
    pub hello: Hello,
    pub peer: String,
    pub outbox: Outbox,
    /// Session generation, so that a stale session never removes a newer one.
    pub session: u64,
    /// The run holding this worker, and its inbox.
    pub held_by: Option<(String, mpsc::Sender<WorkerEvent>)>,
}

#[derive(Debug, Default)]
pub struct Registry {
    workers: Mutex<BTreeMap<String, WorkerEntry>>,
    sessions: std::sync::atomic::AtomicU64,
}

/// A worker a run has claimed.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: String,
    pub hello: Hello,
    pub outbox: Outbox,
    /// The session it was claimed in.
    pub session: u64,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, WorkerEntry>> {
        self.workers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a worker; refuses a second session under an id that is connected.
    pub(crate) fn register(
        &self,
        hello: Hello,
        peer: String,
        outbox: Outbox,
    ) -> Result<u64, String> {
        let mut w = self.lock();
        if w.contains_key(&hello.worker_id) {
            return Err(format!(
                "a worker with id {:?} is already connected; give each worker its own --id",
                hello.worker_id
            ));
        }
        let session = self
            .sessions
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        w.insert(
            hello.worker_id.clone(),
            WorkerEntry {
                hello,
                peer,
                outbox,
                session,
                held_by: None,
            },
        );
        Ok(session)
    }

    /// Removes a worker whose session ended; returns the inbox of the run holding it.
    pub fn remove(&self, id: &str, session: u64) -> Option<mpsc::Sender<WorkerEvent>> {
        let mut w = self.lock();
        if w.get(id).is_some_and(|e| e.session == session) {
            return w.remove(id).and_then(|e| e.held_by.map(|(_, inbox)| inbox));
        }
        None
    }

    pub(crate) fn inbox_of(&self, id: &str) -> Option<mpsc::Sender<WorkerEvent>> {
        self.lock()
            .get(id)
            .and_then(|e| e.held_by.as_ref().map(|(_, i)| i.clone()))
    }

    /// Idle workers (not held by a run).
    pub(crate) fn idle_count(&self) -> usize {
        self.lock().values().filter(|e| e.held_by.is_none()).count()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Claims up to `n` idle workers (in id order) for `run_id`.
    pub(crate) fn claim(
        &self,
        n: usize,
        run_id: &str,
        inbox: &mpsc::Sender<WorkerEvent>,
    ) -> Vec<Claimed> {
        let mut w = self.lock();
        let mut out = Vec::new();
        for (id, e) in w.iter_mut() {
            if out.len() == n {
                break;
            }
            if e.held_by.is_none() {
                e.held_by = Some((run_id.to_owned(), inbox.clone()));
                out.push(Claimed {
                    id: id.clone(),
                    hello: e.hello.clone(),
                    outbox: e.outbox.clone(),
                    session: e.session,
                });
            }
        }
        out
    }

    /// True while the session `session` of worker `id` is connected and held by `run_id`.
    pub(crate) fn is_held_by(&self, id: &str, session: u64, run_id: &str) -> bool {
        self.lock().get(id).is_some_and(|e| {
            e.session == session && e.held_by.as_ref().is_some_and(|(r, _)| r == run_id)
        })
    }

    /// Releases every worker `run_id` holds.
    pub fn release(&self, run_id: &str) {
        for e in self.lock().values_mut() {
            if e.held_by.as_ref().is_some_and(|(r, _)| r == run_id) {
                e.held_by = None;
            }
        }
    }

    pub fn list(&self) -> Vec<WorkerInfo> {
        self.lock()
            .iter()
            .map(|(id, e)| WorkerInfo {
                worker_id: id.clone(),
                host: e.hello.host.clone(),
                cores: e.hello.cores,
                build_version: e.hello.build_version.clone(),
                state: match &e.held_by {
                    None => "idle".to_owned(),
                    Some((run, _)) => format!("running {run}"),
                },
                peer: e.peer.clone(),
            })
            .collect()
    }
}

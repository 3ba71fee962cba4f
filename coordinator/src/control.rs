//! The Control service the CLI talks to: submit a run and follow its events, list the
//! fleet, abort a run. A run whose client goes away is aborted, so no load is left
//! running without someone to receive its results.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures_util::Stream;
use rackload_proto::v1::control_server::Control;
use rackload_proto::v1::{
    AbortRunRequest, AbortRunResponse, ListWorkersRequest, ListWorkersResponse, RunEvent, RunSpec,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::registry::Registry;
use rackload_proto::time::{compact_stamp, unix_nanos};

/// Runs in progress and their abort switches.
#[derive(Debug, Default)]
pub struct Runs {
    active: Mutex<HashMap<String, watch::Sender<bool>>>,
    counter: std::sync::atomic::AtomicU64,
}

impl Runs {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Sender<bool>>> {
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new run id: UTC time, then a short suffix unique within this coordinator.
    fn new_id(&self) -> String {
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let now = unix_nanos();
        let salt = (now as u64 ^ (u64::from(std::process::id()) << 20) ^ n)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            >> 48;
        format!("{}-{salt:04x}", compact_stamp(now / 1_000_000_000))
    }
}

pub struct ControlService {
    registry: Arc<Registry>,
    runs: Arc<Runs>,
    config: crate::CoordinatorConfig,
    live: Arc<crate::metrics::Live>,
}

impl ControlService {
    pub fn new(
        registry: Arc<Registry>,
        runs: Arc<Runs>,
        config: crate::CoordinatorConfig,
        live: Arc<crate::metrics::Live>,
    ) -> ControlService {
        ControlService {
            registry,
            runs,
            config,
            live,
        }
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<RunEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Control for ControlService {
    type SubmitRunStream = EventStream;

    async fn submit_run(&self, request: Request<RunSpec>) -> Result<Response<EventStream>, Status> {
        let spec = request.into_inner();
        let resolved = rackload_spec::ResolvedRun::from_proto(&spec)
            .map_err(|e| Status::invalid_argument(format!("invalid run spec: {e}")))?;
        let run_id = self.runs.new_id();
        let (tx, rx) = mpsc::channel(64);
        let (abort_tx, abort_rx) = watch::channel(false);
        self.runs.lock().insert(run_id.clone(), abort_tx);
        tracing::info!(run = %run_id, points = spec.points.len(), workers = spec.workers, "run submitted");
        let (registry, runs, live) = (self.registry.clone(), self.runs.clone(), self.live.clone());
        let max = self.config.max_run_duration;
        tokio::spawn(async move {
            crate::run::execute(
                registry,
                run_id.clone(),
                resolved,
                spec,
                tx,
                abort_rx,
                max,
                live,
            )
            .await;
            runs.lock().remove(&run_id);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_workers(
        &self,
        _request: Request<ListWorkersRequest>,
    ) -> Result<Response<ListWorkersResponse>, Status> {
        Ok(Response::new(ListWorkersResponse {
            workers: self.registry.list(),
        }))
    }

    async fn abort_run(
        &self,
        request: Request<AbortRunRequest>,
    ) -> Result<Response<AbortRunResponse>, Status> {
        let id = request.into_inner().run_id;
        let found = match self.runs.lock().get(&id) {
            Some(tx) => {
                let _ = tx.send(true);
                true
            }
            None => false,
        };
        Ok(Response::new(AbortRunResponse { found }))
    }
}

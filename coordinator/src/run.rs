//! One run, start to end: claim workers, then for each point of the sweep split the
//! concurrency into integer shares weighted by capacity, hand out shard plans, wait until
//! every worker acknowledged (the barrier), start all at one instant a little in the
//! future, merge their reports, and emit progress and the point's result. A worker lost
//! mid-point costs its in-flight requests (counted as lost), never the run: the point is
//! marked degraded and later points are re-sharded over the workers left (and any that
//! came back).

use std::sync::Arc;
use std::time::Duration;

use rackload_proto::histogram::METRICS;
use rackload_proto::v1::coordinator_message::Msg as CMsg;
use rackload_proto::v1::run_event::Event;
use rackload_proto::v1::{
    CoordinatorMessage, OnWorkerLoss, PointResult, PointStarted, PowerSample, Progress,
    RequestRecords, RunAccepted, RunEvent, RunFinished, RunSpec, RunStatus, ShardPlan, Start, Stop,
    WorkerShare,
};
use rackload_spec::defaults::REPORT_INTERVAL;
use rackload_spec::plan::plan_point;
use rackload_spec::{Point, ResolvedRun};
use rackload_workloads::shard::Stripe;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tonic::Status;
use tracing::Instrument as _;

use crate::merge::PointMerge;
use crate::registry::{Claimed, Registry, WorkerEvent};
use rackload_proto::time::unix_nanos;

/// How far in the future the common start instant is set, once every worker acked.
pub(crate) const START_DELAY: Duration = Duration::from_millis(300);
/// How long workers have to acknowledge a plan (they check the target first).
pub(crate) const ACK_TIMEOUT: Duration = Duration::from_secs(20);
/// A `Stop` for this point index stops the run's shard whatever its point.
pub(crate) const ANY_POINT: u32 = u32::MAX;

/// How long an aborted point waits for final reports.
const ABORT_GRACE: Duration = Duration::from_secs(3);

pub type EventSink = mpsc::Sender<Result<RunEvent, Status>>;

enum Outcome {
    Completed,
    Aborted(String),
    Failed(String),
}

struct Run {
    registry: Arc<Registry>,
    run_id: String,
    /// The run as resolved by the client (checked, never defaulted again).
    spec: ResolvedRun,
    /// The run as submitted: its target and workload go out in every plan as they came.
    wire: RunSpec,
    events: EventSink,
    abort: watch::Receiver<bool>,
    inbox_tx: mpsc::Sender<WorkerEvent>,
    inbox: mpsc::Receiver<WorkerEvent>,
    /// Workers this run holds now.
    workers: Vec<Claimed>,
    /// What `/metrics` shows.
    live: Arc<crate::metrics::Live>,
    /// Metrics pages already warned about in this run (each once, not once a point).
    telemetry_warned: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

impl Run {
    /// Sends an event to the client; false when the client is gone.
    async fn emit(&self, event: Event) -> bool {
        self.events
            .send(Ok(RunEvent { event: Some(event) }))
            .await
            .is_ok()
    }

    /// Merges a worker's report (`last`: its final one) and passes its per-request records
    /// on to the client as they came — only from a report the merge counts.
    async fn take_report(
        &self,
        merge: &mut PointMerge,
        worker: &str,
        point: &Point,
        mut report: rackload_proto::v1::Report,
        last: bool,
    ) -> Result<(), rackload_proto::histogram::HistogramError> {
        if merge.accepts(worker) && !report.requests_gz.is_empty() {
            let records = RequestRecords {
                point_index: report.point_index,
                label: point.label.clone(),
                worker_id: worker.to_owned(),
                gz: std::mem::take(&mut report.requests_gz),
            };
            let _ = self.emit(Event::RequestRecords(records)).await;
        }
        merge.add(worker, &report, last)
    }

    fn aborted(&self) -> bool {
        *self.abort.borrow() || self.events.is_closed()
    }

    /// Puts the point's merged state on `/metrics`.
    fn show(&self, point: &Point, merge: &PointMerge) {
        self.live.point(
            &self.run_id,
            &point.label,
            &merge.counters,
            merge.in_flight(),
            &merge.lat,
        );
    }

    fn abort_on_loss(&self) -> bool {
        self.spec.on_worker_loss == OnWorkerLoss::Abort
    }

    /// Drops workers whose session ended and claims idle ones up to the run's size.
    fn refresh_workers(&mut self) {
        let registry = &self.registry;
        self.workers
            .retain(|w| registry.is_held_by(&w.id, w.session, &self.run_id));
        let want = self.spec.workers as usize;
        if self.workers.len() < want {
            let more = registry.claim(want - self.workers.len(), &self.run_id, &self.inbox_tx);
            self.workers.extend(more);
        }
    }
}

/// Runs `spec` under `run_id`, streaming events to `events` until the run ends.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn execute(
    registry: Arc<Registry>,
    run_id: String,
    spec: ResolvedRun,
    wire: RunSpec,
    events: EventSink,
    abort: watch::Receiver<bool>,
    max_duration: Duration,
    live: Arc<crate::metrics::Live>,
) {
    // The root of the run's trace: points, shards and sampled requests hang under it.
    let span = tracing::info_span!(
        "run",
        otel.name = "rackload run",
        otel.kind = "internal",
        run = %run_id,
        rackload.run.id = %run_id,
        rackload.points = spec.points.len(),
        rackload.workers = spec.workers,
        rackload.status = tracing::field::Empty,
    );
    live.run_started(&run_id);
    let id = run_id.clone();
    let (inbox_tx, inbox) = mpsc::channel(4096);
    let run = Run {
        telemetry_warned: Arc::default(),
        live: live.clone(),
        registry,
        run_id,
        spec,
        wire,
        events,
        abort,
        inbox_tx,
        inbox,
        workers: Vec::new(),
    };
    finish(run, max_duration).instrument(span).await;
    live.run_finished(&id);
}

/// Runs every point (within the coordinator's time limit) and reports how the run ended.
async fn finish(mut run: Run, max_duration: Duration) {
    let outcome = match tokio::time::timeout(max_duration, run_all(&mut run)).await {
        Ok(o) => o,
        Err(_) => {
            // Hard limit: stop every worker the run holds, whatever point it is on.
            let stop = CMsg::Stop(Stop {
                run_id: run.run_id.clone(),
                point_index: ANY_POINT,
                reason: "the coordinator's --max-run-duration was reached".into(),
                abort: true,
            });
            for w in &run.workers {
                let _ = w
                    .outbox
                    .send(Ok(CoordinatorMessage {
                        msg: Some(stop.clone()),
                    }))
                    .await;
            }
            Outcome::Aborted(format!(
                "the run reached the coordinator's limit of {:.0} s (--max-run-duration)",
                max_duration.as_secs_f64()
            ))
        }
    };
    run.registry.release(&run.run_id);
    let (status, message) = match outcome {
        Outcome::Completed => (RunStatus::Completed, String::new()),
        Outcome::Aborted(m) => (RunStatus::Aborted, m),
        Outcome::Failed(m) => (RunStatus::Failed, m),
    };
    tracing::Span::current().record("rackload.status", status.as_str_name());
    tracing::info!(run = %run.run_id, ?status, "{message}");
    run.emit(Event::Finished(RunFinished {
        run_id: run.run_id.clone(),
        status: status as i32,
        message,
    }))
    .await;
}

async fn run_all(run: &mut Run) -> Outcome {
    let want = run.spec.workers as usize;
    let wait = run.spec.worker_wait;
    let deadline = Instant::now() + wait;
    while run.registry.idle_count() < want {
        if run.aborted() {
            return Outcome::Aborted("aborted while waiting for workers".into());
        }
        if Instant::now() >= deadline {
            return Outcome::Failed(format!(
                "the run needs {want} idle workers; {} connected, {} idle after waiting {:.0} s",
                run.registry.len(),
                run.registry.idle_count(),
                wait.as_secs_f64()
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    run.refresh_workers();
    if run.workers.len() < want {
        return Outcome::Failed(format!(
            "could claim only {} of {want} workers",
            run.workers.len()
        ));
    }
    let accepted = RunAccepted {
        run_id: run.run_id.clone(),
        worker_ids: run.workers.iter().map(|w| w.id.clone()).collect(),
    };
    if !run.emit(Event::Accepted(accepted)).await {
        return Outcome::Aborted("client went away".into());
    }
    let points = run.spec.points.clone();
    for (k, point) in points.iter().enumerate() {
        if k > 0 && !run.spec.cooldown.is_zero() {
            tokio::time::sleep(run.spec.cooldown).await;
        }
        run.refresh_workers();
        if run.workers.is_empty() {
            return Outcome::Failed(format!("no workers left for point {}", point.label));
        }
        match run_point(run, k as u32, point).await {
            Ok(result) => {
                let degraded = result.degraded;
                if !run.emit(Event::PointResult(result)).await {
                    return Outcome::Aborted("client went away".into());
                }
                if degraded && run.abort_on_loss() {
                    return Outcome::Aborted(format!(
                        "a worker was lost during point {} (--on-worker-loss abort)",
                        point.label
                    ));
                }
            }
            Err(outcome) => return outcome,
        }
    }
    Outcome::Completed
}

async fn send_all(workers: &[(Claimed, u32)], m: CMsg) {
    for (w, _) in workers {
        let _ = w
            .outbox
            .send(Ok(CoordinatorMessage {
                msg: Some(m.clone()),
            }))
            .await;
    }
}

/// One point under its own span; the span's trace context travels in every shard plan.
async fn run_point(run: &mut Run, index: u32, point: &Point) -> Result<PointResult, Outcome> {
    let span = tracing::info_span!(
        "point",
        otel.name = %format!("point {}", point.label),
        run = %run.run_id,
        point = %point.label,
        rackload.point.index = index,
        rackload.point.label = %point.label,
        rackload.max_concurrency = point.max_concurrency.unwrap_or(0),
        rackload.request_rate = point.request_rate.unwrap_or(0.0),
        rackload.completed = tracing::field::Empty,
        rackload.failed = tracing::field::Empty,
        rackload.output_tokens = tracing::field::Empty,
    );
    let traceparent = rackload_telemetry::traceparent_of_span(&span).unwrap_or_default();
    let result = run_point_in(run, index, point, traceparent)
        .instrument(span.clone())
        .await;
    if let Ok(r) = &result
        && let Some(c) = &r.counters
    {
        span.record("rackload.completed", c.completed);
        span.record("rackload.failed", c.failed_by_class.values().sum::<u64>());
        span.record("rackload.output_tokens", c.output_tokens);
    }
    result
}

/// The workers of a point and what each was given.
struct Active {
    index: u32,
    run_id: String,
    /// Each worker with its concurrency (0: an open loop without a cap).
    workers: Vec<(Claimed, u32)>,
    stripes: Vec<Stripe>,
}

impl Active {
    fn stop(&self, abort: bool, reason: &str) -> CMsg {
        CMsg::Stop(Stop {
            run_id: self.run_id.clone(),
            point_index: self.index,
            reason: reason.to_owned(),
            abort,
        })
    }

    async fn stop_all(&self, abort: bool, reason: &str) {
        send_all(&self.workers, self.stop(abort, reason)).await;
    }
}

/// How the barrier ended short of a start.
enum Unready {
    /// The run ends.
    End(Outcome),
    /// A worker was lost before the start: plan the point again without it.
    Replan,
}

async fn run_point_in(
    run: &mut Run,
    index: u32,
    point: &Point,
    traceparent: String,
) -> Result<PointResult, Outcome> {
    let active = send_plans(run, index, point, &traceparent).await;
    let acked = match barrier(run, point, &active).await {
        Ok(acked) => acked,
        Err(Unready::End(outcome)) => return Err(outcome),
        Err(Unready::Replan) => return Box::pin(run_point(run, index, point)).await,
    };
    // One start instant for all, a little in the future.
    let start_unix_nanos = unix_nanos() + START_DELAY.as_nanos() as i64;
    send_all(
        &active.workers,
        CMsg::Start(Start {
            run_id: run.run_id.clone(),
            point_index: index,
            start_unix_nanos,
        }),
    )
    .await;
    // The rack's meters, read while the point runs.
    let spec = &run.spec;
    let sampler = (!spec.gpu_metrics.is_empty()
        || !spec.server_metrics.is_empty()
        || !spec.node_power.is_empty())
    .then(|| {
        rackload_scrape::Sampler::start(rackload_scrape::sampler::Sources {
            gpu: spec.gpu_metrics.clone(),
            node: spec.node_power.clone(),
            server: spec.server_metrics.clone(),
            // https pages are read as the run's targets are (its --tls-ca, --insecure).
            tls: rackload_tls::client_config(
                spec.target.tls_insecure,
                spec.target.tls_ca_pem.as_deref().unwrap_or_default(),
            )
            .ok(),
            bmc_tls: rackload_tls::client_config(
                false,
                spec.target.tls_ca_pem.as_deref().unwrap_or_default(),
            )
            .ok(),
            interval: spec.telemetry_interval,
            warned: run.telemetry_warned.clone(),
        })
    });
    let started = point_started(&active, point, &acked, start_unix_nanos);
    if !run.emit(Event::PointStarted(started)).await {
        active.stop_all(true, "client went away").await;
        return Err(Outcome::Aborted("client went away".into()));
    }
    tracing::info!(run = %run.run_id, point = %point.label, workers = active.workers.len(), "point started");
    let mut merge = collect(run, point, &active).await?;
    // Workers that did not report within the grace of a loss-abort count as lost too.
    let silent: Vec<String> = merge
        .workers
        .iter()
        .filter(|(_, w)| !w.done)
        .map(|(id, _)| id.clone())
        .collect();
    for id in silent {
        merge.lose(&id);
    }
    let readings = match sampler {
        Some(s) => s.stop().await,
        None => rackload_scrape::sampler::Readings::default(),
    };
    let (from, to) = merge.window_nanos();
    merge
        .result(index, point, start_unix_nanos, run.spec.max_failure_rate)
        .map(|mut r| {
            // The SLOs its good_completed was counted by, for its figures.
            r.goodput = run.spec.goodput;
            let (from, to) = (start_unix_nanos + from, start_unix_nanos + to);
            r.server = rackload_scrape::server::figures(&readings.server, from, to);
            r.server_samples = readings.server.iter().map(server_sample).collect();
            // A stretch of the window longer than two intervals (and a read's wait)
            // without a reading is not measured.
            let max_gap = 2 * run.spec.telemetry_interval.as_nanos() as i64 + 2_000_000_000;
            let gpu = measured_power(&readings.power, from, to, max_gap);
            (r.gpu_power_w, r.energy_j, r.gpus_measured) = gpu;
            r.power_samples = readings.power;
            let node = measured_power(&readings.node, from, to, max_gap);
            (r.node_power_w, r.node_energy_j, r.nodes_measured) = node;
            r.node_power_samples = readings.node;
            r
        })
        .map_err(|e| Outcome::Failed(format!("point {}: {e}", point.label)))
}

/// The mean power, energy and count of meters (GPUs or nodes) over the point's
/// measurement window, from the readings taken while it ran (nothing when they do not
/// cover it): the meters' own energy counters' change when every reading has them, else
/// the power readings integrated.
fn measured_power(
    readings: &[PowerSample],
    from: i64,
    to: i64,
    max_gap: i64,
) -> (Option<f64>, Option<f64>, u32) {
    let meters = readings.iter().map(|s| s.gpus).max().unwrap_or(0);
    let counted: Option<Vec<(i64, f64)>> = readings
        .iter()
        .map(|s| s.energy_j.map(|j| (s.unix_nanos, j)))
        .collect();
    // The counters are trusted only from the same GPUs throughout (a GPU joining adds its
    // energy since boot) and when they moved between every two readings in the window
    // (an exporter that collects every 30 s, DCGM's default, steps its counter: its
    // change over a short window is off by up to a step at each edge).
    let same_gpus = readings.iter().all(|s| s.gpus == meters);
    let fresh = |c: &Vec<(i64, f64)>| {
        let inside: Vec<f64> = c
            .iter()
            .filter(|(t, _)| (from..=to).contains(t))
            .map(|r| r.1)
            .collect();
        inside.windows(2).all(|w| w[1] > w[0])
    };
    if let Some(joules) = counted
        .filter(|c| same_gpus && !c.is_empty() && fresh(c))
        .and_then(|c| rackload_scrape::window::counter_delta(&c, from, to, max_gap))
    {
        let seconds = (to - from) as f64 / 1e9;
        return (Some(joules / seconds), Some(joules), meters);
    }
    let series: Vec<(i64, f64)> = readings.iter().map(|s| (s.unix_nanos, s.watts)).collect();
    match rackload_scrape::window::integrate(&series, from, to, max_gap) {
        Some((watts, joules)) => (Some(watts), Some(joules), meters),
        None => (None, None, 0),
    }
}

/// A server reading as run.json's telemetry keeps it (the histograms are summed into the
/// point's figures, not kept per reading).
fn server_sample(r: &rackload_scrape::server::ServerReading) -> rackload_proto::v1::ServerSample {
    rackload_proto::v1::ServerSample {
        unix_nanos: r.unix_nanos,
        running: r.running,
        waiting: r.waiting,
        kv_usage: r.kv_usage.map(|k| k / f64::from(r.kv_servers.max(1))),
        preemptions: r.preemptions,
        prefix_queries: r.prefix_queries,
        prefix_hits: r.prefix_hits,
    }
}

/// Plans the point over the run's workers (a pure function of the point and their
/// capacities) and sends each its shard.
async fn send_plans(run: &Run, index: u32, point: &Point, traceparent: &str) -> Active {
    let capacities: Vec<u32> = run.workers.iter().map(|w| w.hello.cores).collect();
    let shards = plan_point(point, &capacities);
    let active = Active {
        index,
        run_id: run.run_id.clone(),
        workers: shards
            .iter()
            .map(|s| (run.workers[s.worker].clone(), s.concurrency.unwrap_or(0)))
            .collect(),
        stripes: shards.iter().map(|s| s.stripe).collect(),
    };
    for (k, ((w, _), shard)) in active.workers.iter().zip(&shards).enumerate() {
        let plan = ShardPlan {
            run_id: run.run_id.clone(),
            point_index: index,
            point_label: point.label.clone(),
            shard_index: k as u32,
            shard_count: active.workers.len() as u32,
            concurrency: shard.concurrency,
            target: run.wire.target.clone(),
            workload: run.wire.workload.clone(),
            stripe: Some(shard.stripe.into()),
            report_interval_s: REPORT_INTERVAL.as_secs_f64(),
            warmup: point.warmup,
            request_rate: point.request_rate,
            duration_s: point.duration.map(|d| d.as_secs_f64()),
            traceparent: traceparent.to_owned(),
            trace_sample: run.spec.trace_sample,
            record_requests: run.spec.save_requests,
            record_gaps: run.spec.save_detailed,
            goodput: run.spec.goodput,
        };
        let _ = w
            .outbox
            .send(Ok(CoordinatorMessage {
                msg: Some(CMsg::Assign(plan)),
            }))
            .await;
    }
    active
}

/// The barrier: every worker checks the target and acknowledges its plan (with its
/// clock offset and round trip) before any starts.
async fn barrier(
    run: &mut Run,
    point: &Point,
    active: &Active,
) -> Result<Vec<Option<(i64, i64)>>, Unready> {
    let workers = &active.workers;
    let mut acked: Vec<Option<(i64, i64)>> = vec![None; workers.len()];
    let ack_deadline = Instant::now() + ACK_TIMEOUT;
    while acked.iter().any(Option::is_none) {
        let ev = tokio::select! {
            ev = run.inbox.recv() => ev,
            () = tokio::time::sleep_until(ack_deadline) => {
                let missing: Vec<&str> = workers.iter().zip(&acked).filter(|(_, a)| a.is_none()).map(|((w, _), _)| w.id.as_str()).collect();
                active.stop_all(true, "barrier timed out").await;
                return Err(Unready::End(Outcome::Failed(format!("point {}: no plan acknowledgement from {} within {} s", point.label, missing.join(", "), ACK_TIMEOUT.as_secs()))));
            }
            _ = run.abort.changed() => None,
        };
        if run.aborted() {
            active.stop_all(true, "run aborted").await;
            return Err(Unready::End(Outcome::Aborted(
                "aborted by the client".into(),
            )));
        }
        match ev {
            Some(WorkerEvent::Ack(id, ack))
                if ack.run_id == run.run_id && ack.point_index == active.index =>
            {
                if !ack.ok {
                    active.stop_all(true, "a worker refused its plan").await;
                    return Err(Unready::End(Outcome::Failed(format!(
                        "worker {id} refused point {}: {}",
                        point.label, ack.error
                    ))));
                }
                if let Some(k) = workers.iter().position(|(w, _)| w.id == id) {
                    acked[k] = Some((ack.clock_offset_nanos, ack.clock_rtt_nanos));
                }
            }
            Some(WorkerEvent::Lost(id, reason)) if workers.iter().any(|(w, _)| w.id == id) => {
                active
                    .stop_all(true, "a worker was lost before the start")
                    .await;
                tracing::warn!(run = %run.run_id, worker = %id, "lost before point {} started: {reason}", point.label);
                run.refresh_workers();
                if run.workers.is_empty() {
                    return Err(Unready::End(Outcome::Failed(format!(
                        "worker {id} was lost before point {} started and none is left: {reason}",
                        point.label
                    ))));
                }
                return Err(Unready::Replan);
            }
            _ => {}
        }
    }
    Ok(acked)
}

/// The event announcing a started point: each worker's share and clock.
fn point_started(
    active: &Active,
    point: &Point,
    acked: &[Option<(i64, i64)>],
    start_unix_nanos: i64,
) -> PointStarted {
    PointStarted {
        point_index: active.index,
        label: point.label.clone(),
        shares: active
            .workers
            .iter()
            .zip(&active.stripes)
            .zip(acked)
            .map(|(((w, share), stripe), ack)| {
                let (offset, rtt) = ack.unwrap_or((0, -1));
                // Measured requests of this stripe: its indices at or past the warmup.
                let warm = Stripe {
                    total: point.warmup,
                    ..*stripe
                }
                .len();
                WorkerShare {
                    worker_id: w.id.clone(),
                    concurrency: *share,
                    requests: stripe.len() - warm,
                    clock_offset_nanos: offset,
                    clock_rtt_nanos: rtt,
                }
            })
            .collect(),
        start_unix_nanos,
    }
}

/// Merges the workers' reports until every one sent its final report (or was lost),
/// emitting progress each second; ends early when the client or a loss aborts the run.
async fn collect(run: &mut Run, point: &Point, active: &Active) -> Result<PointMerge, Outcome> {
    let index = active.index;
    let mut merge = PointMerge::new(active.workers.iter().map(|(w, s)| (w.id.clone(), *s)));
    let started_at = Instant::now() + START_DELAY;
    let mut tick =
        tokio::time::interval_at(started_at + Duration::from_secs(1), Duration::from_secs(1));
    let mut abort_deadline: Option<Instant> = None;
    // Why the point is being stopped early: the client, or a lost worker under
    // --on-worker-loss abort (then the partial point is still reported).
    let mut client_abort = false;
    let far = Instant::now() + Duration::from_secs(86_400 * 365);
    while !merge.all_done() {
        tokio::select! {
            ev = run.inbox.recv() => {
                let merged = match ev {
                    Some(WorkerEvent::Interval(id, r)) if r.run_id == run.run_id && r.point_index == index => {
                        run.take_report(&mut merge, &id, point, r, false).await
                    }
                    Some(WorkerEvent::Final(id, r)) if r.run_id == run.run_id && r.point_index == index => {
                        run.take_report(&mut merge, &id, point, r, true).await
                    }
                    Some(WorkerEvent::Lost(id, reason)) => {
                        if merge.lose(&id) {
                            run.live.worker_lost(&run.run_id);
                            tracing::warn!(run = %run.run_id, worker = %id, "lost during point {}: {reason}", point.label);
                            if run.abort_on_loss() {
                                active.stop_all(true, "a worker was lost").await;
                                abort_deadline.get_or_insert(Instant::now() + ABORT_GRACE);
                            }
                        }
                        Ok(())
                    }
                    _ => Ok(()),
                };
                if let Err(e) = merged {
                    active.stop_all(true, "bad report").await;
                    return Err(Outcome::Failed(format!("point {}: {e}", point.label)));
                }
            }
            _ = tick.tick() => {
                if !progress(run, point, index, &merge, started_at).await && !client_abort {
                    active.stop_all(true, "client went away").await;
                    abort_deadline = Some(Instant::now() + ABORT_GRACE);
                    client_abort = true;
                }
            }
            changed = run.abort.changed(), if !client_abort => {
                if changed.is_err() || *run.abort.borrow() {
                    active.stop_all(true, "run aborted").await;
                    abort_deadline = Some(Instant::now() + ABORT_GRACE);
                    client_abort = true;
                }
            }
            () = tokio::time::sleep_until(abort_deadline.unwrap_or(far)), if abort_deadline.is_some() => break,
        }
    }
    // The last word for /metrics: exactly what the point's result holds.
    run.show(point, &merge);
    if client_abort {
        return Err(Outcome::Aborted(format!(
            "aborted during point {} after {} completed requests",
            point.label, merge.counters.completed
        )));
    }
    Ok(merge)
}

/// Shows the merge on `/metrics` and sends the client its progress; false when the
/// client is gone.
async fn progress(
    run: &Run,
    point: &Point,
    index: u32,
    merge: &PointMerge,
    started_at: Instant,
) -> bool {
    run.show(point, merge);
    let ttft = merge.lat.get(METRICS[0]);
    let q = |p: f64| {
        ttft.filter(|h| !h.is_empty())
            .map_or(0.0, |h| h.value_at_quantile(p) as f64 / 1000.0)
    };
    let progress = Progress {
        point_index: index,
        elapsed_s: started_at.elapsed().as_secs_f64(),
        counters: Some(merge.counters.clone()),
        expected_requests: point.num_prompts,
        in_flight: merge.in_flight(),
        ttft_p50_ms: q(0.5),
        ttft_p99_ms: q(0.99),
    };
    run.emit(Event::Progress(progress)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn sample(at: i64, watts: f64, energy_j: Option<f64>) -> PowerSample {
        PowerSample {
            unix_nanos: at,
            watts,
            gpus: 2,
            energy_j,
            ..PowerSample::default()
        }
    }

    #[test]
    fn the_meters_energy_counter_wins_over_sampled_power() {
        // The gauge says 600 W; the counter, which sees between readings, 800 J a second.
        let counted: Vec<_> = (0..6)
            .map(|k| sample(k * S, 600.0, Some(1e6 + 800.0 * k as f64)))
            .collect();
        let (w, j, n) = measured_power(&counted, S, 4 * S, 2 * S);
        assert_eq!(n, 2);
        assert!((j.expect("energy") - 2400.0).abs() < 1e-6, "{j:?}");
        assert!((w.expect("power") - 800.0).abs() < 1e-6, "{w:?}");
        // A counter that did not move between two readings (an exporter collecting less
        // often than it is read), or a GPU that joined: the power readings instead.
        let mut stale = counted.clone();
        stale[3].energy_j = stale[2].energy_j;
        stale[4].energy_j = stale[3].energy_j.map(|j| j + 800.0);
        assert!((measured_power(&stale, S, 4 * S, 2 * S).0.expect("power") - 600.0).abs() < 1e-9);
        let mut joined = counted.clone();
        joined[0].gpus = 1;
        assert!((measured_power(&joined, S, 4 * S, 2 * S).0.expect("power") - 600.0).abs() < 1e-9);
        // One reading without a counter: the power readings are integrated instead.
        let mut mixed = counted.clone();
        mixed[2].energy_j = None;
        let (w, j, _) = measured_power(&mixed, S, 4 * S, 2 * S);
        assert!((w.expect("power") - 600.0).abs() < 1e-9);
        assert!((j.expect("energy") - 1800.0).abs() < 1e-6);
        assert_eq!(measured_power(&[], S, 4 * S, 2 * S), (None, None, 0));
    }
}

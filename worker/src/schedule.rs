//! The two ways a shard sends its stripe of the request stream. Closed loop: C tasks,
//! each sending its next request as soon as its previous one ended, taking requests in
//! index order from one shared counter. Open loop: each request at its absolute offset from
//! the start instant (never accumulated sleeps), optionally capped at C in flight.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::HeaderValue;
use rackload_workloads::prompt::Prompt;
use rackload_workloads::{RequestSpec, Stripe, WorkloadSpec};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::limit::ConcurrencyLimitLayer;
use tower::{Service as _, ServiceBuilder, ServiceExt as _};

use crate::middleware::{Call, SendService};
use crate::recorder::{Judged, Recorder};
use crate::request_log::RequestLog;
use crate::target::openai::micros;
use crate::target::{Completed, Failed, Gap, OpenAiTarget};
use crate::trace::RequestTracer;

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

/// One worker's part of a point.
#[derive(Clone, Debug)]
pub struct Shard {
    pub workload: Arc<WorkloadSpec>,
    pub stripe: Stripe,
    /// Closed loop: requests in flight. Open loop: the cap on them, if any.
    pub concurrency: Option<u32>,
    /// Global indices below this are warmup: sent but measured nowhere.
    pub warmup: u64,
    /// Send nothing new after this instant.
    pub deadline: Option<Instant>,
    /// The shard's span (run, point, worker): entered only to log a failure, never on the
    /// per-token path.
    pub span: tracing::Span,
    /// Makes the spans of sampled requests (None: tracing is off).
    pub tracer: Option<Arc<RequestTracer>>,
    /// The worker's `--max-rate`, held while the shard runs.
    pub max_rate: Option<f64>,
    /// One record per measured request, when asked for.
    pub requests: Option<Arc<RequestLog>>,
    /// The run's goodput SLOs, which completed requests are judged by.
    pub goodput: Option<rackload_proto::v1::Goodput>,
}

/// Failures logged per shard before the rest are only counted.
const LOGGED_FAILURES: u64 = 5;

/// What every request of a running shard needs, shared by its tasks.
struct Sender {
    workload: Arc<WorkloadSpec>,
    target: Arc<OpenAiTarget>,
    /// The tower stack every request goes through (timeout, balancer, rate cap).
    stack: SendService,
    recorder: Arc<Recorder>,
    warmup: u64,
    /// Failures so far (the first few are logged).
    failures: AtomicU64,
    /// An output length that differed from the forced one was logged (once per shard).
    warned_length: std::sync::atomic::AtomicBool,
    log_span: tracing::Span,
    tracer: Option<Arc<RequestTracer>>,
    requests: Option<Arc<RequestLog>>,
    goodput: Option<rackload_proto::v1::Goodput>,
}

impl Sender {
    /// Sends request `index` and records it (warmup requests are only counted).
    /// `intended` is its scheduled send instant in an open loop: the lag behind it is
    /// recorded, and its latencies are also recorded from it (coordinated-omission
    /// corrected). `gaps` is the task's scratch buffer.
    async fn one(&self, index: u64, intended: Option<Instant>, gaps: &mut Vec<Gap>) {
        let (target, recorder) = (&*self.target, &*self.recorder);
        let tracer = self.tracer.as_deref();
        // The spec was validated when the plan was accepted.
        let Ok(req) = self.workload.request(index) else {
            return;
        };
        let prompt = self.workload.prompt(&req);
        gaps.clear();
        // One sample per chunk after the first: room for all, so no token reallocates.
        gaps.reserve(req.output_len as usize);
        if index < self.warmup {
            let _ = self.send(req, prompt, gaps, None).await;
            recorder.warmup_done();
            return;
        }
        let now = Instant::now();
        let lag_us = intended.map(|t| micros(now.saturating_duration_since(t)));
        recorder.sent(now, lag_us);
        let span = tracer.and_then(|t| t.start(index, &req, now, lag_us));
        let traceparent = span.as_ref().map(|s| s.traceparent.clone());
        let input_len = req.input_len;
        match self.send(req, prompt, gaps, traceparent).await {
            Ok(done) => {
                if let Some(log) = &self.requests {
                    log.completed(index, intended, &done, input_len, gaps);
                }
                // With ignore_eos the length is forced: the server's own count must match
                // (a count made from chunks is not the server's word).
                let mismatch = self.workload.ignore_eos
                    && done.usage_present
                    && done.output_tokens != u64::from(req.output_len);
                let judged = Judged {
                    length_mismatch: mismatch,
                    good: self
                        .goodput
                        .is_some_and(|g| g.met(done.ttft_us, done.e2el_us, done.output_tokens)),
                };
                recorder.completed(&done, req.input_len, gaps, Instant::now(), lag_us, judged);
                if mismatch && !self.warned_length.swap(true, Ordering::Relaxed) {
                    let _in = self.log_span.enter();
                    tracing::warn!(
                        request = index,
                        "the server returned {} tokens where {} were forced with ignore_eos: it may be ignoring ignore_eos (counted as output_len_mismatch)",
                        done.output_tokens,
                        req.output_len
                    );
                }
                if let (Some(t), Some(s)) = (tracer, span) {
                    t.completed(s, &req, &done, target);
                }
            }
            Err(failed) => {
                recorder.failed(&failed);
                if let Some(log) = &self.requests {
                    log.failed(index, intended, now, input_len, &failed);
                }
                if let (Some(t), Some(s)) = (tracer, span) {
                    t.failed(s, &failed, target);
                }
                if self.failures.fetch_add(1, Ordering::Relaxed) < LOGGED_FAILURES {
                    let _in = self.log_span.enter();
                    tracing::warn!(request = index, "request failed: {failed}");
                }
            }
        }
    }

    /// Sends through the shard's stack; the scratch buffer goes with the request and comes
    /// back filled.
    async fn send(
        &self,
        req: RequestSpec,
        prompt: Prompt,
        gaps: &mut Vec<Gap>,
        traceparent: Option<HeaderValue>,
    ) -> Result<Completed, Failed> {
        let call = Call {
            req,
            prompt,
            gaps: std::mem::take(gaps),
            traceparent,
        };
        let sent = crate::middleware::send(&self.stack, call).await;
        *gaps = sent.gaps;
        sent.result
    }
}

/// Waits for `tasks`, aborting them if `stop` says so (or its sender is gone).
async fn join_all(mut tasks: JoinSet<()>, mut stop: watch::Receiver<StopMode>) {
    loop {
        if *stop.borrow() == StopMode::Abort {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
            return;
        }
        tokio::select! {
            joined = tasks.join_next() => {
                if joined.is_none() {
                    return;
                }
            }
            changed = stop.changed() => {
                if changed.is_err() {
                    tasks.abort_all();
                    while tasks.join_next().await.is_some() {}
                    return;
                }
            }
        }
    }
}

impl Shard {
    /// The shared state of this shard's request tasks.
    fn sender(&self, target: Arc<OpenAiTarget>, recorder: Arc<Recorder>) -> Arc<Sender> {
        Arc::new(Sender {
            workload: self.workload.clone(),
            stack: crate::middleware::send_stack(&target, self.max_rate),
            target,
            recorder,
            warmup: self.warmup,
            failures: AtomicU64::new(0),
            warned_length: std::sync::atomic::AtomicBool::new(false),
            log_span: self.span.clone(),
            tracer: self.tracer.clone(),
            requests: self.requests.clone(),
            goodput: self.goodput,
        })
    }

    /// Runs the shard from `start` until its stripe is sent or `stop` says otherwise.
    pub async fn run(
        &self,
        target: Arc<OpenAiTarget>,
        recorder: Arc<Recorder>,
        stop: watch::Receiver<StopMode>,
        start: Instant,
    ) {
        if self.workload.arrival.is_open() {
            self.open_loop(target, recorder, stop, start).await;
        } else {
            self.closed_loop(target, recorder, stop).await;
        }
    }

    async fn closed_loop(
        &self,
        target: Arc<OpenAiTarget>,
        recorder: Arc<Recorder>,
        stop: watch::Receiver<StopMode>,
    ) {
        let next = Arc::new(AtomicU64::new(0));
        let sender = self.sender(target, recorder);
        let (stripe, deadline) = (self.stripe, self.deadline);
        let mut tasks = JoinSet::new();
        for _ in 0..self.concurrency.unwrap_or(0) {
            let (sender, next, stop) = (sender.clone(), next.clone(), stop.clone());
            tasks.spawn(async move {
                let mut gaps = Vec::with_capacity(1024);
                while *stop.borrow() == StopMode::Run && deadline.is_none_or(|d| Instant::now() < d)
                {
                    let Some(index) = stripe.nth(next.fetch_add(1, Ordering::Relaxed)) else {
                        break;
                    };
                    sender.one(index, None, &mut gaps).await;
                }
            });
        }
        join_all(tasks, stop).await;
    }

    async fn open_loop(
        &self,
        target: Arc<OpenAiTarget>,
        recorder: Arc<Recorder>,
        mut stop: watch::Receiver<StopMode>,
        start: Instant,
    ) {
        if self.stripe.is_empty() {
            return;
        }
        let schedule = self.workload.stripe_schedule(&self.stripe);
        let sender = self.sender(target, recorder);
        // The cap on requests in flight, as tower's concurrency limit: a slot is taken
        // before the task is spawned and given back when its request ends.
        let mut send = ServiceBuilder::new()
            .option_layer(
                self.concurrency
                    .map(|c| ConcurrencyLimitLayer::new(c as usize)),
            )
            .service(tower::service_fn(move |(index, at): (u64, Instant)| {
                let sender = sender.clone();
                async move {
                    let mut gaps = Vec::new();
                    sender.one(index, Some(at), &mut gaps).await;
                    Ok::<_, std::convert::Infallible>(())
                }
            }));
        let mut tasks = JoinSet::new();
        'send: for index in self.stripe.iter() {
            let offset = schedule.get(index as usize).copied().unwrap_or(0.0);
            // An offset past what the clock can hold (a slow rate over a long stream) is
            // never reached: the stream ends there.
            let Some(at) = Duration::try_from_secs_f64(offset)
                .ok()
                .and_then(|d| start.checked_add(d))
            else {
                break;
            };
            if self.deadline.is_some_and(|d| at >= d) {
                break;
            }
            loop {
                if *stop.borrow() != StopMode::Run {
                    break 'send;
                }
                tokio::select! {
                    () = tokio::time::sleep_until(at) => break,
                    changed = stop.changed() => if changed.is_err() { break 'send },
                }
            }
            // Reap finished tasks so the set does not grow with the whole stripe.
            while tasks.try_join_next().is_some() {}
            let ready = tokio::select! {
                r = send.ready() => r.is_ok(),
                _ = stop.wait_for(|m| *m != StopMode::Run) => break 'send,
            };
            if !ready {
                break;
            }
            let request = send.call((index, at));
            tasks.spawn(async move {
                let _ = request.await;
            });
        }
        join_all(tasks, stop).await;
    }
}

//! The coordinator's run loop in one process: its real Fabric and Control services over
//! in-memory pipes (tonic on both sides), scripted workers, and paused time — so the
//! barrier, the common start instant, the lost-request accounting and the re-sharding
//! after a loss are checked exactly and in milliseconds, beside the multi-process tests.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rackload_coordinator::{CoordinatorConfig, serve_incoming};
use rackload_proto::histogram::LatencySet;
use rackload_proto::v1::control_client::ControlClient;
use rackload_proto::v1::coordinator_message::Msg as CMsg;
use rackload_proto::v1::fabric_client::FabricClient;
use rackload_proto::v1::run_event::Event;
use rackload_proto::v1::worker_message::Msg as WMsg;
use rackload_proto::v1::{
    Counters, Endpoint, Heartbeat, Hello, HttpVersion, LoadBalance, Metric, OnWorkerLoss, PlanAck,
    PointResult, PointSpec, Report, RunSpec, RunStatus, ShardPlan, TargetSpec, WorkerMessage,
};
use rackload_workloads::{Stripe, WorkloadSpec};
use tokio::io::DuplexStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// A coordinator served over in-memory pipes; each connect makes a new pipe.
async fn coordinator() -> Channel {
    let (conns, incoming) = mpsc::channel::<std::io::Result<DuplexStream>>(64);
    tokio::spawn(serve_incoming(
        ReceiverStream::new(incoming),
        None,
        CoordinatorConfig::default(),
        std::future::pending(),
    ));
    tonic::transport::Endpoint::from_static("http://coordinator.in-memory")
        .connect_with_connector(tower::service_fn(move |_| {
            let conns = conns.clone();
            async move {
                let (client, server) = tokio::io::duplex(1 << 20);
                conns
                    .send(Ok(server))
                    .await
                    .map_err(|_| std::io::Error::other("coordinator gone"))?;
                Ok::<_, std::io::Error>(TokioIo::new(client))
            }
        }))
        .await
        .expect("in-memory channel")
}

/// How a scripted worker behaves.
#[derive(Clone, Debug)]
struct Script {
    id: &'static str,
    /// Waits this long before acknowledging a plan.
    ack_delay: Duration,
    /// Point index at which it vanishes after its first interval report.
    vanish_in_point: Option<u32>,
}

/// What a scripted worker saw.
#[derive(Debug, Default)]
struct Seen {
    plans: Vec<ShardPlan>,
    /// (point, start instant it was given, when the Start arrived, when it acked).
    starts: Vec<(u32, i64, Instant, Instant)>,
}

/// Every interval: 10 sent, 10 completed with TTFT samples; the vanishing one reports 10
/// sent, 6 completed (4 in flight) and is gone.
fn report(plan: &ShardPlan, seq: u64, counters: Counters, in_flight: u64) -> Report {
    let mut lat = LatencySet::default();
    for _ in 0..counters.completed {
        lat.record(Metric::Ttft, 20_000);
        lat.record(Metric::E2el, 90_000);
    }
    Report {
        run_id: plan.run_id.clone(),
        point_index: plan.point_index,
        seq,
        elapsed_nanos: (seq as i64 + 1) * 1_000_000_000,
        counters: Some(counters),
        histograms: lat.to_wire().expect("histograms"),
        in_flight,
        window_start_nanos: 0,
        ..Report::default()
    }
}

async fn worker(channel: Channel, script: Script, seen: Arc<Mutex<Seen>>) {
    let (tx, rx) = mpsc::channel::<WorkerMessage>(64);
    let hello = Hello {
        worker_id: script.id.into(),
        protocol_version: rackload_proto::PROTOCOL_VERSION,
        build_version: rackload_proto::BUILD_VERSION.into(),
        host: "in-memory".into(),
        cores: 1,
        ..Hello::default()
    };
    let send = |m: WMsg| {
        let tx = tx.clone();
        async move { tx.send(WorkerMessage { msg: Some(m) }).await.is_ok() }
    };
    send(WMsg::Hello(hello)).await;
    let mut inbound = FabricClient::new(channel)
        .session(ReceiverStream::new(rx))
        .await
        .expect("session")
        .into_inner();
    let beat = tx.clone();
    let heartbeat = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(500));
        loop {
            every.tick().await;
            let hb = WMsg::Heartbeat(Heartbeat::default());
            if beat.send(WorkerMessage { msg: Some(hb) }).await.is_err() {
                return;
            }
        }
    });
    let mut plan: Option<(ShardPlan, Instant)> = None;
    while let Ok(Some(m)) = inbound.message().await {
        match m.msg {
            Some(CMsg::Assign(p)) => {
                tokio::time::sleep(script.ack_delay).await;
                let ack = PlanAck {
                    run_id: p.run_id.clone(),
                    point_index: p.point_index,
                    ok: true,
                    ..PlanAck::default()
                };
                seen.lock().expect("seen").plans.push(p.clone());
                plan = Some((p, Instant::now()));
                send(WMsg::PlanAck(ack)).await;
            }
            Some(CMsg::Start(start)) => {
                let Some((p, acked_at)) = plan.clone() else {
                    continue;
                };
                seen.lock().expect("seen").starts.push((
                    start.point_index,
                    start.start_unix_nanos,
                    Instant::now(),
                    acked_at,
                ));
                let mine = Stripe::from(&p.stripe.unwrap_or_default()).len();
                let sent_each = 10;
                if script.vanish_in_point == Some(start.point_index) {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let c = Counters {
                        sent: sent_each,
                        completed: 6,
                        ..Counters::default()
                    };
                    send(WMsg::Interval(report(&p, 0, c, 4))).await;
                    heartbeat.abort();
                    return; // the session ends: tx and inbound are dropped
                }
                let intervals = mine.div_ceil(sent_each).max(1);
                for seq in 0..intervals {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let n = sent_each.min(mine - seq * sent_each);
                    let c = Counters {
                        sent: n,
                        completed: n,
                        ..Counters::default()
                    };
                    let r = report(&p, seq, c, 0);
                    let last = seq + 1 == intervals;
                    send(if last {
                        WMsg::Final(r)
                    } else {
                        WMsg::Interval(r)
                    })
                    .await;
                }
            }
            _ => {}
        }
    }
    heartbeat.abort();
}

fn run_spec(workers: u32, concurrencies: &[u32], num_prompts: u64) -> RunSpec {
    RunSpec {
        target: Some(TargetSpec {
            base_urls: vec!["http://127.0.0.1:9".into()],
            endpoint: Endpoint::Completions.into(),
            model: "m".into(),
            http: HttpVersion::Auto.into(),
            lb: LoadBalance::RoundRobin.into(),
            ..TargetSpec::default()
        }),
        workload: Some((&WorkloadSpec::default()).into()),
        points: concurrencies
            .iter()
            .map(|&c| PointSpec {
                label: format!("c{c}"),
                max_concurrency: Some(c),
                num_prompts,
                ..PointSpec::default()
            })
            .collect(),
        workers,
        worker_wait_s: 30.0,
        max_failure_rate: Some(0.05),
        cooldown_s: 0.0,
        on_worker_loss: OnWorkerLoss::Continue.into(),
        trace_sample: Some(0.0),
        save_requests: false,
        save_detailed: false,
        goodput: None,
        gpu_metrics: Vec::new(),
        telemetry_interval_s: 1.0,
        server_metrics: Vec::new(),
        node_power: Vec::new(),
    }
}

/// Submits `spec` and collects its point results and how it finished.
async fn submit(channel: Channel, spec: RunSpec) -> (Vec<PointResult>, RunStatus, String) {
    let mut events = ControlClient::new(channel)
        .submit_run(spec)
        .await
        .expect("accepted")
        .into_inner();
    let mut points = Vec::new();
    while let Ok(Some(ev)) = events.message().await {
        match ev.event {
            Some(Event::PointResult(p)) => points.push(p),
            Some(Event::Finished(f)) => {
                let status = RunStatus::try_from(f.status).unwrap_or(RunStatus::Unspecified);
                return (points, status, f.message);
            }
            _ => {}
        }
    }
    panic!("the run ended without a Finished event");
}

fn start_workers(channel: &Channel, scripts: &[Script]) -> Vec<Arc<Mutex<Seen>>> {
    scripts
        .iter()
        .map(|s| {
            let seen = Arc::new(Mutex::new(Seen::default()));
            tokio::spawn(worker(channel.clone(), s.clone(), seen.clone()));
            seen
        })
        .collect()
}

fn script(id: &'static str) -> Script {
    Script {
        id,
        ack_delay: Duration::ZERO,
        vanish_in_point: None,
    }
}

#[tokio::test(start_paused = true)]
async fn the_barrier_holds_every_start_until_the_last_ack_and_all_start_at_one_instant() {
    let channel = coordinator().await;
    let slow = Script {
        ack_delay: Duration::from_secs(7),
        ..script("slow")
    };
    let seen = start_workers(&channel, &[script("quick"), slow]);
    let (points, status, msg) = submit(channel, run_spec(2, &[4], 40)).await;
    assert_eq!(status, RunStatus::Completed, "{msg}");
    let starts: Vec<_> = seen
        .iter()
        .map(|s| s.lock().expect("seen").starts[0])
        .collect();
    let (quick, slow) = (starts[0], starts[1]);
    assert_eq!(quick.1, slow.1, "one start instant for every worker");
    assert!(
        quick.2 >= slow.3,
        "nobody starts before the last acknowledgement: the quick worker's Start came {:?} \
         before the slow one acked",
        slow.3.saturating_duration_since(quick.2)
    );
    assert!(slow.3.duration_since(quick.3) >= Duration::from_secs(7));
    let p = &points[0];
    let c = p.counters.clone().unwrap_or_default();
    assert_eq!(
        (c.sent, c.completed),
        (40, 40),
        "the merge adds both shards"
    );
    assert!(!p.degraded && !p.gate_failed);
}

#[tokio::test(start_paused = true)]
async fn a_worker_lost_mid_point_costs_its_in_flight_requests_and_later_points_reshard() {
    let channel = coordinator().await;
    let vanishing = Script {
        vanish_in_point: Some(0),
        ..script("w3")
    };
    let seen = start_workers(&channel, &[script("w1"), script("w2"), vanishing]);
    let (points, status, msg) = submit(channel, run_spec(3, &[3, 6], 60)).await;
    assert_eq!(status, RunStatus::Completed, "the run goes on: {msg}");
    assert_eq!(points.len(), 2);
    let first = &points[0];
    assert!(first.degraded, "{first:?}");
    assert_eq!(first.lost_workers, vec!["w3".to_owned()]);
    assert_eq!(
        first.lost, 4,
        "the lost worker's in-flight requests (10 sent, 6 done)"
    );
    let c = first.counters.clone().unwrap_or_default();
    assert_eq!(
        c.completed,
        20 + 20 + 6,
        "what it finished before it went still counts"
    );

    // The second point is planned over the two workers left, and their stripes tile it.
    let second = &points[1];
    assert!(!second.degraded);
    let plans: Vec<ShardPlan> = seen
        .iter()
        .flat_map(|s| s.lock().expect("seen").plans.clone())
        .filter(|p| p.point_index == 1)
        .collect();
    assert_eq!(plans.len(), 2, "w3 gets no plan");
    assert!(plans.iter().all(|p| p.shard_count == 2));
    assert_eq!(
        plans
            .iter()
            .map(|p| p.concurrency.unwrap_or(0))
            .sum::<u32>(),
        6
    );
    let stripes: Vec<Stripe> = plans
        .iter()
        .map(|p| Stripe::from(&p.stripe.unwrap_or_default()))
        .collect();
    for i in 0..60 {
        assert_eq!(
            stripes.iter().filter(|s| s.contains(i)).count(),
            1,
            "request {i} is sent exactly once"
        );
    }
    let c = second.counters.clone().unwrap_or_default();
    assert_eq!((c.sent, c.completed), (60, 60));
}

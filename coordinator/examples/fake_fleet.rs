//! A fleet of lightweight simulated workers for `scripts/bench-coordinator`: N Fabric
//! sessions (one HTTP/2 connection each) that say hello, heartbeat, acknowledge every plan
//! without sending a request, and once started send a realistic 1-second report — four
//! latency histograms and counters — until the plan's duration is over.
//!
//!     cargo run --release -p rackload-coordinator --example fake_fleet -- URL N

use std::time::Duration;

use rackload_proto::histogram::{LatencySet, METRICS};
use rackload_proto::v1::coordinator_message::Msg as CMsg;
use rackload_proto::v1::fabric_client::FabricClient;
use rackload_proto::v1::worker_message::Msg as WMsg;
use rackload_proto::v1::{
    Counters, Heartbeat, Hello, MetricHistogram, PlanAck, Report, WorkerMessage,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// One interval of a busy worker: 40 requests, ~100 chunks each, latencies spread like a
/// loaded server's.
fn interval_histograms() -> Vec<MetricHistogram> {
    let mut set = LatencySet::default();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for (k, m) in METRICS.iter().enumerate() {
        let (base, spread, n) = match k {
            0 => (40_000, 200_000, 40),    // TTFT
            1 => (8_000, 30_000, 4_000),   // ITL
            2 => (9_000, 10_000, 40),      // TPOT
            _ => (900_000, 2_000_000, 40), // E2EL
        };
        let _ = m;
        for _ in 0..n {
            let v = base + next() % spread;
            let _ = set.hists[k].record(v);
        }
    }
    set.to_wire().expect("encodes")
}

async fn worker(
    url: String,
    id: String,
    histograms: Vec<MetricHistogram>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut client = FabricClient::connect(url).await?;
    let (tx, rx) = mpsc::channel::<WorkerMessage>(64);
    let hello = Hello {
        worker_id: id,
        protocol_version: rackload_proto::PROTOCOL_VERSION,
        build_version: rackload_proto::BUILD_VERSION.into(),
        host: "fake".into(),
        cores: 1,
        max_inflight: 0,
        clock_unix_nanos: 0,
        nonce: Vec::new(),
    };
    tx.send(WorkerMessage {
        msg: Some(WMsg::Hello(hello)),
    })
    .await?;
    let mut inbound = client.session(ReceiverStream::new(rx)).await?.into_inner();
    let hb = tx.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        loop {
            every.tick().await;
            if hb
                .send(WorkerMessage {
                    msg: Some(WMsg::Heartbeat(Heartbeat::default())),
                })
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let mut plan_duration: f64 = 30.0;
    while let Some(m) = inbound.message().await? {
        match m.msg {
            Some(CMsg::Assign(plan)) => {
                plan_duration = plan.duration_s.unwrap_or(30.0);
                let ack = PlanAck {
                    run_id: plan.run_id,
                    point_index: plan.point_index,
                    ok: true,
                    ..PlanAck::default()
                };
                tx.send(WorkerMessage {
                    msg: Some(WMsg::PlanAck(ack)),
                })
                .await?;
            }
            Some(CMsg::Start(start)) => {
                let (tx, histograms) = (tx.clone(), histograms.clone());
                tokio::spawn(async move {
                    let seconds = plan_duration.ceil() as u64;
                    let mut every = tokio::time::interval_at(
                        tokio::time::Instant::now() + Duration::from_secs(1),
                        Duration::from_secs(1),
                    );
                    for seq in 0..seconds {
                        every.tick().await;
                        let report = Report {
                            run_id: start.run_id.clone(),
                            point_index: start.point_index,
                            seq,
                            elapsed_nanos: (seq as i64 + 1) * 1_000_000_000,
                            counters: Some(Counters {
                                sent: 40,
                                completed: 40,
                                input_tokens: 40_000,
                                output_tokens: 4_000,
                                ..Counters::default()
                            }),
                            histograms: histograms.clone(),
                            in_flight: 8,
                            window_start_nanos: 0,
                            cpu_seconds: 0.0,
                            ..Report::default()
                        };
                        let msg = if seq + 1 == seconds {
                            WMsg::Final(report)
                        } else {
                            WMsg::Interval(report)
                        };
                        if tx.send(WorkerMessage { msg: Some(msg) }).await.is_err() {
                            return;
                        }
                    }
                });
            }
            _ => {}
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(url), Some(n)) = (
        args.get(1),
        args.get(2).and_then(|n| n.parse::<usize>().ok()),
    ) else {
        eprintln!("usage: fake_fleet COORDINATOR_URL N");
        std::process::exit(2);
    };
    let histograms = interval_histograms();
    let bytes: usize = histograms.iter().map(|h| h.v2.len()).sum();
    eprintln!("{n} fake workers, {bytes} bytes of histograms per report");
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..n {
        let (url, h) = (url.clone(), histograms.clone());
        tasks.spawn(async move {
            if let Err(e) = worker(url, format!("fake-{k:04}"), h).await {
                eprintln!("fake-{k:04}: {e}");
            }
        });
        if k % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    while tasks.join_next().await.is_some() {}
}

//! Reads every GPU exporter once per interval while a point runs, in a task of its own:
//! each GET bounded in time and size, a reading kept only when every exporter answered (a
//! partial sum would be power that was not drawn), an exporter that does not answer warned
//! about once, never a failed run. Memory is bounded: past [`MAX_READINGS`] every other
//! reading is dropped, so a long point keeps its whole span at a coarser step.

use std::collections::HashSet;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rackload_proto::time::unix_nanos;
use rackload_proto::v1::PowerSample;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Most readings a point keeps (a day at 1 s).
pub const MAX_READINGS: usize = 86_400;

/// An exporter's page is read up to this many bytes (a DCGM page for 72 GPUs is ~200 KB).
const MAX_PAGE: usize = 4 << 20;

/// Sampling in progress.
pub struct Sampler {
    stop: watch::Sender<bool>,
    task: JoinHandle<Vec<PowerSample>>,
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<bytes::Bytes>>;

impl Sampler {
    /// Starts reading `urls` every `interval` (the first reading at once).
    pub fn start(urls: Vec<String>, interval: Duration) -> Sampler {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
            let mut tick = tokio::time::interval(interval.max(Duration::from_millis(50)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let wait = interval.clamp(Duration::from_millis(200), Duration::from_secs(2));
            let mut readings = Vec::new();
            let mut warned = HashSet::new();
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.changed() => break,
                }
                if let Some(r) = read_all(&client, &urls, wait, &mut warned).await {
                    readings.push(r);
                    if readings.len() >= MAX_READINGS {
                        let mut k = 0;
                        readings.retain(|_| {
                            k += 1;
                            k % 2 == 1
                        });
                    }
                }
            }
            readings
        });
        Sampler { stop, task }
    }

    /// Stops sampling; the readings taken, in time order.
    pub async fn stop(self) -> Vec<PowerSample> {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

/// One reading of every exporter, summed; `None` unless all answered with power.
async fn read_all(
    client: &HttpClient,
    urls: &[String],
    wait: Duration,
    warned: &mut HashSet<String>,
) -> Option<PowerSample> {
    let before = unix_nanos();
    let pages =
        futures_util::future::join_all(urls.iter().map(|u| read_one(client, u, wait))).await;
    let after = unix_nanos();
    let mut sum = PowerSample {
        unix_nanos: before + (after - before) / 2,
        watts: 0.0,
        gpus: 0,
    };
    let mut complete = true;
    for (url, page) in urls.iter().zip(pages) {
        match page.and_then(|text| crate::gpu::power(&text).ok_or("no GPU power series".into())) {
            Ok((watts, gpus)) => {
                sum.watts += watts;
                sum.gpus += gpus;
            }
            Err(why) => {
                complete = false;
                if warned.insert(url.clone()) {
                    tracing::warn!(
                        "GPU metrics at {}: {why}; power is not measured while it does not answer",
                        rackload_proto::redact::url(url)
                    );
                }
            }
        }
    }
    complete.then_some(sum)
}

/// One exporter's page, bounded in time and size.
async fn read_one(client: &HttpClient, url: &str, wait: Duration) -> Result<String, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    let fetch = async {
        let resp = client.get(uri).await.map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status()));
        }
        let body = Limited::new(resp.into_body(), MAX_PAGE)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        String::from_utf8(body.to_vec()).map_err(|_| "the page is not UTF-8".to_owned())
    };
    tokio::time::timeout(wait, fetch)
        .await
        .map_err(|_| format!("no answer within {:.1} s", wait.as_secs_f64()))?
}

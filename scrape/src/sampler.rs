//! Reads every GPU exporter, BMC and server page once per interval while a point runs, in
//! a task of its own:
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
use rackload_proto::v1::{GpuWatts, PowerSample};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Most readings a point keeps (a day at 1 s).
pub const MAX_READINGS: usize = 86_400;

/// Most per-GPU power values a point keeps (an hour of a 72-GPU rack at 1 s); past it a
/// reading keeps only its sums.
pub const PER_GPU_BUDGET: usize = 262_144;

/// An exporter's page is read up to this many bytes (a DCGM page for 72 GPUs is ~200 KB).
const MAX_PAGE: usize = 4 << 20;

/// Sampling in progress.
pub struct Sampler {
    stop: watch::Sender<bool>,
    task: JoinHandle<Readings>,
}

/// What a point's sampling read: summed GPU power, summed node power (`gpus` counts the
/// nodes), and the servers' pages summed.
#[derive(Debug, Default)]
pub struct Readings {
    pub power: Vec<PowerSample>,
    pub node: Vec<PowerSample>,
    pub server: Vec<crate::server::ServerReading>,
}

/// Where to read, and how often.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    pub gpu: Vec<String>,
    /// BMCs' Redfish power pages (basic auth from the environment, [`crate::redfish`]).
    pub node: Vec<String>,
    pub server: Vec<String>,
    /// TLS for https exporter and server pages (the run's, as its targets use); `None`:
    /// Mozilla's roots.
    pub tls: Option<rustls::ClientConfig>,
    /// TLS for the BMCs, which are sent credentials: always verified (the run's CA, never
    /// its `--insecure`).
    pub bmc_tls: Option<rustls::ClientConfig>,
    pub interval: Duration,
    /// Pages already warned about, for the whole run (one line each, not one a point); a
    /// server page in it is not read again.
    pub warned: std::sync::Arc<std::sync::Mutex<HashSet<String>>>,
}

type HttpClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Empty<bytes::Bytes>,
>;

/// A client for http and https pages, with the run's TLS configuration.
fn client(tls: Option<rustls::ClientConfig>) -> HttpClient {
    let tls = tls.unwrap_or_else(|| {
        rackload_tls::client_config(false, &[])
            .expect("Mozilla's roots with no PEM of the run's always make a configuration")
    });
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new()).build(https)
}

impl Sampler {
    /// Starts reading `sources` every interval (the first reading at once).
    pub fn start(sources: Sources) -> Sampler {
        let interval = sources.interval;
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let (client, bmc_client) =
                (client(sources.tls.clone()), client(sources.bmc_tls.clone()));
            let auth = crate::redfish::basic_auth_from_env();
            // Credentials go over TLS, or over plain http to this host only.
            if auth.is_some() {
                for url in sources
                    .node
                    .iter()
                    .filter(|u| !crate::redfish::may_send_credentials(u))
                {
                    tracing::warn!(
                        "node power at {}: plain http to another host, so the Redfish credentials are not sent to it",
                        rackload_proto::redact::url(url)
                    );
                }
            }
            let mut tick = tokio::time::interval(interval.max(Duration::from_millis(50)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let wait = interval.clamp(Duration::from_millis(200), Duration::from_secs(2));
            // BMCs answer slowly (1-3 s is common); a reading waits for them.
            let bmc_wait = interval.clamp(Duration::from_secs(3), Duration::from_secs(5));
            let mut readings = Readings::default();
            // Per-GPU values kept, of the GPU and of the node readings.
            let mut per_gpu_kept = [0; 2];
            let warned = sources.warned.clone();
            let first_warning = |url: &str| {
                warned
                    .lock()
                    .map(|mut w| w.insert(url.to_owned()))
                    .unwrap_or(false)
            };
            let is_dead = |url: &String| warned.lock().is_ok_and(|w| w.contains(url));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.changed() => break,
                }
                // A reading in progress when the point ends is abandoned: the point's end
                // does not wait on a slow exporter.
                let (power, node, server) = tokio::select! {
                    r = async {
                        let live: Vec<String> =
                            sources.server.iter().filter(|u| !is_dead(u)).cloned().collect();
                        tokio::join!(
                            read_power(&client, &sources.gpu, None, wait, Meter::Gpu),
                            read_power(&bmc_client, &sources.node, auth.as_deref(), bmc_wait, Meter::Node),
                            read_servers(&client, &live, wait),
                        )
                    } => r,
                    _ = stopped.changed() => break,
                };
                for (((sample, silent), (kept, what)), per_gpu_kept) in [
                    (power, (&mut readings.power, "GPU metrics")),
                    (node, (&mut readings.node, "node power (Redfish)")),
                ]
                .into_iter()
                .zip(&mut per_gpu_kept)
                {
                    if let Some(mut p) = sample {
                        if *per_gpu_kept + p.per_gpu.len() > PER_GPU_BUDGET {
                            p.per_gpu.clear();
                        }
                        *per_gpu_kept += p.per_gpu.len();
                        if keep(kept, p) {
                            *per_gpu_kept = kept.iter().map(|s| s.per_gpu.len()).sum();
                        }
                    }
                    for (url, why) in silent {
                        if first_warning(&url) {
                            tracing::warn!(
                                "{what} at {}: {why}; power is not measured while it does not answer",
                                rackload_proto::redact::url(&url)
                            );
                        }
                    }
                }
                match server {
                    None => {}
                    Some(Ok(r)) => {
                        keep(&mut readings.server, r);
                    }
                    Some(Err((url, why))) if first_warning(&url) => {
                        tracing::info!(
                            "server metrics at {}: {why}; it is not read again in this run",
                            rackload_proto::redact::url(&url)
                        );
                    }
                    Some(Err(_)) => {}
                }
            }
            readings
        });
        Sampler { stop, task }
    }

    /// Stops sampling; the readings taken, in time order.
    pub async fn stop(self) -> Readings {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

/// Keeps `r`, every other reading dropped past [`MAX_READINGS`] (then true).
fn keep<T>(readings: &mut Vec<T>, r: T) -> bool {
    readings.push(r);
    if readings.len() < MAX_READINGS {
        return false;
    }
    let mut k = 0;
    readings.retain(|_| {
        k += 1;
        k % 2 == 1
    });
    true
}

/// Every page of `urls`, read at once, and the instant they were read (the middle of
/// the reads).
async fn read_pages(
    client: &HttpClient,
    urls: &[String],
    auth: Option<&str>,
    wait: Duration,
) -> (i64, Vec<Result<String, String>>) {
    let before = unix_nanos();
    let pages = futures_util::future::join_all(urls.iter().map(|u| {
        let auth = auth.filter(|_| crate::redfish::may_send_credentials(u));
        read_one(client, u, auth, wait)
    }))
    .await;
    (before + (unix_nanos() - before) / 2, pages)
}

/// What a power page is.
#[derive(Clone, Copy)]
enum Meter {
    /// A GPU exporter's Prometheus text: every GPU's power series.
    Gpu,
    /// A BMC's Redfish page: one node.
    Node,
}

/// One reading of every GPU exporter (or BMC), summed (`None` unless all answered with
/// power, or when there are none), and those that did not, with why.
async fn read_power(
    client: &HttpClient,
    urls: &[String],
    auth: Option<&str>,
    wait: Duration,
    meter: Meter,
) -> (Option<PowerSample>, Vec<(String, String)>) {
    if urls.is_empty() {
        return (None, Vec::new());
    }
    let (at, pages) = read_pages(client, urls, auth, wait).await;
    let mut pages_read: Vec<crate::gpu::GpuPage> = Vec::with_capacity(urls.len());
    let mut silent = Vec::new();
    let mut per_gpu = Vec::new();
    for (url, page) in urls.iter().zip(pages) {
        let power = page.and_then(|text| match meter {
            Meter::Gpu => crate::gpu::read(&text).ok_or_else(|| "no GPU power series".to_owned()),
            Meter::Node => crate::redfish::power(&text)
                .map(|watts| crate::gpu::GpuPage {
                    watts,
                    gpus: 1,
                    ..Default::default()
                })
                .ok_or_else(|| "no Redfish PowerControl or PowerWatts reading".to_owned()),
        });
        let power = match (meter, power) {
            (Meter::Node, Err(why)) if why.starts_with("HTTP 401") => Err(format!(
                "{why}: it wants credentials ({} and {}, sent over https or to this host)",
                crate::redfish::USERNAME_ENV,
                crate::redfish::PASSWORD_ENV
            )),
            (_, power) => power,
        };
        match power {
            Ok(mut p) => {
                // Each GPU named by its exporter too: two hosts both have a gpu="0".
                let host = url
                    .parse::<http::Uri>()
                    .ok()
                    .and_then(|u| u.authority().map(|a| a.to_string()))
                    .unwrap_or_default();
                per_gpu.extend(p.per_gpu.drain(..).map(|(gpu, watts)| GpuWatts {
                    gpu: format!("{host} {gpu}"),
                    watts,
                }));
                pages_read.push(p);
            }
            Err(why) => silent.push((url.clone(), why)),
        }
    }
    if !silent.is_empty() {
        return (None, silent);
    }
    // Summed over exporters; a figure only when every exporter gave it.
    let all = |f: fn(&crate::gpu::GpuPage) -> Option<f64>| -> Option<f64> {
        pages_read.iter().map(f).sum()
    };
    let gpus: u32 = pages_read.iter().map(|p| p.gpus).sum();
    let util = all(|p| p.util_pct.map(|u| u * f64::from(p.gpus)));
    let sum = PowerSample {
        unix_nanos: at,
        watts: pages_read.iter().map(|p| p.watts).sum(),
        gpus,
        energy_j: all(|p| p.energy_j),
        util_pct: util.map(|u| u / f64::from(gpus.max(1))),
        fb_used_mib: all(|p| p.fb_used_mib),
        per_gpu,
    };
    (Some(sum), silent)
}

/// One reading of every server page, added up, or the first that did not answer with
/// known series, with why; `None` when there are none to read.
async fn read_servers(
    client: &HttpClient,
    urls: &[String],
    wait: Duration,
) -> Option<Result<crate::server::ServerReading, (String, String)>> {
    if urls.is_empty() {
        return None;
    }
    let (at, pages) = read_pages(client, urls, None, wait).await;
    let mut sum = crate::server::ServerReading {
        unix_nanos: at,
        ..Default::default()
    };
    for (url, page) in urls.iter().zip(pages) {
        let reading = page.and_then(|text| {
            crate::server::read(&text, at)
                .ok_or_else(|| "no vLLM, SGLang, TensorRT-LLM or Dynamo series".to_owned())
        });
        match reading {
            Ok(r) => sum.add(&r),
            Err(why) => return Some(Err((url.clone(), why))),
        }
    }
    Some(Ok(sum))
}

/// One page, bounded in time and size, with `auth` as its `Authorization` header.
async fn read_one(
    client: &HttpClient,
    url: &str,
    auth: Option<&str>,
    wait: Duration,
) -> Result<String, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    let mut req = http::Request::get(uri);
    if let Some(auth) = auth {
        req = req.header(http::header::AUTHORIZATION, auth);
    }
    let req = req
        .body(Empty::new())
        .map_err(|e| format!("not a request: {e}"))?;
    let fetch = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| rackload_proto::redact::error_chain(&e))?;
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

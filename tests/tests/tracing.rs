//! OpenTelemetry end to end, into a real OTLP receiver: a run is one trace — run span →
//! point spans → shard spans (across the gRPC plan) → one span per sampled request (GenAI
//! semantic conventions) → the sim's server spans (across the HTTP `traceparent`) — and
//! head sampling keeps a binomial share of requests.

#![allow(clippy::disallowed_types)] // these tests wait on real processes, in real time

use std::collections::{BTreeSet, HashMap};

use rackload_tests::otlp::{OtlpReceiver, SpanRec};
use rackload_tests::*;

const MODEL: &str = "sim-model";

fn request_spans(spans: &[SpanRec]) -> Vec<&SpanRec> {
    spans
        .iter()
        .filter(|s| s.name == format!("text_completion {MODEL}"))
        .collect()
}

fn server_spans(spans: &[SpanRec]) -> Vec<&SpanRec> {
    spans
        .iter()
        .filter(|s| s.name == "POST /v1/completions")
        .collect()
}

fn completed(run: &serde_json::Value) -> u64 {
    run["points"]
        .as_array()
        .expect("points")
        .iter()
        .map(|p| count(&p["completed"]))
        .sum()
}

#[test]
fn a_fully_sampled_run_is_one_trace_that_the_servers_spans_join() {
    let tag = new_tag("otlp-all");
    let otlp = OtlpReceiver::start();
    let (_sim, sim_url) = start_sim(
        &tag,
        &[
            "--ttft-ms",
            "2",
            "--itl-ms",
            "1",
            "--model",
            MODEL,
            "--otlp-endpoint",
            &otlp.grpc_url,
        ],
    );
    let results = tempfile::tempdir().expect("tempdir");
    let mut cmd = rackload(&tag);
    cmd.args([
        "--otlp-endpoint",
        &otlp.grpc_url,
        "run",
        "--base-url",
        &sim_url,
    ])
    .args([
        "--model",
        MODEL,
        "--workers",
        "2",
        "--max-concurrency",
        "2,4",
    ])
    .args([
        "--num-prompts",
        "12",
        "--warmup",
        "2",
        "--random-output-len",
        "6",
    ])
    .args(["--trace-sample", "1", "--results-dir"])
    .arg(results.path());
    let out = run_with_timeout(cmd, 90.0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let run = run_json(results.path()).expect("run.json");
    let done = completed(&run);
    assert_eq!(done, 24, "{stderr}");

    // Children flush their exporters when they stop; the sim exports every 0.5 s.
    wait_until(20.0, "every span at the receiver", || {
        let spans = otlp.spans();
        request_spans(&spans).len() as u64 >= done
            && server_spans(&spans).len() as u64 >= done
            && spans.iter().any(|s| s.name == "rackload run")
    });
    let spans = otlp.spans();
    let by_id: HashMap<&str, &SpanRec> = spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let parent_name = |s: &SpanRec| by_id.get(s.parent.as_str()).map(|p| p.name.clone());

    // One trace, rooted at the run span.
    let roots: Vec<&SpanRec> = spans.iter().filter(|s| s.name == "rackload run").collect();
    assert_eq!(roots.len(), 1);
    let root = roots[0];
    assert!(root.parent.is_empty());
    assert_eq!(root.service, "rackload-coordinator");
    assert_eq!(root.attr("rackload.run.id"), run["run_id"].as_str());
    assert_eq!(root.attr("rackload.status"), Some("RUN_STATUS_COMPLETED"));
    let traces: BTreeSet<&str> = spans.iter().map(|s| s.trace_id.as_str()).collect();
    assert_eq!(traces.len(), 1, "spans in several traces: {traces:?}");

    // Points under the run, shards (on the workers) under the points.
    let points: Vec<&SpanRec> = spans
        .iter()
        .filter(|s| s.name.starts_with("point "))
        .collect();
    assert_eq!(points.len(), 2);
    assert!(points.iter().all(|p| p.parent == root.span_id));
    let shards: Vec<&SpanRec> = spans
        .iter()
        .filter(|s| s.name.starts_with("shard "))
        .collect();
    assert_eq!(shards.len(), 4, "2 workers × 2 points");
    assert!(shards.iter().all(|s| s.service == "rackload-worker"
        && parent_name(s).is_some_and(|n| n.starts_with("point "))));

    // Exactly one span per completed (measured) request, each under a shard, each with
    // the GenAI attributes; warmup requests are not traced.
    let requests = request_spans(&spans);
    assert_eq!(requests.len() as u64, done);
    // Indices restart at each point: (point span, index) is the request's identity.
    let point_of = |r: &SpanRec| {
        let shard = by_id.get(r.parent.as_str())?;
        Some(shard.parent.clone())
    };
    let indices: BTreeSet<(Option<String>, Option<&str>)> = requests
        .iter()
        .map(|r| (point_of(r), r.attr("rackload.request.index")))
        .collect();
    assert_eq!(indices.len() as u64, done, "one span per request");
    let sim_port = sim_url.rsplit(':').next().expect("port");
    for r in &requests {
        assert_eq!(r.kind, 3, "client span");
        assert!(
            parent_name(r).is_some_and(|n| n.starts_with("shard ")),
            "{r:?}"
        );
        assert_eq!(r.attr("gen_ai.operation.name"), Some("text_completion"));
        assert_eq!(r.attr("gen_ai.provider.name"), Some("openai"));
        assert_eq!(r.attr("gen_ai.system"), Some("openai"));
        assert_eq!(r.attr("gen_ai.request.model"), Some(MODEL));
        // Lengths are jittered; EOS is ignored, so every request runs to its max.
        let max: u64 = r
            .attr("gen_ai.request.max_tokens")
            .and_then(|v| v.parse().ok())
            .expect("max");
        assert!((1..=6).contains(&max), "{max}");
        assert_eq!(
            r.attr("gen_ai.usage.output_tokens"),
            Some(max.to_string().as_str())
        );
        assert!(
            r.attr("gen_ai.usage.input_tokens")
                .is_some_and(|n| n.parse::<u64>().is_ok_and(|n| n > 0))
        );
        assert_eq!(r.attr("gen_ai.response.finish_reasons"), Some("[length]"));
        assert_eq!(r.attr("server.address"), Some("127.0.0.1"));
        assert_eq!(r.attr("server.port"), Some(sim_port));
        let ttft: f64 = r
            .attr("rackload.ttft_ms")
            .and_then(|v| v.parse().ok())
            .expect("ttft");
        let tpot: f64 = r
            .attr("rackload.tpot_ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        assert!(ttft >= 2.0, "ttft {ttft}");
        assert!(max == 1 || tpot > 0.0, "tpot {tpot}");
        assert_eq!(r.events, vec!["gen_ai.first_token".to_owned()]);
        assert!(r.end_unix_nanos > r.start_unix_nanos);
    }

    // The sim received each request span's traceparent, and its server spans are their
    // children.
    let sent: BTreeSet<String> = requests.iter().map(|r| r.traceparent()).collect();
    let received: Vec<String> =
        serde_json::from_value(get_json(&sim_url, "/traceparents")).expect("traceparent list");
    assert_eq!(
        received.len() as u64,
        done,
        "only sampled requests carry one"
    );
    assert_eq!(received.into_iter().collect::<BTreeSet<_>>(), sent);
    let servers = server_spans(&spans);
    assert_eq!(servers.len() as u64, done);
    let request_ids: BTreeSet<&str> = requests.iter().map(|r| r.span_id.as_str()).collect();
    for s in &servers {
        assert_eq!(s.service, "rackload-sim");
        assert_eq!(s.kind, 2, "server span");
        assert!(request_ids.contains(s.parent.as_str()), "{s:?}");
    }
}

#[test]
fn one_percent_sampling_keeps_a_binomial_share_over_otlp_http() {
    let tag = new_tag("otlp-sample");
    let otlp = OtlpReceiver::start();
    // Configured only by the standard variables, over HTTP/protobuf this time.
    let otel_env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.http_url.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_TRACES_SAMPLER", "traceidratio"),
        ("OTEL_TRACES_SAMPLER_ARG", "0.01"),
    ];
    let mut sim = rackload(&tag);
    sim.args(["sim", "--listen", "127.0.0.1:0", "--fast", "--model", MODEL]);
    sim.envs(otel_env);
    let (_sim, sim_url) = start_command("sim", sim);
    let results = tempfile::tempdir().expect("tempdir");
    let n: u64 = 4000;
    let mut cmd = rackload(&tag);
    cmd.envs(otel_env)
        .args([
            "run",
            "--base-url",
            &sim_url,
            "--model",
            MODEL,
            "--workers",
            "1",
        ])
        .args(["--max-concurrency", "32", "--num-prompts", &n.to_string()])
        .args(["--warmup", "0", "--random-output-len", "2", "--results-dir"])
        .arg(results.path());
    let out = run_with_timeout(cmd, 120.0);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = run_json(results.path()).expect("run.json");
    assert_eq!(completed(&run), n);

    let received: Vec<String> =
        serde_json::from_value(get_json(&sim_url, "/traceparents")).expect("traceparent list");
    let k = received.len() as u64;
    // Binomial(4000, 0.01): mean 40, sd 6.3; 4 sd either side.
    assert!((15..=65).contains(&k), "{k} of {n} requests sampled at 1%");
    wait_until(20.0, "the sampled spans at the receiver", || {
        let spans = otlp.spans();
        request_spans(&spans).len() as u64 >= k && server_spans(&spans).len() as u64 >= k
    });
    let spans = otlp.spans();
    assert_eq!(
        request_spans(&spans).len() as u64,
        k,
        "one span per sampled request"
    );
    let sent: BTreeSet<String> = request_spans(&spans)
        .iter()
        .map(|r| r.traceparent())
        .collect();
    assert_eq!(received.into_iter().collect::<BTreeSet<_>>(), sent);
}

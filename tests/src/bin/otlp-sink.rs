//! A standalone OTLP trace receiver for benchmarks (`scripts/bench-worker --trace`): prints
//! `listening on grpc=URL http=URL`, counts the spans it receives, prints the count on
//! every change, and stops on SIGTERM (or after `--max-seconds`, default 3600).

#![allow(clippy::disallowed_types)] // a standalone process, in real time

use std::time::{Duration, Instant};

use rackload_tests::otlp::OtlpReceiver;

fn main() {
    let max = std::env::args()
        .skip_while(|a| a != "--max-seconds")
        .nth(1)
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(3600);
    let receiver = OtlpReceiver::start();
    println!(
        "listening on grpc={} http={}",
        receiver.grpc_url, receiver.http_url
    );
    let end = Instant::now() + Duration::from_secs(max);
    let mut last = 0;
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(500));
        let n = receiver.span_count();
        if n != last {
            println!("spans {n}");
            last = n;
        }
    }
}

//! What the worker spends per streamed token on its own side of the socket, read from
//! memory so nothing but the client code is timed: SSE framing, the chunk scan, the chunk
//! gap bookkeeping and, at the request's end, recording into the histograms. Three shapes
//! of the same 256-token answer, as vLLM sends them: `/v1/completions` with usage only at
//! the end (the old request), with usage on every chunk (`continuous_usage_stats`, asked
//! for now), and chat from a reasoning model (64 reasoning tokens, each chunk's delta read
//! until the answer starts). The figure to watch is time per token; the packed regime's
//! floor (DESIGN.md §9, sse-floor) is ~0.12 µs per token for the kernel and a minimal parse.
//!
//!     cargo bench -p rackload-worker --bench chunk_path

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rackload_worker::recorder::{Judged, Recorder};
use rackload_worker::target::openai::read_sse_bytes;
use tokio::time::Instant;

const TOKENS: u32 = 256;
const REASONING: u32 = 64;

/// A vLLM-shaped SSE response of `TOKENS` tokens, one per chunk.
fn response(chat: bool, continuous: bool) -> Vec<u8> {
    let mut out = String::new();
    for k in 0..TOKENS {
        let usage = if continuous {
            format!(
                r#","usage":{{"prompt_tokens":1024,"completion_tokens":{},"total_tokens":{}}}"#,
                k + 1,
                1025 + k
            )
        } else {
            String::new()
        };
        let choice = if chat {
            let field = if k < REASONING {
                "reasoning"
            } else {
                "content"
            };
            format!(
                r#"{{"index":0,"delta":{{"{field}":" the"}},"logprobs":null,"finish_reason":null}}"#
            )
        } else {
            r#"{"index":0,"text":" the","logprobs":null,"finish_reason":null,"stop_reason":null}"#
                .to_owned()
        };
        out.push_str(&format!(
            "data: {{\"id\":\"cmpl-0123456789abcdef\",\"object\":\"chunk\",\"created\":1796000000,\"model\":\"openai/gpt-oss-120b\",\"choices\":[{choice}]{usage}}}\n\n"
        ));
    }
    out.push_str(&format!(
        "data: {{\"id\":\"cmpl-0123456789abcdef\",\"choices\":[],\"usage\":{{\"prompt_tokens\":1024,\"completion_tokens\":{TOKENS},\"total_tokens\":{},\"completion_tokens_details\":{{\"reasoning_tokens\":{}}}}}}}\n\n",
        1024 + TOKENS,
        if chat { REASONING } else { 0 }
    ));
    out.push_str("data: [DONE]\n\n");
    out.into_bytes()
}

fn chunk_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("per_token");
    group.throughput(Throughput::Elements(u64::from(TOKENS)));
    let recorder = Recorder::new(1);
    for (name, chat, continuous) in [
        ("completions_usage_at_end", false, false),
        ("completions_usage_every_chunk", false, true),
        ("chat_reasoning_usage_every_chunk", true, true),
    ] {
        let bytes = response(chat, continuous);
        let mut gaps = Vec::with_capacity(TOKENS as usize);
        group.bench_function(name, |b| {
            b.iter(|| {
                gaps.clear();
                let done = read_sse_bytes(&bytes, chat, &mut gaps).expect("a good stream");
                recorder.completed(&done, 1024, &gaps, Instant::now(), None, Judged::default());
                done.output_tokens
            })
        });
        // Keep the recorder from growing without bound between groups.
        let _ = recorder.take();
    }
    group.finish();
}

criterion_group!(benches, chunk_path);
criterion_main!(benches);

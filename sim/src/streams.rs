//! The sim's streamed answers, one pacing each: `paced_stream` (fixed latencies, one
//! event per write at its absolute instant; with speculative decoding, 1..=K tokens per
//! event, K × ITL apart), `batch_stream` (as the batch engine produces tokens, an event per
//! stream interval) and `fast_stream` (no delays, many events per write). Each speaks
//! reasoning deltas, usage on every chunk when asked, and the injected faults.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;

use crate::batch::SeqShared;
use crate::faults::{Fault, mix};
use crate::openai::{ChunkWriter, DONE_EVENT, GenRequest, Piece};
use crate::server::{InFlight, Shared};
use crate::stamps::StreamStamps;

/// An SSE response around `body`.
pub(crate) fn sse(body: Body) -> Response {
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Where an injected mid-stream fault strikes: after half the tokens.
fn fault_at(fault: Option<Fault>, n: u32) -> Option<(u32, Fault)> {
    fault.map(|f| (n / 2, f))
}

const MALFORMED_EVENT: &str = "data: {\"id\":\"broken\",\"choices\":[{\"text\":\n\n";

/// A stall lasts until the client gives up (bounded, so nothing outlives a test run).
const STALL: Duration = Duration::from_secs(3600);

fn reset_error() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected fault: reset")
}

/// What a streamed answer is made of: the request, its length and ending, its injected
/// fault, when it arrived, and its place in the counters.
pub(crate) struct Reply {
    pub s: Arc<Shared>,
    pub writer: ChunkWriter,
    pub req: GenRequest,
    /// The request's number (its faults and accepted draft lengths are drawn from it).
    pub id: u64,
    /// Output tokens.
    pub n: u32,
    /// The first this many of them are reasoning.
    pub reasoning: u32,
    pub finish: &'static str,
    pub fault: Option<Fault>,
    pub arrival: Instant,
    pub guard: InFlight,
}

impl Reply {
    /// The whole (non-streaming) response.
    pub fn whole(self) -> Response {
        self.guard.served();
        self.guard.tokens(u64::from(self.n));
        (
            [(header::CONTENT_TYPE, "application/json")],
            self.writer
                .full_response(self.req.prompt_tokens, self.n, self.reasoning, self.finish),
        )
            .into_response()
    }
}

/// Tokens in the event starting at token `k` of `reply`: one, or with speculative decoding
/// (`per_chunk` K > 1) the 1..=K a step accepted, drawn from the request and `k`; an event
/// never spans the end of the reasoning or of the output.
fn event_len(reply_id: u64, k: u32, n: u32, reasoning: u32, per_chunk: u32) -> u32 {
    let want = if per_chunk <= 1 {
        1
    } else {
        1 + (mix(reply_id.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(k))
            % u64::from(per_chunk)) as u32
    };
    let end = if k < reasoning { reasoning } else { n };
    want.min(end - k)
}

/// The usage a chunk carries when the client asked for it on every chunk (vLLM's
/// `continuous_usage_stats`, with `include_usage`): tokens so far.
fn usage_so_far(req: &GenRequest, completion: u32) -> Option<(u32, u32)> {
    (req.include_usage && req.continuous_usage).then_some((req.prompt_tokens, completion))
}

/// One SSE event per step at its absolute instant (step j at TTFT + j × K × ITL), then
/// usage, then `[DONE]`.
pub(crate) fn paced_stream(reply: Reply) -> Body {
    let Reply {
        s,
        writer,
        req,
        id,
        n,
        reasoning,
        finish,
        fault,
        arrival,
        guard,
    } = reply;
    enum Step {
        /// Event `j`, starting at token `k`.
        Event {
            j: u32,
            k: u32,
        },
        Usage,
        Done,
        End,
    }
    let latency = s.config.latency;
    let per_chunk = s.config.tokens_per_chunk.max(1);
    let strike = fault_at(fault, n);
    let state = (
        Step::Event { j: 0, k: 0 },
        guard,
        StreamStamps::new(arrival),
    );
    let stream = futures_util::stream::unfold(state, move |(step, guard, mut stamps)| {
        let writer = &writer;
        let req = &req;
        let s = s.clone();
        let out = match step {
            Step::Event { k, .. } if strike.is_some_and(|(at, _)| k >= at) => {
                strike.map(|(_, f)| (None, Err(f), 0, Step::End))
            }
            Step::Event { j, k } => {
                let count = event_len(id, k, n, reasoning, per_chunk);
                let last = k + count == n;
                let event = writer.event(&Piece {
                    k,
                    count,
                    first: k == 0,
                    finish: last.then_some(finish),
                    reasoning: k < reasoning,
                    usage: usage_so_far(req, k + count),
                });
                let next = match (last, req.include_usage) {
                    (false, _) => Step::Event {
                        j: j + 1,
                        k: k + count,
                    },
                    (true, true) => Step::Usage,
                    (true, false) => Step::Done,
                };
                let at = arrival + latency.ttft + latency.itl * j.saturating_mul(per_chunk);
                Some((Some((at, k < reasoning)), Ok(event), count, next))
            }
            Step::Usage => Some((
                None,
                Ok(writer.usage_event(req.prompt_tokens, n, reasoning)),
                0,
                Step::Done,
            )),
            Step::Done if fault == Some(Fault::NoDone) => None,
            Step::Done => {
                guard.served();
                s.stream_done(&stamps, n);
                Some((None, Ok(DONE_EVENT.to_owned()), 0, Step::End))
            }
            Step::End => None,
        };
        async move {
            let (at, event, count, next) = out?;
            if let Some((at, _)) = at {
                tokio::time::sleep_until(at).await;
            }
            let event = match event {
                Ok(e) => e,
                Err(Fault::Malformed) => MALFORMED_EVENT.to_owned(),
                Err(Fault::Stall) => {
                    tokio::time::sleep(STALL).await;
                    return None;
                }
                Err(_) => return Some((Err(reset_error()), (next, guard, stamps))),
            };
            if let Some((_, thinking)) = at {
                guard.tokens(u64::from(count));
                s.event_sent(&mut stamps, Instant::now(), count, thinking);
            }
            Some((Ok(Bytes::from(event)), (next, guard, stamps)))
        }
    });
    Body::from_stream(stream)
}

/// What a batch stream writes with: the reply (which it holds for as long as the stream
/// lives, its in-flight guard included), its stream interval and where its fault strikes.
struct Batch {
    r: Reply,
    interval: u32,
    strike: Option<(u32, Fault)>,
}

/// A batch stream's progress.
struct BatchState {
    sent: u32,
    stamps: StreamStamps,
    ended: bool,
    fail: Option<Fault>,
}

impl Batch {
    /// The events of the tokens ready (of `produced`; `finished`: the engine is done),
    /// whole intervals only unless the answer is complete; usage and `[DONE]` at its end.
    fn events(&self, st: &mut BatchState, produced: u32, finished: bool) -> String {
        let r = &self.r;
        let (n, reasoning, guard) = (r.n, r.reasoning, &r.guard);
        let mut buf = String::new();
        let now = Instant::now();
        while st.sent < produced {
            if let Some((at, f)) = self.strike
                && st.sent >= at
            {
                if f == Fault::Malformed {
                    buf.push_str(MALFORMED_EVENT);
                    st.ended = true;
                } else {
                    st.fail = Some(f);
                }
                break;
            }
            let k = st.sent;
            // An event never spans the end of the reasoning.
            let want = self
                .interval
                .min(if k < reasoning { reasoning } else { n } - k);
            let count = want.min(produced - k);
            if count < want && !(finished || produced == n) {
                break;
            }
            let last = k + count == n;
            buf.push_str(&r.writer.event(&Piece {
                k,
                count,
                first: k == 0,
                finish: last.then_some(r.finish),
                reasoning: k < reasoning,
                usage: usage_so_far(&r.req, k + count),
            }));
            st.sent += count;
            guard.tokens(u64::from(count));
            r.s.event_sent(&mut st.stamps, now, count, k < reasoning);
        }
        if st.sent == n && !st.ended && st.fail.is_none() {
            if r.req.include_usage {
                buf.push_str(&r.writer.usage_event(r.req.prompt_tokens, n, reasoning));
            }
            r.s.stream_done(&st.stamps, n);
            if r.fault != Some(Fault::NoDone) {
                buf.push_str(DONE_EVENT);
                guard.served();
            }
            st.ended = true;
        }
        buf
    }
}

/// Streams what the batch engine produces for one request: an SSE event per
/// `stream_interval` tokens (the last may hold fewer), as soon as the engine has them; a
/// client that reads late gets several events in one write, as from a real server.
pub(crate) fn batch_stream(reply: Reply, seq: Arc<SeqShared>) -> Body {
    let st = BatchState {
        sent: 0,
        stamps: StreamStamps::new(reply.arrival),
        ended: false,
        fail: None,
    };
    let batch = Arc::new(Batch {
        interval: reply.s.config.stream_interval.max(1),
        strike: fault_at(reply.fault, reply.n),
        r: reply,
    });
    let stream = futures_util::stream::unfold(st, move |mut st| {
        let seq = seq.clone();
        let batch = batch.clone();
        async move {
            if st.ended {
                return None;
            }
            if let Some(f) = st.fail {
                if f == Fault::Stall {
                    tokio::time::sleep(STALL).await;
                    return None;
                }
                st.ended = true;
                return Some((Err(reset_error()), st));
            }
            loop {
                let produced = seq.produced.load(Ordering::Acquire).min(batch.r.n);
                let finished = seq.finished.load(Ordering::Acquire);
                let ready = produced - st.sent;
                if ready >= batch.interval || (ready > 0 && (finished || produced == batch.r.n)) {
                    let buf = batch.events(&mut st, produced, finished);
                    if !buf.is_empty() {
                        return Some((Ok(Bytes::from(buf)), st));
                    }
                    // A fault struck before any event: now, not on a busy loop.
                    if let Some(f) = st.fail {
                        st.ended = true;
                        if f == Fault::Stall {
                            tokio::time::sleep(STALL).await;
                            return None;
                        }
                        return Some((Err(reset_error()), st));
                    }
                }
                if finished && st.sent >= produced {
                    return None;
                }
                seq.notify.notified().await;
            }
        }
    });
    Body::from_stream(stream)
}

/// Events per write in fast mode: one `write()` per event costs the sim's kernel ~6 µs,
/// so a firehose must pack them (DESIGN.md §9).
pub(crate) const FAST_EVENTS_PER_FRAME: u32 = 64;

/// Fast mode: no model delays; the events, built once per request, are copied into frames
/// of up to [`FAST_EVENTS_PER_FRAME`].
pub(crate) fn fast_stream(reply: Reply) -> Body {
    let Reply {
        writer,
        req,
        n,
        finish,
        fault,
        guard,
        ..
    } = reply;
    enum Phase {
        Tokens(u32),
        Fail(Fault),
        End,
    }
    let first = writer.token_event(0, true, (n == 1).then_some(finish));
    let middle: Vec<String> = (1..=8)
        .map(|k| writer.token_event(k, false, None))
        .collect();
    let last = writer.token_event(n.saturating_sub(1), false, Some(finish));
    let usage = req
        .include_usage
        .then(|| writer.usage_event(req.prompt_tokens, n, 0));
    let strike = fault_at(fault, n);
    let frame_cap = FAST_EVENTS_PER_FRAME as usize * last.len() + 256;
    let stream = futures_util::stream::unfold((Phase::Tokens(0), guard), move |(phase, guard)| {
        let mut buf = Vec::new();
        let next = match phase {
            Phase::End => None,
            Phase::Fail(f) => Some(Phase::Fail(f)),
            Phase::Tokens(k0) => {
                buf.reserve(frame_cap);
                let end = n.min(k0 + FAST_EVENTS_PER_FRAME);
                let mut next = Phase::Tokens(end);
                let mut events = 0;
                for k in k0..end {
                    if let Some((at, f)) = strike
                        && at == k
                    {
                        next = if f == Fault::Malformed {
                            buf.extend_from_slice(MALFORMED_EVENT.as_bytes());
                            Phase::End
                        } else {
                            Phase::Fail(f)
                        };
                        break;
                    }
                    let event = match k {
                        0 => &first,
                        k if k + 1 == n => &last,
                        k => &middle[(k as usize - 1) % middle.len()],
                    };
                    buf.extend_from_slice(event.as_bytes());
                    events += 1;
                }
                guard.tokens(events);
                if matches!(next, Phase::Tokens(k) if k == n) {
                    if let Some(u) = &usage {
                        buf.extend_from_slice(u.as_bytes());
                    }
                    if fault != Some(Fault::NoDone) {
                        buf.extend_from_slice(DONE_EVENT.as_bytes());
                        guard.served();
                    }
                    next = Phase::End;
                }
                Some(next)
            }
        };
        async move {
            let next = next?;
            if !buf.is_empty() {
                return Some((Ok(Bytes::from(buf)), (next, guard)));
            }
            match next {
                Phase::Fail(Fault::Stall) => {
                    tokio::time::sleep(STALL).await;
                    None
                }
                Phase::Fail(_) => Some((Err(reset_error()), (Phase::End, guard))),
                _ => None,
            }
        }
    });
    Body::from_stream(stream)
}

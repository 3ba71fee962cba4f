//! Reading a response: the SSE stream timed message by message (TTFT; TTFO, the first
//! answer after any reasoning; each chunk's gap and, from usage on every chunk when the
//! server gives it, its tokens; E2EL; output and reasoning tokens from usage or counted;
//! error events classified; first-byte and idle timeouts on one timer), or a whole
//! response timed as one (TTFT = TTFO = E2EL).

use std::fmt;
use std::time::Duration;

use http_body_util::BodyExt;
use serde::Deserialize;
use serde::de::{IgnoredAny, SeqAccess, Visitor};
use serde_json::Value;
use tokio::time::Instant;

use super::chunk_scan::{self, Delta, FinishReason};
use super::openai::error_chain;
use super::options::Timeouts;
use crate::error::ErrorClass;
use crate::sse::SseParser;
use rackload_workloads::tokenizer::LoadedTokenizer;

/// One chunk after the first: the gap since the previous one and the tokens it carried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gap {
    /// Microseconds (saturating at about 71 minutes).
    pub us: u32,
    /// Tokens, from the change in usage since the previous chunk; [`Gap::UNKNOWN`] when
    /// the chunk carried no usage (the request's mean tokens per chunk stands in).
    pub tokens: u32,
}

impl Gap {
    pub const UNKNOWN: u32 = u32::MAX;
}

/// A finished request's measurements. Chunk gaps are in the caller's scratch buffer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Completed {
    pub ttft_us: u64,
    /// Time to the first answer after any reasoning (= TTFT without reasoning); None when
    /// the stream never answered (e.g. it ran out of tokens while reasoning).
    pub ttfo_us: Option<u64>,
    pub e2el_us: u64,
    /// `usage.completion_tokens`, else the number of choice messages.
    pub output_tokens: u64,
    /// Of the output tokens, those that were reasoning: usage's count when given, else
    /// counted from the stream's reasoning chunks.
    pub reasoning_tokens: u64,
    /// Prompt tokens the server served from its prefix cache, when its usage says.
    pub cached_tokens: Option<u64>,
    /// Choice messages (1 for a whole response).
    pub chunks: u64,
    /// The tokens each gap of unknown tokens stands for: what usage leaves to them,
    /// spread evenly (all of it over all chunks when no chunk's tokens are known).
    pub spread_tokens: f64,
    /// False when output tokens were counted from chunks (or, whole responses without
    /// usage, taken as the requested length).
    pub usage_present: bool,
    /// Index of the endpoint that served it.
    pub endpoint: usize,
    /// When the request was handed to the connection.
    pub sent_at: Instant,
    /// The last `finish_reason` the server gave; read only for traced requests.
    pub finish_reason: Option<FinishReason>,
}

/// A failed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failed {
    pub class: ErrorClass,
    pub message: String,
    /// The endpoint it was sent to (None: failed before one was chosen).
    pub endpoint: Option<usize>,
}

impl Failed {
    pub(crate) fn new(class: ErrorClass, message: impl Into<String>) -> Failed {
        Failed {
            class,
            message: message.into(),
            endpoint: None,
        }
    }
}

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.class, self.message)
    }
}

/// Counts a JSON array's elements without allocating (`null` counts as 0).
#[derive(Default)]
struct Count(usize);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Count, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Count, A::Error> {
                let mut n = 0;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(Count(n))
            }
            fn visit_unit<E>(self) -> Result<Count, E> {
                Ok(Count(0))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
struct Usage {
    completion_tokens: Option<u64>,
    completion_tokens_details: Option<Details>,
    /// SGLang's spelling.
    reasoning_tokens: Option<u64>,
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize)]
struct Details {
    reasoning_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct PromptDetails {
    cached_tokens: Option<u64>,
}

impl Usage {
    fn reasoning(&self) -> Option<u64> {
        self.completion_tokens_details
            .as_ref()
            .and_then(|d| d.reasoning_tokens)
            .or(self.reasoning_tokens)
    }

    fn cached(&self) -> Option<u64> {
        self.prompt_tokens_details
            .as_ref()
            .and_then(|d| d.cached_tokens)
    }
}

#[derive(Deserialize)]
struct ErrorObj {
    code: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Count,
    usage: Option<Usage>,
    error: Option<ErrorObj>,
}

/// Per-stream state while reading one response.
struct StreamState<'a> {
    sent_at: Instant,
    first: Option<Instant>,
    last: Option<Instant>,
    choice_messages: u64,
    usage_tokens: Option<u64>,
    done: bool,
    failure: Option<Failed>,
    gaps: &'a mut Vec<Gap>,
    /// Chat: read deltas for reasoning until the answer starts.
    classify: bool,
    /// A reasoning delta was seen.
    reasoned: bool,
    /// When the answer started.
    answer_at: Option<Instant>,
    /// Reasoning tokens counted from usage deltas, and reasoning chunks whose tokens are
    /// not known.
    reasoning_counted: u64,
    reasoning_unknown_chunks: u64,
    /// What usage said about reasoning, and about the prefix cache.
    usage_reasoning: Option<u64>,
    cached_tokens: Option<u64>,
    /// Tokens of the first chunk ([`Gap::UNKNOWN`] when not known).
    first_tokens: u32,
    /// Every chunk with a choice so far carried usage (so far): the change in usage is
    /// each chunk's tokens. A server that gives usage only once (at the end, on the last
    /// chunk) does not say how it was spread.
    usage_running: bool,
    /// With a tokenizer, the text of the chunks whose tokens usage does not tell, and
    /// where each ends (chunk number, byte): counted at the end, encoded as one text.
    tokenizer: Option<&'a LoadedTokenizer>,
    texts: String,
    text_ends: Vec<(u64, usize)>,
    /// Traced requests keep their last chunk with a choice, to read its finish reason
    /// once at the end (scanning every chunk for it cost more than the span).
    traced: bool,
    last_choice: Vec<u8>,
}

/// More tokens than this in one chunk is not a server's count of one step or interval:
/// such a chunk's tokens count as unknown.
const MAX_CHUNK_TOKENS: u64 = 4096;

/// What a server's usage may say and still be true: no count past the longest length a
/// run can ask for ([`rackload_workloads::scenario::MAX_TOKENS`]). A count that cannot be
/// true fails the request as malformed, rather than becoming a throughput figure. (More
/// reasoning tokens than completion tokens is how some proxies count, not a lie: the
/// reasoning share is clamped where it is used.)
fn plausible(
    output_tokens: u64,
    reasoning: Option<u64>,
    cached: Option<u64>,
) -> Result<(), Failed> {
    let cap = u64::from(rackload_workloads::scenario::MAX_TOKENS);
    let absurd = |what: &str, n: u64| {
        Err(Failed::new(
            ErrorClass::Malformed,
            format!("usage says {n} {what}, past any model's length ({cap} tokens)"),
        ))
    };
    if output_tokens > cap {
        return absurd("completion tokens", output_tokens);
    }
    for (what, n) in [
        ("cached prompt tokens", cached),
        ("reasoning tokens", reasoning),
    ] {
        if let Some(n) = n.filter(|&n| n > cap) {
            return absurd(what, n);
        }
    }
    Ok(())
}

/// A duration in whole microseconds (saturating).
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl<'a> StreamState<'a> {
    fn new(
        sent_at: Instant,
        gaps: &'a mut Vec<Gap>,
        classify: bool,
        tokenizer: Option<&'a LoadedTokenizer>,
        traced: bool,
    ) -> StreamState<'a> {
        StreamState {
            sent_at,
            first: None,
            last: None,
            choice_messages: 0,
            usage_tokens: None,
            done: false,
            failure: None,
            gaps,
            classify,
            reasoned: false,
            answer_at: None,
            reasoning_counted: 0,
            reasoning_unknown_chunks: 0,
            usage_reasoning: None,
            cached_tokens: None,
            first_tokens: Gap::UNKNOWN,
            usage_running: true,
            tokenizer,
            texts: String::new(),
            text_ends: Vec::new(),
            traced,
            last_choice: Vec::new(),
        }
    }

    /// The delta of a chunk with a choice, while it matters (chat, before the answer).
    fn delta(&self, has_choice: bool, data: &[u8]) -> Option<Delta> {
        (has_choice && self.classify && self.answer_at.is_none())
            .then(|| chunk_scan::delta(data, self.reasoned))
    }

    /// Is a chunk with usage the request's final word on it: a usage chunk without a
    /// choice, or usage that comes only now on a chunk with one (no usage before it)?
    /// Reasoning and cached tokens are read from it alone, so a stream with usage on every
    /// chunk is not searched for them per token.
    fn final_usage(&self, has_choice: bool, has_usage: bool) -> bool {
        has_usage && (!has_choice || !self.usage_running)
    }

    fn on_event(&mut self, event: &[u8], data: &[u8], now: Instant) {
        if self.done || self.failure.is_some() {
            return;
        }
        if data == b"[DONE]" {
            self.done = true;
            return;
        }
        if event.is_empty()
            && let Some(c) = chunk_scan::scan(data)
        {
            self.keep_if_traced(c.has_choice, data);
            if self.final_usage(c.has_choice, c.usage_tokens.is_some()) {
                self.usage_reasoning = chunk_scan::reasoning_tokens(data).or(self.usage_reasoning);
                self.cached_tokens = chunk_scan::cached_tokens(data).or(self.cached_tokens);
            }
            let delta = self.delta(c.has_choice, data);
            self.on_chunk(c.has_choice, c.usage_tokens, delta, data, now);
            return;
        }
        let chunk: Chunk = match serde_json::from_slice(data) {
            Ok(c) => c,
            Err(e) => {
                self.failure = Some(Failed::new(
                    ErrorClass::Malformed,
                    format!("SSE data is not an OpenAI chunk: {e}"),
                ));
                return;
            }
        };
        if chunk.error.is_some() || event == b"error" {
            let code = chunk
                .error
                .and_then(|e| e.code)
                .and_then(|c| c.as_u64().or_else(|| c.as_str()?.parse().ok()));
            let class = match code {
                Some(c @ 400..=599) => ErrorClass::from_status(c as u16),
                _ => ErrorClass::Malformed,
            };
            let text = String::from_utf8_lossy(&data[..data.len().min(200)]).into_owned();
            self.failure = Some(Failed::new(class, format!("error event in stream: {text}")));
            return;
        }
        let has_choice = chunk.choices.0 > 0;
        self.keep_if_traced(has_choice, data);
        let delta = self.delta(has_choice, data);
        if let Some(u) = &chunk.usage
            && self.final_usage(has_choice, u.completion_tokens.is_some())
        {
            self.usage_reasoning = u.reasoning().or(self.usage_reasoning);
            self.cached_tokens = u.cached().or(self.cached_tokens);
        }
        self.on_chunk(
            has_choice,
            chunk.usage.and_then(|u| u.completion_tokens),
            delta,
            data,
            now,
        );
    }

    /// Keeps a chunk's text for the tokenizer (only when usage does not say its tokens).
    fn keep_text(&mut self, data: &[u8]) {
        let texts = &mut self.texts;
        chunk_scan::texts(data, |raw| {
            if !raw.contains(&b'\\') {
                texts.push_str(&String::from_utf8_lossy(raw));
                return;
            }
            let quoted = [&b"\""[..], raw, &b"\""[..]].concat();
            match serde_json::from_slice::<String>(&quoted) {
                Ok(t) => texts.push_str(&t),
                Err(_) => texts.push_str(&String::from_utf8_lossy(raw)),
            }
        });
        self.text_ends
            .push((self.choice_messages, self.texts.len()));
    }

    /// Chunks whose tokens usage did not tell, counted by the tokenizer.
    fn count_texts(&mut self) {
        let Some(tok) = self.tokenizer else { return };
        if self.text_ends.is_empty() {
            return;
        }
        let ends: Vec<usize> = self.text_ends.iter().map(|e| e.1).collect();
        let Ok(counts) = tok.tokens_per_piece(&self.texts, &ends) else {
            return;
        };
        for (&(chunk, _), k) in self.text_ends.iter().zip(counts) {
            match chunk {
                0 => self.first_tokens = k,
                n => {
                    if let Some(g) = self.gaps.get_mut(n as usize - 1) {
                        g.tokens = k;
                    }
                }
            }
        }
    }

    fn keep_if_traced(&mut self, has_choice: bool, data: &[u8]) {
        if self.traced && has_choice {
            self.last_choice.clear();
            self.last_choice.extend_from_slice(data);
        }
    }

    fn on_chunk(
        &mut self,
        has_choice: bool,
        usage_tokens: Option<u64>,
        delta: Option<Delta>,
        data: &[u8],
        now: Instant,
    ) {
        if has_choice {
            // Usage on every chunk is usage so far: the change is this chunk's tokens.
            let tokens = match usage_tokens {
                Some(u) if self.usage_running => {
                    let k = u.saturating_sub(self.usage_tokens.unwrap_or(0));
                    if k <= MAX_CHUNK_TOKENS {
                        k as u32
                    } else {
                        Gap::UNKNOWN
                    }
                }
                _ => Gap::UNKNOWN,
            };
            self.usage_running &= usage_tokens.is_some();
            if tokens == Gap::UNKNOWN && self.tokenizer.is_some() {
                self.keep_text(data);
            }
            match self.last {
                None => {
                    self.first = Some(now);
                    self.first_tokens = tokens;
                }
                Some(prev) => self.gaps.push(Gap {
                    us: u32::try_from(micros(now - prev)).unwrap_or(u32::MAX),
                    tokens,
                }),
            }
            self.last = Some(now);
            self.choice_messages += 1;
            if let Some(d) = delta {
                if d.reasoning {
                    self.reasoned = true;
                    match tokens {
                        Gap::UNKNOWN => self.reasoning_unknown_chunks += 1,
                        k => self.reasoning_counted += u64::from(k),
                    }
                }
                if d.answer {
                    // Without reasoning before it, the answer began with the first token.
                    self.answer_at = if self.reasoned { Some(now) } else { self.first };
                }
            }
        }
        if usage_tokens.is_some() {
            self.usage_tokens = usage_tokens;
        }
    }

    /// The measurements of a stream that ended well.
    fn completed(mut self, endpoint: usize) -> Result<Completed, Failed> {
        self.count_texts();
        let (Some(first), Some(last)) = (self.first, self.last) else {
            return Err(Failed::new(
                ErrorClass::Malformed,
                "stream carried no choice",
            ));
        };
        let output_tokens = self.usage_tokens.unwrap_or(self.choice_messages);
        plausible(output_tokens, self.usage_reasoning, self.cached_tokens)?;
        // What usage leaves to the gaps whose tokens are unknown, spread over them.
        let (mut known, mut unknown) = (0u64, 0u64);
        for g in self.gaps.iter() {
            match g.tokens {
                Gap::UNKNOWN => unknown += 1,
                k => known += u64::from(k),
            }
        }
        let spread_tokens = match self.first_tokens {
            Gap::UNKNOWN => output_tokens as f64 / self.choice_messages as f64,
            first if unknown > 0 => {
                output_tokens.saturating_sub(u64::from(first) + known) as f64 / unknown as f64
            }
            _ => 0.0,
        };
        let ttft_us = micros(first - self.sent_at);
        let ttfo_us = if self.classify {
            self.answer_at.map(|a| micros(a - self.sent_at))
        } else {
            Some(ttft_us)
        };
        let reasoning_tokens = self.usage_reasoning.unwrap_or_else(|| {
            self.reasoning_counted
                + (self.reasoning_unknown_chunks as f64 * spread_tokens).round() as u64
        });
        Ok(Completed {
            ttft_us,
            ttfo_us,
            e2el_us: micros(last - self.sent_at),
            output_tokens,
            reasoning_tokens: reasoning_tokens.min(output_tokens),
            cached_tokens: self.cached_tokens,
            chunks: self.choice_messages,
            spread_tokens,
            usage_present: self.usage_tokens.is_some(),
            endpoint,
            sent_at: self.sent_at,
            finish_reason: if self.traced {
                chunk_scan::finish_reason(&self.last_choice)
            } else {
                None
            },
        })
    }
}

/// Reads a whole SSE response held in `bytes` as if it came in one read, and records
/// nothing: the per-chunk path alone, for `benches/chunk_path.rs`.
#[doc(hidden)]
pub fn read_sse_bytes(bytes: &[u8], chat: bool, gaps: &mut Vec<Gap>) -> Result<Completed, Failed> {
    let now = Instant::now();
    let mut parser = SseParser::new();
    let mut st = StreamState::new(now, gaps, chat, None, false);
    parser.feed(bytes, |ev| st.on_event(ev.event, ev.data, now));
    if let Some(f) = st.failure.take() {
        return Err(f);
    }
    st.completed(0)
}

/// The failure of a response that did not begin within the first-byte timeout `t`.
pub(crate) fn first_byte_timeout(t: Duration) -> Failed {
    Failed::new(
        ErrorClass::Timeout,
        format!(
            "no response within the first-byte timeout ({:.1} s)",
            t.as_secs_f64()
        ),
    )
}

/// Reads an SSE response to its `data: [DONE]`, timing every message; `chat` streams are
/// read for reasoning until their answer starts; with a `tokenizer`, chunks whose tokens
/// usage does not tell are counted by it.
pub(crate) async fn read_sse(
    mut body: hyper::body::Incoming,
    sent_at: Instant,
    timeouts: Timeouts,
    gaps: &mut Vec<Gap>,
    chat: bool,
    tokenizer: Option<&LoadedTokenizer>,
    traced: bool,
) -> Result<Completed, Failed> {
    let first_byte_due = timeouts.first_byte.map(|t| sent_at + t);
    let mut parser = SseParser::new();
    let mut st = StreamState::new(sent_at, gaps, chat, tokenizer, traced);
    // The silence allowed before the next read: first-byte until the first one, then
    // idle. One timer, re-armed only when it fires early (not per read).
    let watch = timeouts.first_byte.is_some() || timeouts.idle.is_some();
    let mut last_read: Option<Instant> = None;
    let due = |last_read: Option<Instant>| match last_read {
        None => first_byte_due,
        Some(t) => timeouts.idle.map(|idle| t + idle),
    };
    let far = sent_at + Duration::from_secs(86_400 * 365);
    let mut timer_at = due(None).unwrap_or(far);
    let timer = tokio::time::sleep_until(timer_at);
    tokio::pin!(timer);
    loop {
        let frame = if watch {
            tokio::select! {
                biased;
                f = body.frame() => f,
                () = &mut timer => {
                    let now = Instant::now();
                    match due(last_read) {
                        Some(d) if now >= d => {
                            return Err(match last_read {
                                None => first_byte_timeout(timeouts.first_byte.unwrap_or_default()),
                                Some(_) => Failed::new(
                                    ErrorClass::Timeout,
                                    format!(
                                        "stream idle for longer than {:.1} s",
                                        timeouts.idle.unwrap_or_default().as_secs_f64()
                                    ),
                                ),
                            });
                        }
                        d => timer_at = d.unwrap_or(far),
                    }
                    timer.as_mut().reset(timer_at);
                    continue;
                }
            }
        } else {
            body.frame().await
        };
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|e| {
            Failed::new(
                ErrorClass::classify(&e, ErrorClass::StreamReset),
                format!("stream broke: {}", error_chain(&e)),
            )
        })?;
        let now = Instant::now();
        last_read = Some(now);
        if watch {
            // Re-arm only when the kind of deadline changes (first byte -> idle, or
            // none); a deadline that merely moved later is caught when the timer fires.
            let want = due(last_read).unwrap_or(far);
            if (timer_at == far) != (want == far) {
                timer_at = want;
                timer.as_mut().reset(timer_at);
            }
        }
        if let Ok(data) = frame.into_data() {
            parser.feed(&data, |ev| st.on_event(ev.event, ev.data, now));
            if parser.overflowed() {
                return Err(Failed::new(
                    ErrorClass::Malformed,
                    format!(
                        "an SSE event grew past {} MiB without ending",
                        crate::sse::MAX_EVENT_BYTES >> 20
                    ),
                ));
            }
        }
        if st.done || st.failure.is_some() {
            break;
        }
    }
    if let Some(f) = st.failure {
        return Err(f);
    }
    if !st.done {
        return Err(Failed::new(
            ErrorClass::StreamReset,
            "stream ended before data: [DONE]",
        ));
    }
    st.completed(0)
}

/// The largest whole (non-streaming) response read: far above any completion.
pub(crate) const MAX_WHOLE_BYTES: usize = 64 << 20;

/// Reads a whole (non-streaming) response: TTFT = E2EL = until its last byte.
pub(crate) async fn read_whole(
    body: hyper::body::Incoming,
    sent_at: Instant,
    output_len: u32,
    first_byte_due: Option<Instant>,
    traced: bool,
) -> Result<Completed, Failed> {
    let collect = http_body_util::Limited::new(body, MAX_WHOLE_BYTES).collect();
    let bytes = match first_byte_due {
        Some(due) => tokio::time::timeout_at(due, collect).await.map_err(|_| {
            Failed::new(
                ErrorClass::Timeout,
                "whole response not read within the first-byte timeout",
            )
        })?,
        None => collect.await,
    }
    .map_err(|e| {
        if e.is::<http_body_util::LengthLimitError>() {
            return Failed::new(
                ErrorClass::Malformed,
                format!("the response is larger than {} MiB", MAX_WHOLE_BYTES >> 20),
            );
        }
        Failed::new(
            ErrorClass::classify(&*e, ErrorClass::StreamReset),
            format!("response broke: {}", error_chain(&*e)),
        )
    })?
    .to_bytes();
    let end = Instant::now();
    #[derive(Deserialize)]
    struct Whole {
        #[serde(default)]
        choices: Count,
        usage: Option<Usage>,
    }
    let whole: Whole = serde_json::from_slice(&bytes).map_err(|e| {
        Failed::new(
            ErrorClass::Malformed,
            format!("response is not an OpenAI completion: {e}"),
        )
    })?;
    if whole.choices.0 == 0 {
        return Err(Failed::new(
            ErrorClass::Malformed,
            "response carried no choice",
        ));
    }
    let reasoning = whole.usage.as_ref().and_then(Usage::reasoning);
    let cached_tokens = whole.usage.as_ref().and_then(Usage::cached);
    let usage = whole.usage.and_then(|u| u.completion_tokens);
    let e2el_us = micros(end - sent_at);
    let output_tokens = usage.unwrap_or(u64::from(output_len));
    plausible(output_tokens, reasoning, cached_tokens)?;
    Ok(Completed {
        ttft_us: e2el_us,
        ttfo_us: Some(e2el_us),
        e2el_us,
        output_tokens,
        reasoning_tokens: reasoning.unwrap_or(0).min(output_tokens),
        cached_tokens,
        chunks: 1,
        spread_tokens: output_tokens as f64,
        usage_present: usage.is_some(),
        endpoint: 0,
        sent_at,
        finish_reason: if traced {
            chunk_scan::finish_reason(&bytes)
        } else {
            None
        },
    })
}

/// The `error.message` of an OpenAI error body, else the body's first 300 characters.
pub(crate) fn error_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body)
        && let Some(m) = v.pointer("/error/message").and_then(Value::as_str)
    {
        return m.chars().take(300).collect();
    }
    String::from_utf8_lossy(body).chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_counting_ignores_the_usage_chunk() {
        let mut itl = Vec::new();
        let t0 = Instant::now();
        let mut st = StreamState::new(t0, &mut itl, false, None, false);
        st.on_event(
            b"",
            br#"{"choices":[{"text":"a"}]}"#,
            t0 + Duration::from_millis(5),
        );
        st.on_event(
            b"",
            br#"{"choices":[{"text":"b"}]}"#,
            t0 + Duration::from_millis(7),
        );
        st.on_event(
            b"",
            br#"{"choices":[],"usage":{"completion_tokens":2}}"#,
            t0 + Duration::from_millis(9),
        );
        st.on_event(b"", b"[DONE]", t0 + Duration::from_millis(9));
        assert!(st.done && st.failure.is_none());
        assert_eq!((st.choice_messages, st.usage_tokens), (2, Some(2)));
        assert_eq!(st.last, Some(t0 + Duration::from_millis(7)));
        let c = st.completed(0).expect("completed");
        assert_eq!((c.ttfo_us, c.chunks, c.spread_tokens), (Some(5000), 2, 1.0));
        assert_eq!(
            itl,
            vec![Gap {
                us: 2000,
                tokens: Gap::UNKNOWN
            }]
        );
    }

    /// Feeds `chunks` (data, ms after the send) to a chat stream and completes it.
    fn chat_stream(chunks: &[(&str, u64)], gaps: &mut Vec<Gap>) -> Completed {
        let t0 = Instant::now();
        let mut st = StreamState::new(t0, gaps, true, None, false);
        for (data, ms) in chunks {
            st.on_event(b"", data.as_bytes(), t0 + Duration::from_millis(*ms));
        }
        st.on_event(b"", b"[DONE]", t0 + Duration::from_millis(999));
        assert!(st.done && st.failure.is_none());
        st.completed(0).expect("completed")
    }

    #[test]
    fn reasoning_delays_the_first_output_token_and_is_counted() {
        let mut gaps = Vec::new();
        // vLLM with continuous usage: role chunk, 3 reasoning tokens in 2 chunks, then
        // the answer in chunks of 2 and 1; the final usage says 3 were reasoning.
        let c = chat_stream(
            &[
                (
                    r#"{"choices":[{"delta":{"role":"assistant","content":""}}],"usage":{"completion_tokens":0}}"#,
                    10,
                ),
                (
                    r#"{"choices":[{"delta":{"reasoning":" a b"}}],"usage":{"completion_tokens":2}}"#,
                    12,
                ),
                (
                    r#"{"choices":[{"delta":{"reasoning":" c"}}],"usage":{"completion_tokens":3}}"#,
                    14,
                ),
                (
                    r#"{"choices":[{"delta":{"content":" X Y"}}],"usage":{"completion_tokens":5}}"#,
                    20,
                ),
                (
                    r#"{"choices":[{"delta":{"content":" Z"}}],"usage":{"completion_tokens":6}}"#,
                    23,
                ),
                (
                    r#"{"choices":[],"usage":{"completion_tokens":6,"completion_tokens_details":{"reasoning_tokens":3}}}"#,
                    23,
                ),
            ],
            &mut gaps,
        );
        assert_eq!(
            (c.ttft_us, c.ttfo_us, c.e2el_us),
            (10_000, Some(20_000), 23_000)
        );
        assert_eq!((c.output_tokens, c.reasoning_tokens, c.chunks), (6, 3, 5));
        let tokens: Vec<u32> = gaps.iter().map(|g| g.tokens).collect();
        assert_eq!(tokens, [2, 1, 2, 1], "from the change in usage");
        let us: Vec<u32> = gaps.iter().map(|g| g.us).collect();
        assert_eq!(us, [2000, 2000, 6000, 3000]);

        // SGLang without usage details or continuous usage: reasoning counted from chunks,
        // each carrying the mean of the final usage.
        gaps.clear();
        let c = chat_stream(
            &[
                (
                    r#"{"choices":[{"delta":{"reasoning_content":"a b","content":null}}]}"#,
                    5,
                ),
                (r#"{"choices":[{"delta":{"reasoning_content":"c d"}}]}"#, 7),
                (
                    r#"{"choices":[{"delta":{"content":"X Y","reasoning_content":null}}]}"#,
                    9,
                ),
                (r#"{"choices":[],"usage":{"completion_tokens":6}}"#, 9),
            ],
            &mut gaps,
        );
        assert_eq!((c.ttft_us, c.ttfo_us), (5_000, Some(9_000)));
        assert_eq!((c.reasoning_tokens, c.spread_tokens), (4, 2.0));
        assert!(gaps.iter().all(|g| g.tokens == Gap::UNKNOWN));

        // Usage only on the last chunk with a choice (no continuous usage): no chunk's
        // tokens are known, and the final usage is still read for reasoning and cache.
        gaps.clear();
        let c = chat_stream(
            &[
                (r#"{"choices":[{"delta":{"content":"a b"}}]}"#, 5),
                (r#"{"choices":[{"delta":{"content":"c"}}]}"#, 7),
                (
                    r#"{"choices":[{"delta":{"content":"d e f"},"finish_reason":"stop"}],"usage":{"completion_tokens":600,"prompt_tokens_details":{"cached_tokens":32},"completion_tokens_details":{"reasoning_tokens":590}}}"#,
                    9,
                ),
            ],
            &mut gaps,
        );
        assert!(gaps.iter().all(|g| g.tokens == Gap::UNKNOWN), "{gaps:?}");
        assert_eq!((c.output_tokens, c.spread_tokens), (600, 200.0));
        assert_eq!(
            (c.cached_tokens, c.reasoning_tokens),
            (Some(32), 590),
            "hidden reasoning"
        );

        // A model that does not reason: TTFO = TTFT even after an empty role chunk.
        gaps.clear();
        let c = chat_stream(
            &[
                (
                    r#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#,
                    4,
                ),
                (r#"{"choices":[{"delta":{"content":"hi"}}]}"#, 6),
            ],
            &mut gaps,
        );
        assert_eq!(
            (c.ttft_us, c.ttfo_us, c.reasoning_tokens),
            (4_000, Some(4_000), 0)
        );

        // Out of tokens while still reasoning: no TTFO.
        gaps.clear();
        let c = chat_stream(
            &[(r#"{"choices":[{"delta":{"reasoning":"hmm"}}]}"#, 4)],
            &mut gaps,
        );
        assert_eq!((c.ttfo_us, c.reasoning_tokens), (None, 1));
    }

    #[test]
    fn error_events_are_classified() {
        let mut itl = Vec::new();
        let t0 = Instant::now();
        let mut st = StreamState::new(t0, &mut itl, false, None, false);
        st.on_event(b"", br#"{"error":{"message":"x","code":503}}"#, t0);
        assert_eq!(st.failure.map(|f| f.class), Some(ErrorClass::Http5xx));
    }
}

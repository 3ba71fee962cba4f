//! Reading a response: the SSE stream timed message by message (TTFT, ITL, E2EL, output
//! tokens from usage or counted; error events classified; first-byte and idle timeouts on
//! one timer), or a whole response timed as one (TTFT = E2EL).

use std::fmt;
use std::time::Duration;

use http_body_util::BodyExt;
use serde::Deserialize;
use serde::de::{IgnoredAny, SeqAccess, Visitor};
use serde_json::Value;
use tokio::time::Instant;

use super::chunk_scan::{self, FinishReason};
use super::openai::error_chain;
use super::options::Timeouts;
use crate::error::ErrorClass;
use crate::sse::SseParser;

/// A finished request's measurements. ITL samples are in the caller's scratch buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completed {
    pub ttft_us: u64,
    pub e2el_us: u64,
    /// `usage.completion_tokens`, else the number of choice messages.
    pub output_tokens: u64,
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
    itl_us: &'a mut Vec<u64>,
    /// Traced requests keep their last chunk with a choice, to read its finish reason
    /// once at the end (scanning every chunk for it cost more than the span).
    traced: bool,
    last_choice: Vec<u8>,
}

/// A duration in whole microseconds (saturating).
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl<'a> StreamState<'a> {
    fn new(sent_at: Instant, itl_us: &'a mut Vec<u64>, traced: bool) -> StreamState<'a> {
        StreamState {
            sent_at,
            first: None,
            last: None,
            choice_messages: 0,
            usage_tokens: None,
            done: false,
            failure: None,
            itl_us,
            traced,
            last_choice: Vec::new(),
        }
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
            self.on_chunk(c.has_choice, c.usage_tokens, now);
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
        self.keep_if_traced(chunk.choices.0 > 0, data);
        self.on_chunk(
            chunk.choices.0 > 0,
            chunk.usage.and_then(|u| u.completion_tokens),
            now,
        );
    }

    fn keep_if_traced(&mut self, has_choice: bool, data: &[u8]) {
        if self.traced && has_choice {
            self.last_choice.clear();
            self.last_choice.extend_from_slice(data);
        }
    }

    fn on_chunk(&mut self, has_choice: bool, usage_tokens: Option<u64>, now: Instant) {
        if has_choice {
            match self.last {
                None => self.first = Some(now),
                Some(prev) => self.itl_us.push(micros(now - prev)),
            }
            self.last = Some(now);
            self.choice_messages += 1;
        }
        if usage_tokens.is_some() {
            self.usage_tokens = usage_tokens;
        }
    }
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

/// Reads an SSE response to its `data: [DONE]`, timing every message.
pub(crate) async fn read_sse(
    mut body: hyper::body::Incoming,
    sent_at: Instant,
    timeouts: Timeouts,
    itl_us: &mut Vec<u64>,
    traced: bool,
) -> Result<Completed, Failed> {
    let first_byte_due = timeouts.first_byte.map(|t| sent_at + t);
    let mut parser = SseParser::new();
    let mut st = StreamState::new(sent_at, itl_us, traced);
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
    let (Some(first), Some(last)) = (st.first, st.last) else {
        return Err(Failed::new(
            ErrorClass::Malformed,
            "stream carried no choice",
        ));
    };
    Ok(Completed {
        ttft_us: micros(first - st.sent_at),
        e2el_us: micros(last - st.sent_at),
        output_tokens: st.usage_tokens.unwrap_or(st.choice_messages),
        usage_present: st.usage_tokens.is_some(),
        endpoint: 0,
        sent_at,
        finish_reason: if traced {
            chunk_scan::finish_reason(&st.last_choice)
        } else {
            None
        },
    })
}

/// Reads a whole (non-streaming) response: TTFT = E2EL = until its last byte.
pub(crate) async fn read_whole(
    body: hyper::body::Incoming,
    sent_at: Instant,
    output_len: u32,
    first_byte_due: Option<Instant>,
    traced: bool,
) -> Result<Completed, Failed> {
    let collect = body.collect();
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
        Failed::new(
            ErrorClass::classify(&e, ErrorClass::StreamReset),
            format!("response broke: {}", error_chain(&e)),
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
    let usage = whole.usage.and_then(|u| u.completion_tokens);
    let e2el_us = micros(end - sent_at);
    Ok(Completed {
        ttft_us: e2el_us,
        e2el_us,
        output_tokens: usage.unwrap_or(u64::from(output_len)),
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
        let mut st = StreamState::new(t0, &mut itl, false);
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
        assert_eq!(itl, vec![2000]);
    }

    #[test]
    fn error_events_are_classified() {
        let mut itl = Vec::new();
        let t0 = Instant::now();
        let mut st = StreamState::new(t0, &mut itl, false);
        st.on_event(b"", br#"{"error":{"message":"x","code":503}}"#, t0);
        assert_eq!(st.failure.map(|f| f.class), Some(ErrorClass::Http5xx));
    }
}

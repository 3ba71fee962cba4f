//! Reading the two facts the timing needs from an OpenAI streaming chunk — does it carry a
//! choice, and does it carry `usage.completion_tokens` — without parsing the whole JSON.
//! A full parse was a quarter of the worker's user-space CPU per token. The scan is exact
//! for what servers send (vLLM, SGLang, TRT-LLM, OpenAI): inside a JSON string every `"`
//! is escaped, so `"choices"` followed by `:` can only be a key. Whatever the scan is not
//! sure of (an `"error"` key, no `choices` key, anything unexpected) it leaves to the full
//! parser, which also decides what is malformed.

use std::sync::LazyLock;

use memchr::memmem::Finder;

/// What a chunk says, when the scan is sure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scanned {
    /// `choices` is a non-empty list.
    pub has_choice: bool,
    /// `usage.completion_tokens`, when a usage object is present.
    pub usage_tokens: Option<u64>,
}

static CHOICES: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"choices\""));
static USAGE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"usage\""));
static ERROR: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"error\""));
static COMPLETION: LazyLock<Finder<'static>> =
    LazyLock::new(|| Finder::new(b"\"completion_tokens\""));
static FINISH: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"finish_reason\""));

/// Why the model stopped (`choices[].finish_reason`), read only for traced requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
    Other,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::ContentFilter => "content_filter",
            FinishReason::Other => "other",
        }
    }
}

/// The first non-null `finish_reason` in `data` (a chunk or a whole response).
pub fn finish_reason(data: &[u8]) -> Option<FinishReason> {
    let mut from = 0;
    while let Some(v) = value_of(data, &FINISH, from) {
        if data.get(v) == Some(&b'"') {
            let rest = &data[v + 1..];
            let end = memchr::memchr(b'"', rest)?;
            return Some(match &rest[..end] {
                b"stop" | b"eos" => FinishReason::Stop,
                b"length" => FinishReason::Length,
                b"tool_calls" | b"function_call" => FinishReason::ToolCalls,
                b"content_filter" => FinishReason::ContentFilter,
                _ => FinishReason::Other,
            });
        }
        from = v;
    }
    None
}

fn skip_ws(b: &[u8], mut at: usize) -> usize {
    while at < b.len() && matches!(b[at], b' ' | b'\t' | b'\n' | b'\r') {
        at += 1;
    }
    at
}

/// Position just after `key:` (and whitespace) for the first occurrence of `key` that is a
/// key: an unescaped quote before it, a colon after it.
fn value_of(b: &[u8], key: &Finder<'_>, from: usize) -> Option<usize> {
    let mut start = from;
    while let Some(k) = key.find(&b[start..]) {
        let at = start + k;
        let end = at + key.needle().len();
        let escaped = at > 0 && b[at - 1] == b'\\';
        let colon = skip_ws(b, end);
        if !escaped && b.get(colon) == Some(&b':') {
            return Some(skip_ws(b, colon + 1));
        }
        start = end;
    }
    None
}

/// Scans one chunk; None means "parse it fully".
pub fn scan(data: &[u8]) -> Option<Scanned> {
    let first = skip_ws(data, 0);
    let last = data.iter().rposition(|c| !c.is_ascii_whitespace())?;
    if data.get(first) != Some(&b'{') || data[last] != b'}' || ERROR.find(data).is_some() {
        return None;
    }
    let v = value_of(data, &CHOICES, first)?;
    let has_choice = match data.get(v)? {
        b'[' => *data.get(skip_ws(data, v + 1))? != b']',
        b'n' if data[v..].starts_with(b"null") => false,
        _ => return None,
    };
    let usage_tokens = match value_of(data, &USAGE, first) {
        None => None,
        Some(u) => match data.get(u)? {
            b'n' if data[u..].starts_with(b"null") => None,
            b'{' => {
                let n = value_of(data, &COMPLETION, u)?;
                let digits = data[n..].iter().take_while(|c| c.is_ascii_digit()).count();
                if digits == 0 || digits > 19 {
                    return None;
                }
                Some(
                    std::str::from_utf8(&data[n..n + digits])
                        .ok()?
                        .parse()
                        .ok()?,
                )
            }
            _ => return None,
        },
    };
    Some(Scanned {
        has_choice,
        usage_tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finish_reasons_are_read_from_chunks_and_whole_responses() {
        let last = br#"{"choices":[{"index":0,"text":"x","finish_reason":"length"}]}"#;
        assert_eq!(finish_reason(last), Some(FinishReason::Length));
        let mid = br#"{"choices":[{"index":0,"delta":{"content":"\"finish_reason\": \"stop\""},"finish_reason":null}]}"#;
        assert_eq!(finish_reason(mid), None);
        let whole =
            br#"{"choices":[{"message":{"content":"hi"},"finish_reason" : "stop"}],"usage":{}}"#;
        assert_eq!(finish_reason(whole), Some(FinishReason::Stop));
        let odd = br#"{"choices":[{"finish_reason":"abort"}]}"#;
        assert_eq!(finish_reason(odd), Some(FinishReason::Other));
    }
    use proptest::prelude::*;

    /// What a full parse says (the reference).
    fn parsed(data: &[u8]) -> Option<Scanned> {
        let v: serde_json::Value = serde_json::from_slice(data).ok()?;
        Some(Scanned {
            has_choice: v["choices"].as_array().is_some_and(|a| !a.is_empty()),
            usage_tokens: v["usage"]["completion_tokens"].as_u64(),
        })
    }

    #[test]
    fn reads_what_servers_send() {
        let cases: [(&[u8], Option<Scanned>); 8] = [
            (
                br#"{"id":"c","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":" the","logprobs":null,"finish_reason":null}]}"#,
                Some(Scanned { has_choice: true, usage_tokens: None }),
            ),
            (
                br#"{"id":"c","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":17,"total_tokens":20}}"#,
                Some(Scanned { has_choice: false, usage_tokens: Some(17) }),
            ),
            // Python's json.dumps spacing
            (
                br#"{"id": "c", "choices": [ ], "usage": {"completion_tokens": 5}}"#,
                Some(Scanned { has_choice: false, usage_tokens: Some(5) }),
            ),
            (
                br#"{"choices":[{"delta":{"content":"\"choices\": [] \"usage\": {}"}}],"usage":null}"#,
                Some(Scanned { has_choice: true, usage_tokens: None }),
            ),
            // content equal to a key name is a value, not a key
            (
                br#"{"x":"choices","choices":[{"delta":{"reasoning_content":"usage"}}]}"#,
                Some(Scanned { has_choice: true, usage_tokens: None }),
            ),
            (br#"{"error":{"message":"x","code":500}}"#, None),
            (br#"{"id":"broken","choices":[{"text":"#, None),
            (br#"{"id":"no choices"}"#, None),
        ];
        for (data, want) in cases {
            assert_eq!(scan(data), want, "{}", String::from_utf8_lossy(data));
            if want.is_some() {
                assert_eq!(parsed(data), want, "the reference agrees");
            }
        }
    }

    proptest! {
        /// Whenever the scan answers, it answers what a full parse says.
        #[test]
        fn agrees_with_a_full_parse(
            text in "[ -~]{0,40}",
            n_choices in 0usize..3,
            usage in proptest::option::of(0u64..100_000),
            spaced in any::<bool>(),
            reasoning in any::<bool>(),
        ) {
            let field = if reasoning { "reasoning_content" } else { "content" };
            let choice = serde_json::json!({"index": 0, "delta": {field: text}, "finish_reason": null});
            let mut v = serde_json::json!({
                "id": "chatcmpl-1", "object": "chat.completion.chunk", "model": text,
                "choices": vec![choice; n_choices],
            });
            if let Some(u) = usage {
                v["usage"] = serde_json::json!({"prompt_tokens": 1, "completion_tokens": u});
            }
            let data = if spaced {
                serde_json::to_string_pretty(&v).expect("json")
            } else {
                v.to_string()
            };
            let got = scan(data.as_bytes());
            prop_assert!(got.is_some(), "{}", data);
            prop_assert_eq!(got, parsed(data.as_bytes()));
        }

        /// Arbitrary bytes never panic the scan.
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = scan(&data);
        }
    }
}

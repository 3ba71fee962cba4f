//! Reading the facts the timing needs from an OpenAI streaming chunk — does it carry a
//! choice, does it carry `usage.completion_tokens`, and (chat, until the answer starts) is
//! its delta reasoning or answer — without parsing the whole JSON.
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
static CONTENT: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"content\""));
static TOOL_CALLS: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"tool_calls\""));
static REASONING: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"reasoning\""));
static REASONING_CONTENT: LazyLock<Finder<'static>> =
    LazyLock::new(|| Finder::new(b"\"reasoning_content\""));
static REASONING_TOKENS: LazyLock<Finder<'static>> =
    LazyLock::new(|| Finder::new(b"\"reasoning_tokens\""));
static CACHED_TOKENS: LazyLock<Finder<'static>> =
    LazyLock::new(|| Finder::new(b"\"cached_tokens\""));

/// What a chat chunk's delta carries: reasoning (`reasoning`, vLLM's name, or
/// `reasoning_content`, SGLang's, TRT-LLM's and DeepSeek's), an answer (non-empty
/// `content`, or `tool_calls`), both, or neither (a role-only or empty delta).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delta {
    pub reasoning: bool,
    pub answer: bool,
}

/// Is `key`'s value a non-empty string?
fn non_empty_string(data: &[u8], key: &Finder<'_>) -> bool {
    value_of(data, key, 0)
        .is_some_and(|v| data.get(v) == Some(&b'"') && data.get(v + 1).is_some_and(|&c| c != b'"'))
}

/// Reads a chat chunk's delta (called only until a stream's answer starts). Once the
/// stream has `reasoned`, a chunk that is not an answer is taken as more reasoning
/// without searching for the reasoning keys.
pub fn delta(data: &[u8], reasoned: bool) -> Delta {
    let answer = non_empty_string(data, &CONTENT)
        || value_of(data, &TOOL_CALLS, 0).is_some_and(|v| {
            data.get(v) == Some(&b'[') && data.get(skip_ws(data, v + 1)).is_some_and(|&c| c != b']')
        });
    let reasoning = if reasoned {
        !answer
    } else {
        non_empty_string(data, &REASONING) || non_empty_string(data, &REASONING_CONTENT)
    };
    Delta { reasoning, answer }
}

static TEXT: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"text\""));

/// The generated text a chunk carries (`text`, or a delta's `reasoning`,
/// `reasoning_content` and `content`), each string value passed to `f` as it stands in
/// the JSON (escapes and all).
pub fn texts(data: &[u8], mut f: impl FnMut(&[u8])) {
    for key in [&TEXT, &REASONING, &REASONING_CONTENT, &CONTENT] {
        let Some(v) = value_of(data, key, 0) else {
            continue;
        };
        if data.get(v) != Some(&b'"') {
            continue;
        }
        // The closing quote: the first one not escaped (an odd run of backslashes).
        let mut at = v + 1;
        while let Some(q) = memchr::memchr(b'"', &data[at..]) {
            let end = at + q;
            let slashes = data[v + 1..end]
                .iter()
                .rev()
                .take_while(|&&c| c == b'\\')
                .count();
            if slashes % 2 == 0 {
                f(&data[v + 1..end]);
                break;
            }
            at = end + 1;
        }
    }
}

/// The usage's reasoning tokens (`completion_tokens_details.reasoning_tokens`, vLLM and
/// OpenAI; SGLang puts `reasoning_tokens` in `usage` itself), when the chunk says.
pub fn reasoning_tokens(data: &[u8]) -> Option<u64> {
    number_of(data, &REASONING_TOKENS)
}

/// The usage's prompt tokens served from the prefix cache
/// (`prompt_tokens_details.cached_tokens`), when the chunk says.
pub fn cached_tokens(data: &[u8]) -> Option<u64> {
    number_of(data, &CACHED_TOKENS)
}

/// The unsigned integer value of `key`, if it is one.
fn number_of(data: &[u8], key: &Finder<'_>) -> Option<u64> {
    unsigned(&data[value_of(data, key, 0)?..])
}

/// The unsigned integer `b` starts with (at most 19 digits, so it cannot overflow).
fn unsigned(b: &[u8]) -> Option<u64> {
    let digits = b.iter().take(20).take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || digits > 19 {
        return None;
    }
    Some(
        b[..digits]
            .iter()
            .fold(0u64, |n, d| n * 10 + u64::from(d - b'0')),
    )
}

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
            b'{' => Some(unsigned(&data[value_of(data, &COMPLETION, u)?..])?),
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
    #[test]
    fn deltas_tell_reasoning_from_answers() {
        let d = |s: &[u8]| delta(s, false);
        let no = Delta::default();
        let thinking = Delta {
            reasoning: true,
            answer: false,
        };
        let answer = Delta {
            reasoning: false,
            answer: true,
        };
        // vLLM's first chat chunk: role and empty content.
        assert_eq!(
            d(br#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#),
            no
        );
        assert_eq!(
            d(br#"{"choices":[{"delta":{"reasoning":" so","content":null}}]}"#),
            thinking
        );
        assert_eq!(
            d(br#"{"choices":[{"delta":{"reasoning_content":"hm"}}]}"#),
            thinking
        );
        assert_eq!(
            d(br#"{"choices":[{"delta":{"content":" Yes","reasoning_content":null}}]}"#),
            answer
        );
        assert_eq!(
            d(br#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"name":"f"}}]}}]}"#),
            answer
        );
        assert_eq!(d(br#"{"choices":[{"delta":{"tool_calls":[]}}]}"#), no);
        // Key names inside text are text.
        assert_eq!(
            d(br#"{"choices":[{"delta":{"reasoning":"\"content\": \"x\""}}]}"#),
            thinking
        );
        assert_eq!(
            d(br#"{"choices":[{"delta":{"reasoning":"a","content":"b"}}]}"#),
            Delta {
                reasoning: true,
                answer: true
            }
        );
    }

    #[test]
    fn texts_are_found_with_their_escapes() {
        let mut got = Vec::new();
        texts(
            br#"{"choices":[{"delta":{"reasoning":"a \"b\\","content":" c"}}],"text":null}"#,
            |t| got.push(String::from_utf8_lossy(t).into_owned()),
        );
        assert_eq!(got, [r#"a \"b\\"#, " c"]);
    }

    #[test]
    fn after_reasoning_what_is_not_an_answer_is_reasoning() {
        let more = br#"{"choices":[{"delta":{"reasoning":" hm"}}]}"#;
        assert!(delta(more, true).reasoning && !delta(more, true).answer);
        let answer = br#"{"choices":[{"delta":{"content":" A"}}]}"#;
        assert!(delta(answer, true).answer && !delta(answer, true).reasoning);
    }

    #[test]
    fn reasoning_tokens_are_read_from_usage() {
        let vllm = br#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":9,"completion_tokens_details":{"reasoning_tokens":4}}}"#;
        assert_eq!(reasoning_tokens(vllm), Some(4));
        let sglang = br#"{"choices":[],"usage":{"completion_tokens":9,"reasoning_tokens": 5}}"#;
        assert_eq!(reasoning_tokens(sglang), Some(5));
        assert_eq!(
            reasoning_tokens(br#"{"choices":[],"usage":{"completion_tokens":9}}"#),
            None
        );
        let cached = br#"{"choices":[],"usage":{"prompt_tokens":90,"prompt_tokens_details":{"cached_tokens":64}}}"#;
        assert_eq!(cached_tokens(cached), Some(64));
        assert_eq!(cached_tokens(vllm), None);
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

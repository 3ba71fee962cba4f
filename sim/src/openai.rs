//! The OpenAI request fields the sim honours, and the bytes of its responses, shaped like
//! vLLM's (chunk fields, usage chunk with empty choices, `data: [DONE]`; reasoning deltas
//! as vLLM's `reasoning` (SGLang and TRT-LLM say `reasoning_content`), usage on every chunk when `continuous_usage_stats` is asked).
//! Prompt tokens are counted as a server counts them: with a tokenizer when the sim has
//! one, else estimated from the text's bytes, never as whitespace-separated words.

use std::sync::Arc;

use serde_json::Value;

/// Counts the tokens of prompt text: the sim's tokenizer when it has one, else
/// ⌈bytes / 4⌉ (OpenAI's rule of thumb for English text).
#[derive(Clone, Default)]
pub struct PromptCounter(Option<Arc<CountFn>>);

/// A tokenizer's count of a text.
type CountFn = dyn Fn(&str) -> u32 + Send + Sync;

impl std::fmt::Debug for PromptCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "PromptCounter(tokenizer)"
        } else {
            "PromptCounter(bytes / 4)"
        })
    }
}

impl PromptCounter {
    /// Counts with `count` (a tokenizer's encode, special tokens left out).
    pub fn with(count: impl Fn(&str) -> u32 + Send + Sync + 'static) -> PromptCounter {
        PromptCounter(Some(Arc::new(count)))
    }

    pub fn count(&self, text: &str) -> u32 {
        match &self.0 {
            Some(f) => f(text),
            None => u32::try_from(text.len().div_ceil(4)).unwrap_or(u32::MAX),
        }
    }
}

/// Which OpenAI API a request came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    Completions,
    Chat,
}

/// A parsed generation request.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct GenRequest {
    pub api: Api,
    pub model: String,
    pub prompt_tokens: u32,
    pub max_tokens: u32,
    pub ignore_eos: bool,
    pub stream: bool,
    pub include_usage: bool,
    /// `stream_options.continuous_usage_stats`: usage (so far) on every chunk, as vLLM.
    pub continuous_usage: bool,
}

/// Default `max_tokens` when a request gives none (OpenAI's default for completions).
pub(crate) const DEFAULT_MAX_TOKENS_COMPLETIONS: u32 = 16;
/// Default for chat, where OpenAI means "until the context is full".
pub(crate) const DEFAULT_MAX_TOKENS_CHAT: u32 = 1024;

/// Counts prompt tokens: token-id arrays by length, text with `counter`.
fn count_prompt(v: &Value, counter: &PromptCounter) -> Result<u32, String> {
    let n = match v {
        Value::String(s) => counter.count(s) as usize,
        Value::Array(items) if items.iter().all(Value::is_u64) => items.len(),
        Value::Array(items) => {
            let mut n = 0;
            for it in items {
                n += count_prompt(it, counter)? as usize;
            }
            n
        }
        _ => {
            return Err("prompt must be a string, a list of strings or a list of token ids".into());
        }
    };
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

fn count_messages(v: &Value, counter: &PromptCounter) -> Result<u32, String> {
    let msgs = v.as_array().ok_or("messages must be a list")?;
    let mut n: u32 = 0;
    for (k, m) in msgs.iter().enumerate() {
        let content = m
            .get("content")
            .ok_or_else(|| format!("messages[{k}] has no content"))?;
        let tokens = match content {
            Value::String(s) => counter.count(s),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .map(|t| counter.count(t))
                .fold(0u32, u32::saturating_add),
            Value::Null => 0,
            _ => return Err(format!("messages[{k}].content must be a string or a list")),
        };
        n = n.saturating_add(tokens);
    }
    Ok(n)
}

fn get_u32(body: &Value, key: &str) -> Result<Option<u32>, String> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| format!("{key} must be a non-negative integer")),
    }
}

impl GenRequest {
    /// Parses a request body, counting its prompt with `counter`; the error is the
    /// message of a 400 response.
    pub fn parse(api: Api, body: &[u8], counter: &PromptCounter) -> Result<GenRequest, String> {
        let body: Value =
            serde_json::from_slice(body).map_err(|e| format!("request body is not JSON: {e}"))?;
        if !body.is_object() {
            return Err("request body must be a JSON object".into());
        }
        let model = body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let prompt_tokens = match api {
            Api::Completions => {
                count_prompt(body.get("prompt").ok_or("missing field: prompt")?, counter)?
            }
            Api::Chat => count_messages(
                body.get("messages").ok_or("missing field: messages")?,
                counter,
            )?,
        };
        let max_tokens = match (
            get_u32(&body, "max_completion_tokens")?,
            get_u32(&body, "max_tokens")?,
        ) {
            (Some(n), _) | (None, Some(n)) => n,
            (None, None) => match api {
                Api::Completions => DEFAULT_MAX_TOKENS_COMPLETIONS,
                Api::Chat => DEFAULT_MAX_TOKENS_CHAT,
            },
        };
        if max_tokens == 0 {
            return Err("max_tokens must be at least 1".into());
        }
        let flag = |v: Option<&Value>| v.and_then(Value::as_bool).unwrap_or(false);
        Ok(GenRequest {
            api,
            model,
            prompt_tokens,
            max_tokens,
            ignore_eos: flag(body.get("ignore_eos")),
            stream: flag(body.get("stream")),
            include_usage: flag(body.pointer("/stream_options/include_usage")),
            continuous_usage: flag(body.pointer("/stream_options/continuous_usage_stats")),
        })
    }
}

/// Words the sim "generates", one token each.
const WORDS: &[&str] = &[" the", " of", " and", " to", " in", " is", " that", " for"];

pub(crate) fn token_text(k: u32) -> &'static str {
    WORDS[k as usize % WORDS.len()]
}

/// Builds the SSE events of one response. Strings are formatted, not serialized, on this
/// path: every interpolated value is a number or a pre-escaped JSON string.
pub(crate) struct ChunkWriter {
    api: Api,
    id: String,
    created: u64,
    /// The model name as a JSON string literal, quotes included.
    model_json: String,
}

impl ChunkWriter {
    pub fn new(api: Api, id: u64, created: u64, model: &str) -> ChunkWriter {
        let prefix = match api {
            Api::Completions => "cmpl",
            Api::Chat => "chatcmpl",
        };
        ChunkWriter {
            api,
            id: format!("{prefix}-{id:016x}"),
            created,
            model_json: Value::String(model.to_owned()).to_string(),
        }
    }

    fn head(&self, object: &str) -> String {
        format!(
            r#"{{"id":"{}","object":"{object}","created":{},"model":{}"#,
            self.id, self.created, self.model_json
        )
    }

    /// The SSE event of token `k`; `finish` is set on the last one.
    pub(crate) fn token_event(&self, k: u32, first: bool, finish: Option<&str>) -> String {
        self.event(&Piece {
            k,
            count: 1,
            first,
            finish,
            reasoning: false,
            usage: None,
        })
    }

    /// One SSE event carrying tokens `k..k + count` (a stream interval, or the tokens a
    /// speculative-decoding step accepted).
    pub(crate) fn event(&self, p: &Piece<'_>) -> String {
        let finish = p.finish.map_or("null".to_owned(), |f| format!("\"{f}\""));
        let text: String = (p.k..p.k + p.count.max(1)).map(token_text).collect();
        let usage = p.usage.map_or(String::new(), |(prompt, completion)| {
            format!(",\"usage\":{}", usage_json(prompt, completion, 0))
        });
        match self.api {
            Api::Completions => format!(
                "data: {},\"choices\":[{{\"index\":0,\"text\":\"{text}\",\"logprobs\":null,\"finish_reason\":{finish},\"stop_reason\":null}}]{usage}}}\n\n",
                self.head("text_completion")
            ),
            Api::Chat => {
                let role = if p.first {
                    "\"role\":\"assistant\","
                } else {
                    ""
                };
                let field = if p.reasoning { "reasoning" } else { "content" };
                format!(
                    "data: {},\"choices\":[{{\"index\":0,\"delta\":{{{role}\"{field}\":\"{text}\"}},\"logprobs\":null,\"finish_reason\":{finish}}}]{usage}}}\n\n",
                    self.head("chat.completion.chunk")
                )
            }
        }
    }

    /// The final usage chunk; `reasoning` of the completion tokens were reasoning.
    pub(crate) fn usage_event(&self, prompt: u32, completion: u32, reasoning: u32) -> String {
        let object = match self.api {
            Api::Completions => "text_completion",
            Api::Chat => "chat.completion.chunk",
        };
        format!(
            "data: {},\"choices\":[],\"usage\":{}}}\n\n",
            self.head(object),
            usage_json(prompt, completion, reasoning)
        )
    }

    /// A whole non-streaming response body.
    pub(crate) fn full_response(
        &self,
        prompt: u32,
        completion: u32,
        reasoning: u32,
        finish: &str,
    ) -> String {
        let reasoning = reasoning.min(completion);
        let text: String = (reasoning..completion).map(token_text).collect();
        let text = Value::String(text).to_string();
        let thought = match (self.api, reasoning) {
            (Api::Chat, 1..) => format!(
                ",\"reasoning\":{}",
                Value::String((0..reasoning).map(token_text).collect())
            ),
            _ => String::new(),
        };
        match self.api {
            Api::Completions => format!(
                "{},\"choices\":[{{\"index\":0,\"text\":{text},\"logprobs\":null,\"finish_reason\":\"{finish}\"}}],\"usage\":{}}}",
                self.head("text_completion"),
                usage_json(prompt, completion, 0)
            ),
            Api::Chat => format!(
                "{},\"choices\":[{{\"index\":0,\"message\":{{\"role\":\"assistant\",\"content\":{text}{thought}}},\"logprobs\":null,\"finish_reason\":\"{finish}\"}}],\"usage\":{}}}",
                self.head("chat.completion"),
                usage_json(prompt, completion, reasoning)
            ),
        }
    }
}

/// A usage object; `reasoning` > 0 adds `completion_tokens_details.reasoning_tokens`.
fn usage_json(prompt: u32, completion: u32, reasoning: u32) -> String {
    let details = if reasoning > 0 {
        format!(r#","completion_tokens_details":{{"reasoning_tokens":{reasoning}}}"#)
    } else {
        String::new()
    };
    format!(
        r#"{{"prompt_tokens":{prompt},"completion_tokens":{completion},"total_tokens":{}{details}}}"#,
        u64::from(prompt) + u64::from(completion)
    )
}

/// What one SSE event of a streamed answer carries: tokens `k..k + count`, whether it is
/// the first event (chat sends the role then) or the last (`finish`), whether its tokens
/// are reasoning (chat only), and usage so far (prompt, completion) when asked for.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Piece<'a> {
    pub k: u32,
    pub count: u32,
    pub first: bool,
    pub finish: Option<&'a str>,
    pub reasoning: bool,
    pub usage: Option<(u32, u32)>,
}

pub(crate) const DONE_EVENT: &str = "data: [DONE]\n\n";

/// An OpenAI-style error body.
pub(crate) fn error_body(message: &str, kind: &str, code: u16) -> String {
    serde_json::json!({
        "error": {"message": message, "type": kind, "param": null, "code": code}
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_fields_it_honours() {
        let body = br#"{"model":"m","prompt":"a b c","max_tokens":7,"ignore_eos":true,
            "stream":true,"stream_options":{"include_usage":true,"continuous_usage_stats":true}}"#;
        let bytes = PromptCounter::default();
        let r = GenRequest::parse(Api::Completions, body, &bytes).expect("valid");
        assert_eq!((r.prompt_tokens, r.max_tokens), (2, 7), "⌈5 bytes / 4⌉");
        assert!(r.ignore_eos && r.stream && r.include_usage && r.continuous_usage);
        let chat = br#"{"model":"m","messages":[{"role":"user","content":"x y"}],
            "max_completion_tokens":5,"max_tokens":9}"#;
        let words = PromptCounter::with(|t| t.split_whitespace().count() as u32);
        let r = GenRequest::parse(Api::Chat, chat, &words).expect("valid");
        assert_eq!((r.prompt_tokens, r.max_tokens), (2, 5));
        assert!(!r.continuous_usage);
        let ids = br#"{"prompt":[1,2,3,4]}"#;
        assert_eq!(
            GenRequest::parse(Api::Completions, ids, &bytes).map(|r| r.prompt_tokens),
            Ok(4)
        );
    }

    #[test]
    fn bad_bodies_get_messages() {
        let c = PromptCounter::default();
        assert!(GenRequest::parse(Api::Completions, b"{", &c).is_err());
        assert!(GenRequest::parse(Api::Completions, br#"{"model":"m"}"#, &c).is_err());
        let negative = br#"{"prompt":"a","max_tokens":-1}"#;
        assert!(GenRequest::parse(Api::Completions, negative, &c).is_err());
    }

    #[test]
    fn events_are_valid_json() {
        for api in [Api::Completions, Api::Chat] {
            let w = ChunkWriter::new(api, 1, 2, "model \"q\"");
            for ev in [
                w.token_event(0, true, None),
                w.token_event(1, false, Some("length")),
                w.usage_event(3, 2, 1),
                w.event(&Piece {
                    k: 2,
                    count: 3,
                    first: false,
                    finish: None,
                    reasoning: true,
                    usage: Some((3, 5)),
                }),
            ] {
                let json = ev
                    .strip_prefix("data: ")
                    .and_then(|s| s.strip_suffix("\n\n"))
                    .expect("framed");
                let v: Value = serde_json::from_str(json).expect("json");
                assert_eq!(v["model"], "model \"q\"");
            }
            let full: Value =
                serde_json::from_str(&w.full_response(3, 2, 1, "length")).expect("json");
            assert_eq!(full["usage"]["completion_tokens"], 2);
            let details = &full["usage"]["completion_tokens_details"]["reasoning_tokens"];
            match api {
                Api::Chat => {
                    assert_eq!(details, 1);
                    assert_eq!(full["choices"][0]["message"]["reasoning"], " the");
                }
                Api::Completions => assert!(details.is_null(), "completions do not reason"),
            }
        }
    }
}

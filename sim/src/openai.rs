//! The OpenAI request fields the sim honours, and the bytes of its responses, shaped like
//! vLLM's (chunk fields, usage chunk with empty choices, `data: [DONE]`).

use serde_json::Value;

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
}

/// Default `max_tokens` when a request gives none (OpenAI's default for completions).
pub(crate) const DEFAULT_MAX_TOKENS_COMPLETIONS: u32 = 16;
/// Default for chat, where OpenAI means "until the context is full".
pub(crate) const DEFAULT_MAX_TOKENS_CHAT: u32 = 1024;

/// Counts prompt tokens: token-id arrays by length, text by whitespace-separated words.
fn count_prompt(v: &Value) -> Result<u32, String> {
    let n = match v {
        Value::String(s) => s.split_whitespace().count(),
        Value::Array(items) if items.iter().all(Value::is_u64) => items.len(),
        Value::Array(items) => {
            let mut n = 0;
            for it in items {
                n += count_prompt(it)? as usize;
            }
            n
        }
        _ => {
            return Err("prompt must be a string, a list of strings or a list of token ids".into());
        }
    };
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

fn count_messages(v: &Value) -> Result<u32, String> {
    let msgs = v.as_array().ok_or("messages must be a list")?;
    let mut n: u32 = 0;
    for (k, m) in msgs.iter().enumerate() {
        let content = m
            .get("content")
            .ok_or_else(|| format!("messages[{k}] has no content"))?;
        let words = match content {
            Value::String(s) => s.split_whitespace().count(),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .map(|t| t.split_whitespace().count())
                .sum(),
            Value::Null => 0,
            _ => return Err(format!("messages[{k}].content must be a string or a list")),
        };
        n = n.saturating_add(u32::try_from(words).unwrap_or(u32::MAX));
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
    /// Parses a request body; the error is the message of a 400 response.
    pub fn parse(api: Api, body: &[u8]) -> Result<GenRequest, String> {
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
            Api::Completions => count_prompt(body.get("prompt").ok_or("missing field: prompt")?)?,
            Api::Chat => count_messages(body.get("messages").ok_or("missing field: messages")?)?,
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
        self.tokens_event(k, 1, first, finish)
    }

    /// One SSE event carrying tokens `k..k + count` (a stream interval of `count`).
    pub(crate) fn tokens_event(
        &self,
        k: u32,
        count: u32,
        first: bool,
        finish: Option<&str>,
    ) -> String {
        let finish = finish.map_or("null".to_owned(), |f| format!("\"{f}\""));
        let text: String = (k..k + count.max(1)).map(token_text).collect();
        match self.api {
            Api::Completions => format!(
                "data: {},\"choices\":[{{\"index\":0,\"text\":\"{text}\",\"logprobs\":null,\"finish_reason\":{finish},\"stop_reason\":null}}]}}\n\n",
                self.head("text_completion")
            ),
            Api::Chat => {
                let role = if first { "\"role\":\"assistant\"," } else { "" };
                format!(
                    "data: {},\"choices\":[{{\"index\":0,\"delta\":{{{role}\"content\":\"{text}\"}},\"logprobs\":null,\"finish_reason\":{finish}}}]}}\n\n",
                    self.head("chat.completion.chunk")
                )
            }
        }
    }

    pub(crate) fn usage_event(&self, prompt: u32, completion: u32) -> String {
        let object = match self.api {
            Api::Completions => "text_completion",
            Api::Chat => "chat.completion.chunk",
        };
        format!(
            "data: {},\"choices\":[],\"usage\":{}}}\n\n",
            self.head(object),
            usage_json(prompt, completion)
        )
    }

    /// A whole non-streaming response body.
    pub(crate) fn full_response(&self, prompt: u32, completion: u32, finish: &str) -> String {
        let text: String = (0..completion).map(token_text).collect();
        let text = Value::String(text).to_string();
        match self.api {
            Api::Completions => format!(
                "{},\"choices\":[{{\"index\":0,\"text\":{text},\"logprobs\":null,\"finish_reason\":\"{finish}\"}}],\"usage\":{}}}",
                self.head("text_completion"),
                usage_json(prompt, completion)
            ),
            Api::Chat => format!(
                "{},\"choices\":[{{\"index\":0,\"message\":{{\"role\":\"assistant\",\"content\":{text}}},\"logprobs\":null,\"finish_reason\":\"{finish}\"}}],\"usage\":{}}}",
                self.head("chat.completion"),
                usage_json(prompt, completion)
            ),
        }
    }
}

fn usage_json(prompt: u32, completion: u32) -> String {
    format!(
        r#"{{"prompt_tokens":{prompt},"completion_tokens":{completion},"total_tokens":{}}}"#,
        u64::from(prompt) + u64::from(completion)
    )
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
            "stream":true,"stream_options":{"include_usage":true}}"#;
        let r = GenRequest::parse(Api::Completions, body).expect("valid");
        assert_eq!((r.prompt_tokens, r.max_tokens), (3, 7));
        assert!(r.ignore_eos && r.stream && r.include_usage);
        let chat = br#"{"model":"m","messages":[{"role":"user","content":"x y"}],
            "max_completion_tokens":5,"max_tokens":9}"#;
        let r = GenRequest::parse(Api::Chat, chat).expect("valid");
        assert_eq!((r.prompt_tokens, r.max_tokens), (2, 5));
        let ids = br#"{"prompt":[1,2,3,4]}"#;
        assert_eq!(
            GenRequest::parse(Api::Completions, ids).map(|r| r.prompt_tokens),
            Ok(4)
        );
    }

    #[test]
    fn bad_bodies_get_messages() {
        assert!(GenRequest::parse(Api::Completions, b"{").is_err());
        assert!(GenRequest::parse(Api::Completions, br#"{"model":"m"}"#).is_err());
        assert!(GenRequest::parse(Api::Completions, br#"{"prompt":"a","max_tokens":-1}"#).is_err());
    }

    #[test]
    fn events_are_valid_json() {
        for api in [Api::Completions, Api::Chat] {
            let w = ChunkWriter::new(api, 1, 2, "model \"q\"");
            for ev in [
                w.token_event(0, true, None),
                w.token_event(1, false, Some("length")),
                w.usage_event(3, 2),
            ] {
                let json = ev
                    .strip_prefix("data: ")
                    .and_then(|s| s.strip_suffix("\n\n"))
                    .expect("framed");
                let v: Value = serde_json::from_str(json).expect("json");
                assert_eq!(v["model"], "model \"q\"");
            }
            let full: Value = serde_json::from_str(&w.full_response(3, 2, "length")).expect("json");
            assert_eq!(full["usage"]["completion_tokens"], 2);
        }
    }
}

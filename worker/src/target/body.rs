//! Request bodies: `/v1/completions` and `/v1/chat/completions` JSON for a request of the
//! stream, its output length forced (`max_tokens`, `ignore_eos`, optionally `min_tokens`),
//! usage asked for in streams (on every chunk too, unless turned off), and the run's extra keys merged last (they win).

use rackload_workloads::RequestSpec;
use rackload_workloads::prompt::Prompt;
use serde_json::{Map, Value};

use super::options::Api;

/// What every request body carries besides the prompt and its length.
#[derive(Debug, Clone)]
pub(crate) struct BodyOptions {
    pub api: Api,
    pub stream: bool,
    pub ignore_eos: bool,
    pub min_tokens: bool,
    /// Ask for usage on every chunk (`continuous_usage_stats`): tokens per chunk.
    pub continuous_usage: bool,
    pub extra: Map<String, Value>,
}

impl BodyOptions {
    /// The JSON body of request `req` with `prompt`.
    pub fn json(&self, model: &str, req: &RequestSpec, prompt: &Prompt) -> Vec<u8> {
        let mut obj = Map::new();
        obj.insert("model".into(), Value::String(model.to_owned()));
        match (self.api, prompt) {
            (Api::Completions, _) => {
                obj.insert("prompt".into(), prompt.as_json());
                obj.insert("max_tokens".into(), req.output_len.into());
            }
            (Api::Chat, Prompt::Text(text)) => {
                obj.insert(
                    "messages".into(),
                    serde_json::json!([{"role": "user", "content": text}]),
                );
                obj.insert("max_completion_tokens".into(), req.output_len.into());
            }
            // Chat takes text only; the spec check refuses token ids with chat, so this
            // is a last resort that still sends the right number of "words".
            (Api::Chat, Prompt::TokenIds(ids)) => {
                let text: String = ids.iter().map(|i| format!(" t{i}")).collect();
                obj.insert(
                    "messages".into(),
                    serde_json::json!([{"role": "user", "content": text}]),
                );
                obj.insert("max_completion_tokens".into(), req.output_len.into());
            }
        }
        obj.insert("temperature".into(), 0.into());
        obj.insert("stream".into(), self.stream.into());
        if self.stream {
            let options = if self.continuous_usage {
                serde_json::json!({"include_usage": true, "continuous_usage_stats": true})
            } else {
                serde_json::json!({"include_usage": true})
            };
            obj.insert("stream_options".into(), options);
        }
        if self.ignore_eos {
            obj.insert("ignore_eos".into(), true.into());
        }
        if self.min_tokens {
            obj.insert("min_tokens".into(), req.output_len.into());
        }
        for (k, v) in &self.extra {
            obj.insert(k.clone(), v.clone());
        }
        serde_json::to_vec(&obj).unwrap_or_default()
    }
}

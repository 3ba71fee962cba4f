//! Targets a worker can load. Today: OpenAI-compatible HTTP servers ([`openai`]), split
//! by concern: options and URLs, TLS, load balancing, request bodies, and the streaming
//! read of a response ([`chunk_scan`] is its fast path).

mod balance;
mod body;
pub mod chunk_scan;
pub mod openai;
mod options;
mod stream;

pub use openai::{Completed, Failed, Gap, OpenAiTarget, TargetError};

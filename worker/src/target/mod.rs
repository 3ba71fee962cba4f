//! Targets a worker can load. Today: OpenAI-compatible HTTP servers ([`openai`]).

pub mod chunk_scan;
pub mod openai;

pub use openai::{Completed, Failed, OpenAiTarget, TargetError};

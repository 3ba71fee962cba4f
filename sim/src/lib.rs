//! `rackload sim`: a simulated OpenAI-compatible inference rack, so the whole fabric runs
//! on one laptop. Streams are paced either by a fixed TTFT and inter-token delay
//! ([`model::FixedLatency`]) or by a continuous-batching model of a GPU serving a model
//! ([`batch`], with hardware [`profile`]s and several replicas behind one port or one
//! port each); [`faults`] injects errors, resets and stalls; a fast mode writes several
//! events per syscall. It serves `/v1/completions`, `/v1/chat/completions` and
//! `/v1/models` ([`openai`]), vLLM-named `/metrics` ([`metrics`]), what it saw at
//! `/stats`, and the `traceparent`s it received at `/traceparents` with server spans
//! ([`trace`]).

pub mod batch;
pub mod faults;
pub mod metrics;
pub mod model;
pub mod openai;
pub mod profile;
pub mod server;
mod stamps;
mod streams;
pub mod trace;

pub use faults::{Fault, Faults};
pub use model::FixedLatency;
pub use openai::PromptCounter;
pub use profile::Profile;
pub use server::{
    SimConfig, SimStats, router, routers, routers_and_meters, serve, serve_router, serve_tls,
    tls_config,
};

//! `rackload sim`: a simulated OpenAI-compatible inference server, so the whole fabric
//! runs on one laptop. Today it paces every stream with a fixed TTFT and inter-token
//! delay ([`model::FixedLatency`]); a batch-aware model plugs in behind the same
//! [`model`] seam. It counts what it saw at `GET /stats`.

pub mod faults;
pub mod model;
pub mod openai;
pub mod server;

pub use faults::{Fault, Faults};
pub use model::FixedLatency;
pub use server::{SimConfig, SimStats, router, serve, serve_tls, tls_config};

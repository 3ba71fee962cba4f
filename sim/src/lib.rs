//! `rackload sim`: a simulated OpenAI-compatible inference server, so the whole fabric
//! runs on one laptop. Today it paces every stream with a fixed TTFT and inter-token
//! delay ([`model::FixedLatency`]); a batch-aware model plugs in behind the same
//! [`model`] seam. It counts what it saw at `GET /stats`.

pub mod batch;
pub mod faults;
pub mod metrics;
pub mod model;
pub mod openai;
pub mod profile;
pub mod server;
pub mod trace;

pub use faults::{Fault, Faults};
pub use model::FixedLatency;
pub use profile::Profile;
pub use server::{
    SimConfig, SimStats, router, routers, serve, serve_router, serve_tls, tls_config,
};

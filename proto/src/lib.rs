//! rackload's wire contract: the generated `Fabric` (worker session) and `Control` (CLI)
//! services, the protocol version, HdrHistogram wire helpers, and conversions between
//! wire messages and the workload types.

pub mod auth;
pub mod convert;
pub mod headers;
pub mod histogram;
pub mod names;
pub mod redact;
pub mod time;
pub mod worker_id;

/// Generated code of `rackload/v1/*.proto`.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("rackload.v1");
}

/// Wire protocol version; a coordinator refuses workers that speak another one. 3: shard
/// plans carry goodput SLOs that workers must judge (a version-2 worker would count none).
pub const PROTOCOL_VERSION: u32 = 3;

/// rackload's build version.
pub const BUILD_VERSION: &str = env!("CARGO_PKG_VERSION");

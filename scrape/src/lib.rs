//! The rack's own meters during a point. A load generator sees the client side only;
//! what the rack draws while it serves is on its GPU exporters (NVIDIA's DCGM exporter,
//! AMD's device-metrics exporter) and its nodes' BMCs (Redfish), and what it is doing on
//! its servers' own pages. [`Sampler`] reads them every interval while a point runs
//! ([`gpu::power`] picks the power series out of Prometheus text, [`redfish::power`] a
//! node's out of a Redfish page, [`server::read`] the server's series), and
//! [`window::integrate`] turns the samples into the mean power and energy of the point's
//! measurement window, the figures J/token is made of.

pub mod gpu;
pub mod prom;
pub mod redfish;
pub mod sampler;
pub mod server;
pub mod window;

pub use sampler::Sampler;

//! mega-hub: the hub sidecar that links Mega app instances ("bridges") over WebSocket.
//! The wire contract is protocol/README.md (+ JSON Schemas and vectors beside it).
pub mod config;
pub mod hub;
pub mod metrics;
pub mod protocol;
pub mod server;

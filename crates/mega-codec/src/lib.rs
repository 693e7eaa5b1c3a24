//! mega-codec: the byte formats of Mega's hot path, without any Node binding (see FORMAT.md).
//! `mega-napi` wraps it for Node; the kernel's TS backend implements the same formats and both are
//! checked against `vectors/*.json`.
pub mod asp;
pub mod b64;
pub mod deflate;
pub mod error;
pub mod frame;

pub use error::{Code, CodecError, Result};

/// Crate version; the addon exports it so the kernel can refuse a mismatched binary.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

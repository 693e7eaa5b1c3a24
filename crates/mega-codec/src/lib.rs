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

/// The output of a `*_with` call (which asks for its output buffer by size) as a `Vec`: the
/// convenience forms of the `*_with` functions and the codec's scratch buffers.
pub(crate) fn vec_out<'o>(out: &'o mut Vec<u8>) -> impl FnOnce(usize) -> Option<&'o mut [u8]> + 'o {
    move |n| {
        out.resize(n, 0);
        Some(&mut out[..])
    }
}

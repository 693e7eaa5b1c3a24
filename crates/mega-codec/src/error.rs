//! One error type for every codec failure. The codes are the dotted strings the kernel's `MegaError`
//! carries, so the TS facade maps a native failure to the same code the TS backend would throw.
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// Truncated, garbage or structurally invalid input.
    Malformed,
    /// Inflated output above the configured limit.
    TooLarge,
    /// The caller passed something unusable (short key, bad type name, ...).
    InvalidArgument,
    /// A stateful object is unusable after an earlier failure.
    Closed,
    /// ASP: authentication tag mismatch (wrong key, namespace or tampered bytes).
    Decrypt,
    /// ASP: timestamp outside the allowed window.
    Drift,
    /// ASP: nonce already seen, older than the replay floor, or sealed for the other direction.
    Replay,
    /// ASP: a sealer ran out of nonces (2^53 messages); derive a new key.
    Exhausted,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Malformed => "codec.malformed",
            Code::TooLarge => "codec.too_large",
            Code::InvalidArgument => "codec.invalid_argument",
            Code::Closed => "codec.closed",
            Code::Decrypt => "asp.decrypt",
            Code::Drift => "asp.drift",
            Code::Replay => "asp.replay",
            Code::Exhausted => "asp.exhausted",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecError {
    pub code: Code,
    pub message: &'static str,
}

impl CodecError {
    pub const fn new(code: Code, message: &'static str) -> Self {
        Self { code, message }
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for CodecError {}

pub type Result<T> = std::result::Result<T, CodecError>;

pub(crate) const fn malformed(message: &'static str) -> CodecError {
    CodecError::new(Code::Malformed, message)
}

pub(crate) const fn invalid(message: &'static str) -> CodecError {
    CodecError::new(Code::InvalidArgument, message)
}

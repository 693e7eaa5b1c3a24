//! Configuration from the environment (MEGA_WSHUB_*). Every bad value is a clear error; `main`
//! turns it into exit code 2.
use std::collections::HashMap;

use ring::digest::{digest, SHA256};
use subtle::ConstantTimeEq;

pub const DEFAULT_PORT: u16 = 3100;
/// Loopback by default: exposing the hub is a deliberate choice (`MEGA_WSHUB_HOST=0.0.0.0`).
pub const DEFAULT_HOST: &str = "127.0.0.1";
pub const DEFAULT_HEARTBEAT_MS: u64 = 25_000;
pub const DEFAULT_MAX_FRAME_BYTES: usize = 1 << 20;
pub const MIN_MAX_FRAME_BYTES: usize = 4096;
pub const MAX_MAX_FRAME_BYTES: usize = 64 << 20;
/// Frames queued per bridge before the hub gives up on it (close 1013).
pub const DEFAULT_QUEUE_FRAMES: usize = 16_384;
/// Outbound frames at least this long go out deflated to bridges that negotiated `deflate`.
pub const DEFAULT_COMPRESS_THRESHOLD: usize = 1024;

#[derive(Debug, Clone)]
pub struct Config {
    pub host: String,
    pub port: u16,
    pub heartbeat_ms: u64,
    pub max_frame_bytes: usize,
    pub queue_frames: usize,
    pub compress_threshold: usize,
    /// How long a draining hub waits for bridges to acknowledge the 4503 close.
    pub drain_ms: u64,
    /// A connection must send `register` within this time.
    pub register_timeout_ms: u64,
    pub hub_id: String,
    tokens: Vec<[u8; 32]>,
}

fn sha256(b: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, b).as_ref());
    out
}

impl Config {
    /// Builds a config for tests and embedders; `tokens` must not be empty.
    pub fn with_tokens(tokens: &[&str]) -> Self {
        Self {
            host: DEFAULT_HOST.into(),
            port: DEFAULT_PORT,
            heartbeat_ms: DEFAULT_HEARTBEAT_MS,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            queue_frames: DEFAULT_QUEUE_FRAMES,
            compress_threshold: DEFAULT_COMPRESS_THRESHOLD,
            drain_ms: 5_000,
            register_timeout_ms: 10_000,
            hub_id: format!("hub-{}", std::process::id()),
            tokens: tokens.iter().map(|t| sha256(t.as_bytes())).collect(),
        }
    }

    /// Compares against every configured token without an early exit; hashing first makes the
    /// comparison independent of the tokens' lengths too.
    pub fn token_ok(&self, candidate: &str) -> bool {
        let c = sha256(candidate.as_bytes());
        let mut ok = subtle::Choice::from(0);
        for t in &self.tokens {
            ok |= t.ct_eq(&c);
        }
        ok.into()
    }

    pub fn from_env(env: &HashMap<String, String>) -> Result<Self, String> {
        let raw = env
            .get("MEGA_WSHUB_TOKENS")
            .map(String::as_str)
            .unwrap_or("");
        let tokens: Vec<&str> = raw
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect();
        if tokens.is_empty() {
            return Err(
                "MEGA_WSHUB_TOKENS is required: a comma-separated list of bridge tokens \
                        (e.g. MEGA_WSHUB_TOKENS=$(openssl rand -hex 32))"
                    .into(),
            );
        }
        let mut c = Config::with_tokens(&tokens);
        let num = |key: &str, min: u64, max: u64, default: u64| -> Result<u64, String> {
            match env.get(key).map(|v| v.trim()).filter(|v| !v.is_empty()) {
                None => Ok(default),
                Some(v) => match v.parse::<u64>() {
                    Ok(n) if (min..=max).contains(&n) => Ok(n),
                    _ => Err(format!(
                        "{key} must be an integer in {min}..={max} (got {v:?})"
                    )),
                },
            }
        };
        c.port = num("MEGA_WSHUB_PORT", 0, 65_535, DEFAULT_PORT as u64)? as u16;
        c.heartbeat_ms = num(
            "MEGA_WSHUB_HEARTBEAT_MS",
            10,
            3_600_000,
            DEFAULT_HEARTBEAT_MS,
        )?;
        c.max_frame_bytes = num(
            "MEGA_WSHUB_MAX_FRAME_BYTES",
            MIN_MAX_FRAME_BYTES as u64,
            MAX_MAX_FRAME_BYTES as u64,
            DEFAULT_MAX_FRAME_BYTES as u64,
        )? as usize;
        c.drain_ms = num("MEGA_WSHUB_DRAIN_MS", 0, 600_000, 5_000)?;
        if let Some(h) = env
            .get("MEGA_WSHUB_HOST")
            .map(|h| h.trim())
            .filter(|h| !h.is_empty())
        {
            c.host = h.to_owned();
        }
        if let Some(id) = env
            .get("MEGA_WSHUB_ID")
            .map(|h| h.trim())
            .filter(|h| !h.is_empty())
        {
            c.hub_id = id.to_owned();
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn tokens_are_required_and_checked() {
        assert!(Config::from_env(&env(&[]))
            .unwrap_err()
            .contains("MEGA_WSHUB_TOKENS"));
        assert!(Config::from_env(&env(&[("MEGA_WSHUB_TOKENS", " , ")])).is_err());
        let c = Config::from_env(&env(&[("MEGA_WSHUB_TOKENS", "alpha, beta")])).unwrap();
        assert!(c.token_ok("alpha") && c.token_ok("beta"));
        assert!(!c.token_ok("alph") && !c.token_ok("alpha ") && !c.token_ok(""));
        assert_eq!(
            (c.port, c.host.as_str(), c.heartbeat_ms),
            (3100, "127.0.0.1", 25_000)
        );
    }

    #[test]
    fn numbers_are_range_checked() {
        let base = [("MEGA_WSHUB_TOKENS", "t")];
        for (k, v) in [
            ("MEGA_WSHUB_PORT", "70000"),
            ("MEGA_WSHUB_PORT", "http"),
            ("MEGA_WSHUB_HEARTBEAT_MS", "5"),
            ("MEGA_WSHUB_MAX_FRAME_BYTES", "100"),
        ] {
            let mut e = env(&base);
            e.insert(k.into(), v.into());
            assert!(Config::from_env(&e).unwrap_err().contains(k));
        }
        let mut e = env(&base);
        e.insert("MEGA_WSHUB_PORT".into(), "0".into());
        e.insert("MEGA_WSHUB_MAX_FRAME_BYTES".into(), "8192".into());
        let c = Config::from_env(&e).unwrap();
        assert_eq!((c.port, c.max_frame_bytes), (0, 8192));
    }
}

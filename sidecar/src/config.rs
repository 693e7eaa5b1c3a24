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
/// Bytes queued per bridge before the hub gives up on it (close 1013): with the frame count alone
/// a stalled bridge could pin 16384 x max frame = 16 GiB.
pub const DEFAULT_QUEUE_BYTES: usize = 32 << 20;
/// A bridge whose socket accepts no byte for this long while the hub has frames for it is evicted.
pub const DEFAULT_WRITE_TIMEOUT_MS: u64 = 10_000;
/// Least length of a hub token (bridge or admin) in production (`MEGA_ENV`/`NODE_ENV=production`).
pub const PRODUCTION_MIN_TOKEN_BYTES: usize = 32;

/// What a token lets a link do (protocol/README.md, "Ownership").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Acts on the sessions it joined only.
    Bridge,
    /// Also disconnects and moves other bridges' sessions and replaces a live bridgeId.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Bridge => "bridge",
            Role::Admin => "admin",
        }
    }
}
/// Outbound frames at least this long go out deflated to bridges that negotiated `deflate`.
pub const DEFAULT_COMPRESS_THRESHOLD: usize = 1024;

#[derive(Debug, Clone)]
pub struct Config {
    pub host: String,
    pub port: u16,
    pub heartbeat_ms: u64,
    pub max_frame_bytes: usize,
    pub queue_frames: usize,
    pub queue_bytes: usize,
    pub write_timeout_ms: u64,
    pub compress_threshold: usize,
    /// How long a draining hub waits for bridges to acknowledge the 4503 close.
    pub drain_ms: u64,
    /// A connection must send `register` within this time.
    pub register_timeout_ms: u64,
    pub hub_id: String,
    /// `MEGA_ENV` (or, when unset, `NODE_ENV`) is `production`.
    pub production: bool,
    /// Things to tell the operator at start (weak tokens in development); never contain a token.
    pub warnings: Vec<String>,
    tokens: Vec<[u8; 32]>,
    admin_tokens: Vec<[u8; 32]>,
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
            queue_bytes: DEFAULT_QUEUE_BYTES,
            write_timeout_ms: DEFAULT_WRITE_TIMEOUT_MS,
            compress_threshold: DEFAULT_COMPRESS_THRESHOLD,
            drain_ms: 5_000,
            register_timeout_ms: 10_000,
            hub_id: format!("hub-{}", std::process::id()),
            production: false,
            warnings: Vec::new(),
            tokens: tokens.iter().map(|t| sha256(t.as_bytes())).collect(),
            admin_tokens: Vec::new(),
        }
    }

    /// Adds admin tokens (tests and embedders; the binary reads MEGA_WSHUB_ADMIN_TOKENS).
    pub fn with_admin_tokens(mut self, tokens: &[&str]) -> Self {
        self.admin_tokens = tokens.iter().map(|t| sha256(t.as_bytes())).collect();
        self
    }

    /// The role a register token grants, `None` for a bad token. Compares against every
    /// configured token of both lists without an early exit; hashing first makes the comparison
    /// independent of the tokens' lengths too. A token in both lists is an admin token.
    pub fn token_role(&self, candidate: &str) -> Option<Role> {
        let c = sha256(candidate.as_bytes());
        let (mut bridge, mut admin) = (subtle::Choice::from(0), subtle::Choice::from(0));
        for t in &self.tokens {
            bridge |= t.ct_eq(&c);
        }
        for t in &self.admin_tokens {
            admin |= t.ct_eq(&c);
        }
        if bool::from(admin) {
            Some(Role::Admin)
        } else if bool::from(bridge) {
            Some(Role::Bridge)
        } else {
            None
        }
    }

    pub fn token_ok(&self, candidate: &str) -> bool {
        self.token_role(candidate).is_some()
    }

    pub fn from_env(env: &HashMap<String, String>) -> Result<Self, String> {
        let list = |key: &str| -> Vec<&str> {
            env.get(key)
                .map(String::as_str)
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .collect()
        };
        let tokens = list("MEGA_WSHUB_TOKENS");
        if tokens.is_empty() {
            return Err(
                "MEGA_WSHUB_TOKENS is required: a comma-separated list of bridge tokens \
                        (e.g. MEGA_WSHUB_TOKENS=$(openssl rand -hex 32))"
                    .into(),
            );
        }
        let admin = list("MEGA_WSHUB_ADMIN_TOKENS");
        let mut c = Config::with_tokens(&tokens).with_admin_tokens(&admin);
        // MEGA_ENV wins over NODE_ENV, as for the apps; anything but `production` is development.
        let env_name = env
            .get("MEGA_ENV")
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .or_else(|| env.get("NODE_ENV").map(|v| v.trim()))
            .unwrap_or("");
        c.production = env_name == "production";
        for (key, list) in [
            ("MEGA_WSHUB_TOKENS", &tokens),
            ("MEGA_WSHUB_ADMIN_TOKENS", &admin),
        ] {
            // Which entry, never the token itself.
            let short: Vec<String> = list
                .iter()
                .enumerate()
                .filter(|(_, t)| t.len() < PRODUCTION_MIN_TOKEN_BYTES)
                .map(|(i, t)| format!("entry {} ({} bytes)", i + 1, t.len()))
                .collect();
            if short.is_empty() {
                continue;
            }
            let what = format!(
                "{key}: {} shorter than {PRODUCTION_MIN_TOKEN_BYTES} bytes",
                short.join(", ")
            );
            if c.production {
                return Err(format!(
                    "{what}: production refuses it (use e.g. $(openssl rand -hex 32))"
                ));
            }
            c.warnings.push(format!(
                "{what}: accepted in development only (production requires {PRODUCTION_MIN_TOKEN_BYTES})"
            ));
        }
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
        c.queue_frames = num(
            "MEGA_WSHUB_QUEUE_FRAMES",
            16,
            1 << 20,
            DEFAULT_QUEUE_FRAMES as u64,
        )? as usize;
        // One largest frame (+ the 2 KiB a presence event may add) must always fit.
        let least = c.max_frame_bytes as u64 + 4096;
        c.queue_bytes = num(
            "MEGA_WSHUB_QUEUE_BYTES",
            least,
            1 << 40,
            (DEFAULT_QUEUE_BYTES as u64).max(least),
        )? as usize;
        c.write_timeout_ms = num(
            "MEGA_WSHUB_WRITE_TIMEOUT_MS",
            100,
            600_000,
            DEFAULT_WRITE_TIMEOUT_MS,
        )?;
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
        assert!(Config::from_env(&env(&[
            ("MEGA_WSHUB_TOKENS", "t"),
            ("MEGA_WSHUB_MAX_FRAME_BYTES", "1048576"),
            ("MEGA_WSHUB_QUEUE_BYTES", "1048576"),
        ]))
        .unwrap_err()
        .contains("MEGA_WSHUB_QUEUE_BYTES"));
        for (k, v) in [
            ("MEGA_WSHUB_PORT", "70000"),
            ("MEGA_WSHUB_PORT", "http"),
            ("MEGA_WSHUB_HEARTBEAT_MS", "5"),
            ("MEGA_WSHUB_MAX_FRAME_BYTES", "100"),
            ("MEGA_WSHUB_QUEUE_FRAMES", "0"),
            ("MEGA_WSHUB_WRITE_TIMEOUT_MS", "5"),
        ] {
            let mut e = env(&base);
            e.insert(k.into(), v.into());
            assert!(Config::from_env(&e).unwrap_err().contains(k));
        }
        let mut e = env(&base);
        e.insert("MEGA_WSHUB_PORT".into(), "0".into());
        e.insert("MEGA_WSHUB_MAX_FRAME_BYTES".into(), "8192".into());
        e.insert("MEGA_WSHUB_QUEUE_BYTES".into(), "65536".into());
        e.insert("MEGA_WSHUB_WRITE_TIMEOUT_MS".into(), "250".into());
        let c = Config::from_env(&e).unwrap();
        assert_eq!((c.port, c.max_frame_bytes), (0, 8192));
        assert_eq!((c.queue_bytes, c.write_timeout_ms), (65536, 250));
        let c = Config::from_env(&env(&base)).unwrap();
        assert_eq!(
            (c.queue_frames, c.queue_bytes, c.write_timeout_ms),
            (16_384, 32 << 20, 10_000)
        );
        // A larger frame limit raises the default byte bound so one frame always fits.
        let mut e = env(&base);
        e.insert(
            "MEGA_WSHUB_MAX_FRAME_BYTES".into(),
            (64u64 << 20).to_string(),
        );
        assert_eq!(Config::from_env(&e).unwrap().queue_bytes, (64 << 20) + 4096);
    }

    #[test]
    fn b11_hub_tokens_shorter_than_32_bytes_are_refused_in_production_and_warned_in_development() {
        let strong = "s".repeat(32);
        for prod in [
            vec![("MEGA_ENV", "production")],
            vec![("NODE_ENV", "production")],
            vec![("NODE_ENV", "development"), ("MEGA_ENV", "production")],
        ] {
            let mut e = env(&prod);
            e.insert("MEGA_WSHUB_TOKENS".into(), format!("{strong},x"));
            let err = Config::from_env(&e).unwrap_err();
            assert!(
                err.contains("MEGA_WSHUB_TOKENS")
                    && err.contains("entry 2 (1 bytes)")
                    && err.contains("32"),
                "{err}"
            );
            assert!(!err.contains(&strong), "the error names no token");
            e.insert("MEGA_WSHUB_TOKENS".into(), strong.clone());
            e.insert("MEGA_WSHUB_ADMIN_TOKENS".into(), "short-admin".into());
            let err = Config::from_env(&e).unwrap_err();
            assert!(err.contains("MEGA_WSHUB_ADMIN_TOKENS"), "{err}");
            assert!(!err.contains("short-admin"));
            e.remove("MEGA_WSHUB_ADMIN_TOKENS");
            let c = Config::from_env(&e).unwrap();
            assert!(c.production && c.warnings.is_empty());
        }
        // Development (or MEGA_ENV overriding NODE_ENV=production): accepted with a warning.
        for dev in [
            vec![],
            vec![("NODE_ENV", "development")],
            vec![("NODE_ENV", "production"), ("MEGA_ENV", "development")],
        ] {
            let mut e = env(&dev);
            e.insert("MEGA_WSHUB_TOKENS".into(), "x".into());
            let c = Config::from_env(&e).unwrap();
            assert!(!c.production);
            assert_eq!(c.warnings.len(), 1);
            assert!(c.warnings[0].contains("MEGA_WSHUB_TOKENS: entry 1 (1 bytes)"));
        }
    }

    #[test]
    fn b10_admin_tokens_grant_the_admin_role() {
        let e = env(&[
            ("MEGA_WSHUB_TOKENS", "bridge-tok"),
            ("MEGA_WSHUB_ADMIN_TOKENS", "admin-tok, both"),
        ]);
        let c = Config::from_env(&e).unwrap();
        assert_eq!(c.token_role("bridge-tok"), Some(Role::Bridge));
        assert_eq!(c.token_role("admin-tok"), Some(Role::Admin));
        assert_eq!(c.token_role("nope"), None);
        assert_eq!(c.token_role(""), None);
    }
}

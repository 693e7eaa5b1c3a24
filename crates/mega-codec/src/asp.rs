//! ASP v1: AES-256-GCM sealing of application frames (layout in FORMAT.md).
//!
//! Nonce = 4-byte prefix | 8-byte big-endian counter. The prefix's top bit is the direction
//! (1 = sealed by the server, 0 = by the client), the other 31 bits are random per sealer; the
//! counter starts at a random value below 2^48 and only goes up. Two sealers of one key and
//! direction collide only if their 31-bit prefixes match AND their counter ranges overlap, and the
//! two directions can never collide. Openers reject the other direction's frames (reflection).
use std::collections::{HashSet, VecDeque};

use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, AES_256_GCM};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};

use crate::deflate;
use crate::error::{invalid, malformed, Code, CodecError, Result};

pub const VERSION: u8 = 1;
pub const FLAG_DEFLATE: u8 = 0x01;
const KNOWN_FLAGS: u8 = FLAG_DEFLATE;
pub const NONCE_LEN: usize = 12;
pub const HEADER_LEN: usize = 2 + NONCE_LEN + 8;
pub const TAG_LEN: usize = 16;
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
pub const KEY_LEN: usize = 32;
pub const MIN_MASTER_LEN: usize = 32;
pub const DEFAULT_WINDOW_MS: u64 = 60_000;
pub const DEFAULT_REPLAY_CAPACITY: usize = 16_384;
/// Largest counter and timestamp: the TS backend holds both in a double.
pub const MAX_SAFE: u64 = (1 << 53) - 1;
const SERVER_BIT: u8 = 0x80;
const HKDF_SALT: &[u8] = b"mega.asp.v1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Ws,
    Http,
}

impl Scope {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "ws" => Ok(Scope::Ws),
            "http" => Ok(Scope::Http),
            _ => Err(invalid("ASP scope must be 'ws' or 'http'")),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ws => "ws",
            Scope::Http => "http",
        }
    }
}

/// The side holding a sealer or opener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}

impl Role {
    fn seal_bit(self) -> u8 {
        match self {
            Role::Server => SERVER_BIT,
            Role::Client => 0,
        }
    }
}

/// HKDF-SHA256(salt "mega.asp.v1", ikm = master, info = scope | 0x00 | session id) -> 32 bytes.
pub fn derive_key(master: &[u8], session_id: &str, scope: Scope) -> Result<[u8; KEY_LEN]> {
    if master.len() < MIN_MASTER_LEN {
        return Err(invalid("ASP master secret must be at least 32 bytes"));
    }
    if session_id.is_empty() {
        return Err(invalid("ASP session id must not be empty"));
    }
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT).extract(master);
    let info = [scope.as_str().as_bytes(), &[0u8], session_id.as_bytes()];
    let mut out = [0u8; KEY_LEN];
    prk.expand(&info, &AES_256_GCM)
        .and_then(|okm| okm.fill(&mut out))
        .map_err(|_| invalid("HKDF expand failed"))?;
    Ok(out)
}

pub struct Key(LessSafeKey);

impl Key {
    pub fn new(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != KEY_LEN {
            return Err(invalid("ASP key must be 32 bytes"));
        }
        let unbound = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| invalid("bad AES key"))?;
        Ok(Key(LessSafeKey::new(unbound)))
    }
}

/// AAD = version | flags | timestamp (8, BE) | namespace UTF-8. Built on the stack for short names.
fn with_aad<R>(flags: u8, ts: u64, ns: &[u8], f: impl FnOnce(&[u8]) -> R) -> R {
    const STACK: usize = 256;
    let len = 10 + ns.len();
    let mut stack = [0u8; STACK];
    let mut heap = Vec::new();
    let buf: &mut [u8] = if len <= STACK {
        &mut stack[..len]
    } else {
        heap.resize(len, 0);
        &mut heap
    };
    buf[0] = VERSION;
    buf[1] = flags;
    buf[2..10].copy_from_slice(&ts.to_be_bytes());
    buf[10..].copy_from_slice(ns);
    f(buf)
}

/// Seals `body` into `out` (exactly `OVERHEAD + body.len()` bytes). The caller owns nonce uniqueness.
pub fn seal_into(
    key: &Key,
    nonce: &[u8; NONCE_LEN],
    ts: u64,
    flags: u8,
    ns: &[u8],
    body: &[u8],
    out: &mut [u8],
) -> Result<()> {
    if out.len() != OVERHEAD + body.len() {
        return Err(invalid("output buffer has the wrong size"));
    }
    if ts > MAX_SAFE || flags & !KNOWN_FLAGS != 0 {
        return Err(invalid("timestamp or flags out of range"));
    }
    let n = body.len();
    out[0] = VERSION;
    out[1] = flags;
    out[2..14].copy_from_slice(nonce);
    out[14..22].copy_from_slice(&ts.to_be_bytes());
    out[HEADER_LEN..HEADER_LEN + n].copy_from_slice(body);
    let (head, tail) = out.split_at_mut(HEADER_LEN + n);
    let tag = with_aad(flags, ts, ns, |aad| {
        key.0.seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(*nonce),
            Aad::from(aad),
            &mut head[HEADER_LEN..],
        )
    })
    .map_err(|_| invalid("AES-GCM seal failed"))?;
    tail.copy_from_slice(tag.as_ref());
    Ok(())
}

/// Seals with an explicit nonce and timestamp (test vectors, tooling). Deflates first when asked.
pub fn seal(
    key: &Key,
    nonce: &[u8; NONCE_LEN],
    ts: u64,
    ns: &[u8],
    plaintext: &[u8],
    compress: bool,
) -> Result<Vec<u8>> {
    let mut z = Vec::new();
    let (body, flags) = if compress {
        deflate::deflate_into(plaintext, deflate::DEFAULT_LEVEL, &mut z)?;
        (&z[..], FLAG_DEFLATE)
    } else {
        (plaintext, 0)
    };
    let mut out = vec![0u8; OVERHEAD + body.len()];
    seal_into(key, nonce, ts, flags, ns, body, &mut out)?;
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub flags: u8,
    pub nonce: [u8; NONCE_LEN],
    pub ts: u64,
}

pub fn parse_header(sealed: &[u8]) -> Result<Header> {
    if sealed.len() < OVERHEAD {
        return Err(malformed("sealed frame is truncated"));
    }
    if sealed[0] != VERSION {
        return Err(malformed("unknown ASP version"));
    }
    let flags = sealed[1];
    if flags & !KNOWN_FLAGS != 0 {
        return Err(malformed("unknown ASP flags"));
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&sealed[2..14]);
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&sealed[14..22]);
    Ok(Header {
        flags,
        nonce,
        ts: u64::from_be_bytes(ts),
    })
}

pub fn check_drift(ts: u64, now: u64, window_ms: u64) -> Result<()> {
    if ts.saturating_add(window_ms) < now || ts > now.saturating_add(window_ms) {
        return Err(CodecError::new(
            Code::Drift,
            "frame timestamp outside the allowed window",
        ));
    }
    Ok(())
}

/// Decrypts the ciphertext of `sealed` into `out` (exactly `sealed.len() - OVERHEAD` bytes).
pub fn decrypt_into(key: &Key, sealed: &[u8], ns: &[u8], h: &Header, out: &mut [u8]) -> Result<()> {
    let n = sealed.len() - OVERHEAD;
    if out.len() != n {
        return Err(invalid("output buffer has the wrong size"));
    }
    out.copy_from_slice(&sealed[HEADER_LEN..HEADER_LEN + n]);
    let tag = Tag::try_from(&sealed[HEADER_LEN + n..]).map_err(|_| malformed("bad tag length"))?;
    with_aad(h.flags, h.ts, ns, |aad| {
        key.0
            .open_in_place_separate_tag(
                Nonce::assume_unique_for_key(h.nonce),
                Aad::from(aad),
                tag,
                out,
                0..,
            )
            .map(|_| ())
    })
    .map_err(|_| CodecError::new(Code::Decrypt, "ASP authentication failed"))
}

fn finish_body(flags: u8, body: Vec<u8>, max_output: usize) -> Result<Vec<u8>> {
    if flags & FLAG_DEFLATE == 0 {
        return Ok(body);
    }
    deflate::inflate(&body, max_output)
}

/// Stateless open: version, drift and tag checks, no replay cache (use an `Opener` for that).
pub fn open(
    key: &Key,
    sealed: &[u8],
    ns: &[u8],
    now: u64,
    window_ms: u64,
    max_output: usize,
) -> Result<Vec<u8>> {
    let h = parse_header(sealed)?;
    check_drift(h.ts, now, window_ms)?;
    let mut body = vec![0u8; sealed.len() - OVERHEAD];
    decrypt_into(key, sealed, ns, &h, &mut body)?;
    finish_body(h.flags, body, max_output)
}

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| invalid("system RNG failed"))?;
    Ok(b)
}

/// One key context's sending side: owns the nonce sequence.
pub struct Sealer {
    key: Key,
    prefix: [u8; 4],
    counter: u64,
    scratch: Vec<u8>,
}

impl Sealer {
    /// `seed` = (prefix, counter) for reproducible output in tests; random otherwise.
    pub fn new(key: &[u8], role: Role, seed: Option<(u32, u64)>) -> Result<Self> {
        let key = Key::new(key)?;
        let (prefix, counter) = match seed {
            Some((p, c)) if c <= MAX_SAFE => (p, c),
            Some(_) => return Err(invalid("nonce counter seed above 2^53-1")),
            None => (
                u32::from_be_bytes(random_bytes::<4>()?),
                u64::from_be_bytes(random_bytes::<8>()?) & ((1 << 48) - 1),
            ),
        };
        let mut prefix = (prefix & 0x7fff_ffff).to_be_bytes();
        prefix[0] |= role.seal_bit();
        Ok(Self {
            key,
            prefix,
            counter,
            scratch: Vec::new(),
        })
    }

    fn next_nonce(&mut self) -> Result<[u8; NONCE_LEN]> {
        if self.counter > MAX_SAFE {
            return Err(CodecError::new(
                Code::Exhausted,
                "nonce counter exhausted; derive a new key",
            ));
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..4].copy_from_slice(&self.prefix);
        nonce[4..].copy_from_slice(&self.counter.to_be_bytes());
        self.counter += 1;
        Ok(nonce)
    }

    /// Seals into a buffer obtained from `alloc(len)`, so the binding can write straight into a JS
    /// Buffer without an intermediate copy.
    pub fn seal_with<'o>(
        &mut self,
        plaintext: &[u8],
        ns: &[u8],
        ts: u64,
        compress: bool,
        alloc: impl FnOnce(usize) -> Option<&'o mut [u8]>,
    ) -> Result<()> {
        if ts > MAX_SAFE {
            return Err(invalid("timestamp above 2^53-1"));
        }
        let nonce = self.next_nonce()?;
        let (body, flags) = if compress {
            self.scratch.clear();
            deflate::deflate_into(plaintext, deflate::DEFAULT_LEVEL, &mut self.scratch)?;
            (&self.scratch[..], FLAG_DEFLATE)
        } else {
            (plaintext, 0)
        };
        let out = alloc(OVERHEAD + body.len()).ok_or(invalid("could not allocate the output"))?;
        seal_into(&self.key, &nonce, ts, flags, ns, body, out)
    }

    pub fn seal(
        &mut self,
        plaintext: &[u8],
        ns: &[u8],
        ts: u64,
        compress: bool,
    ) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.seal_with(plaintext, ns, ts, compress, |n| {
            out.resize(n, 0);
            Some(&mut out[..])
        })?;
        Ok(out)
    }
}

/// Nonces seen inside the window, in arrival order. When full, the oldest entry is dropped and its
/// timestamp becomes a floor: anything at or below the floor is refused, so eviction never opens a
/// replay hole (it only makes very late frames fail).
struct ReplayCache {
    seen: HashSet<[u8; NONCE_LEN]>,
    order: VecDeque<([u8; NONCE_LEN], u64)>,
    capacity: usize,
    floor: Option<u64>,
}

impl ReplayCache {
    fn contains(&self, nonce: &[u8; NONCE_LEN], ts: u64) -> bool {
        self.floor.is_some_and(|f| ts <= f) || self.seen.contains(nonce)
    }

    fn insert(&mut self, nonce: [u8; NONCE_LEN], ts: u64, now: u64, window_ms: u64) {
        // Entries older than the window would fail the drift check anyway.
        while let Some(&(n, t)) = self.order.front() {
            if t.saturating_add(window_ms) >= now {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&n);
        }
        if self.order.len() >= self.capacity {
            if let Some((n, t)) = self.order.pop_front() {
                self.seen.remove(&n);
                self.floor = Some(self.floor.map_or(t, |f| f.max(t)));
            }
        }
        self.order.push_back((nonce, ts));
        self.seen.insert(nonce);
    }
}

/// One key context's receiving side: drift window, direction and replay cache.
pub struct Opener {
    key: Key,
    expect_bit: u8,
    window_ms: u64,
    max_output: usize,
    cache: ReplayCache,
    scratch: Vec<u8>,
    inflated: Vec<u8>,
}

impl Opener {
    pub fn new(
        key: &[u8],
        role: Role,
        window_ms: u64,
        capacity: usize,
        max_output: usize,
    ) -> Result<Self> {
        if capacity == 0 {
            return Err(invalid("replay capacity must be at least 1"));
        }
        let expect_bit = match role {
            Role::Server => Role::Client.seal_bit(),
            Role::Client => Role::Server.seal_bit(),
        };
        Ok(Self {
            key: Key::new(key)?,
            expect_bit,
            window_ms,
            max_output,
            cache: ReplayCache {
                seen: HashSet::new(),
                order: VecDeque::new(),
                capacity,
                floor: None,
            },
            scratch: Vec::new(),
            inflated: Vec::new(),
        })
    }

    /// Checks in a fixed order shared with the TS backend: malformed, direction, drift, replay,
    /// tag, then (after recording the nonce) inflate.
    pub fn open_with<'o>(
        &mut self,
        sealed: &[u8],
        ns: &[u8],
        now: u64,
        alloc: impl FnOnce(usize) -> Option<&'o mut [u8]>,
    ) -> Result<()> {
        let h = parse_header(sealed)?;
        if h.nonce[0] & SERVER_BIT != self.expect_bit {
            return Err(CodecError::new(
                Code::Replay,
                "frame was sealed for the other direction",
            ));
        }
        check_drift(h.ts, now, self.window_ms)?;
        if self.cache.contains(&h.nonce, h.ts) {
            return Err(CodecError::new(Code::Replay, "nonce already seen"));
        }
        let n = sealed.len() - OVERHEAD;
        if h.flags & FLAG_DEFLATE == 0 {
            let out = alloc(n).ok_or(invalid("could not allocate the output"))?;
            decrypt_into(&self.key, sealed, ns, &h, out)?;
            self.cache.insert(h.nonce, h.ts, now, self.window_ms);
            return Ok(());
        }
        self.scratch.resize(n, 0);
        decrypt_into(&self.key, sealed, ns, &h, &mut self.scratch)?;
        self.cache.insert(h.nonce, h.ts, now, self.window_ms);
        deflate::inflate_into(&self.scratch, self.max_output, &mut self.inflated)?;
        let out = alloc(self.inflated.len()).ok_or(invalid("could not allocate the output"))?;
        out.copy_from_slice(&self.inflated);
        Ok(())
    }

    pub fn open(&mut self, sealed: &[u8], ns: &[u8], now: u64) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.open_with(sealed, ns, now, |n| {
            out.resize(n, 0);
            Some(&mut out[..])
        })?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASTER: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn hkdf_rfc5869_case1() {
        // RFC 5869 A.1 through ring, to pin the primitive the derivation relies on.
        let ikm = [0x0bu8; 22];
        let salt: Vec<u8> = (0u8..=0x0c).collect();
        let info: Vec<u8> = (0xf0u8..=0xf9).collect();
        struct L(usize);
        impl hkdf::KeyType for L {
            fn len(&self) -> usize {
                self.0
            }
        }
        let mut okm = [0u8; 42];
        hkdf::Salt::new(hkdf::HKDF_SHA256, &salt)
            .extract(&ikm)
            .expand(&[&info], L(42))
            .unwrap()
            .fill(&mut okm)
            .unwrap();
        assert_eq!(okm[..4], [0x3c, 0xb2, 0x5f, 0x25]);
        assert_eq!(okm[38..], [0x87, 0x18, 0x58, 0x65][..]);
    }

    #[test]
    fn seal_open_and_rejections() {
        let key = derive_key(MASTER, "sess-1", Scope::Ws).unwrap();
        assert_ne!(key, derive_key(MASTER, "sess-1", Scope::Http).unwrap());
        let mut client = Sealer::new(&key, Role::Client, Some((7, 1))).unwrap();
        let mut server = Opener::new(&key, Role::Server, DEFAULT_WINDOW_MS, 4, 1 << 20).unwrap();
        let now = 1_700_000_000_000;
        let a = client.seal(b"hello", b"/chat", now, false).unwrap();
        assert_eq!(server.open(&a, b"/chat", now).unwrap(), b"hello");
        assert_eq!(
            server.open(&a, b"/chat", now).unwrap_err().code,
            Code::Replay
        );
        let b = client.seal(b"hello", b"/chat", now, true).unwrap();
        assert_eq!(
            server.open(&b, b"/other", now).unwrap_err().code,
            Code::Decrypt
        );
        assert_eq!(
            server.open(&b, b"/chat", now + 60_001).unwrap_err().code,
            Code::Drift
        );
        assert_eq!(server.open(&b, b"/chat", now).unwrap(), b"hello");
        assert_eq!(
            server.open(&b[..37], b"/chat", now).unwrap_err().code,
            Code::Malformed
        );
        // A server-sealed frame reflected back at the server is refused.
        let mut srv_sealer = Sealer::new(&key, Role::Server, Some((7, 1))).unwrap();
        let c = srv_sealer.seal(b"x", b"/chat", now, false).unwrap();
        assert_eq!(
            server.open(&c, b"/chat", now).unwrap_err().code,
            Code::Replay
        );
        assert!(derive_key(&MASTER[..31], "s", Scope::Ws).is_err());
    }

    #[test]
    fn replay_floor_after_capacity_eviction() {
        let key = [9u8; 32];
        let mut s = Sealer::new(&key, Role::Client, Some((1, 0))).unwrap();
        let mut o = Opener::new(&key, Role::Server, 60_000, 2, 1024).unwrap();
        let f: Vec<_> = (0..3)
            .map(|i| s.seal(b"m", b"", 1000 + i, false).unwrap())
            .collect();
        for x in &f {
            o.open(x, b"", 1002).unwrap();
        }
        // f[0] was evicted by capacity; its timestamp is now the floor.
        assert_eq!(o.open(&f[0], b"", 1002).unwrap_err().code, Code::Replay);
        let late = s.seal(b"m", b"", 1000, false).unwrap();
        assert_eq!(o.open(&late, b"", 1002).unwrap_err().code, Code::Replay);
        let fresh = s.seal(b"m", b"", 1003, false).unwrap();
        o.open(&fresh, b"", 1003).unwrap();
    }
}

//! ASP v1: AES-256-GCM sealing of application frames (layout in FORMAT.md).
//!
//! Nonce = 4-byte prefix | 8-byte big-endian counter. The prefix's top bit is the direction
//! (1 = sealed by the server, 0 = by the client), the other 31 bits are random per sealer; the
//! counter starts at a random value below 2^48 and only goes up. Two sealers of one key and
//! direction collide only if their 31-bit prefixes match AND their counter ranges overlap, and the
//! two directions can never collide. Openers reject the other direction's frames (reflection).
use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, Hash, Hasher};

use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, AES_256_GCM};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};

use crate::error::{invalid, malformed, Code, CodecError, Result};
use crate::{b64, deflate, vec_out};

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
/// Text form of a sealed frame on a WebSocket (and an HTTP body): `E:` + base64url(sealed).
pub const TEXT_PREFIX: &[u8; 2] = b"E:";
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
    text: Vec<u8>,
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
            text: Vec::new(),
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
        self.seal_with(plaintext, ns, ts, compress, vec_out(&mut out))?;
        Ok(out)
    }

    /// Like `seal_with`, but writes the text form, `E:` + base64url(sealed) (`text_len(sealed)`
    /// bytes; without deflate that is `text_len(OVERHEAD + plaintext.len())`), in one call.
    pub fn seal_text_with<'o>(
        &mut self,
        plaintext: &[u8],
        ns: &[u8],
        ts: u64,
        compress: bool,
        alloc: impl FnOnce(usize) -> Option<&'o mut [u8]>,
    ) -> Result<()> {
        let mut sealed = std::mem::take(&mut self.text);
        let r = self
            .seal_with(plaintext, ns, ts, compress, vec_out(&mut sealed))
            .and_then(|()| {
                let out = alloc(text_len(sealed.len()))
                    .ok_or(invalid("could not allocate the output"))?;
                out[..2].copy_from_slice(TEXT_PREFIX);
                b64::encode_into(&sealed, &mut out[2..]);
                Ok(())
            });
        self.text = keep_scratch(sealed);
        r
    }

    pub fn seal_text(
        &mut self,
        plaintext: &[u8],
        ns: &[u8],
        ts: u64,
        compress: bool,
    ) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.seal_text_with(plaintext, ns, ts, compress, vec_out(&mut out))?;
        Ok(out)
    }
}

/// Length of the text form (`E:` + base64url) of `sealed_len` sealed bytes.
pub const fn text_len(sealed_len: usize) -> usize {
    TEXT_PREFIX.len() + b64::encoded_len(sealed_len)
}

const NOT_BASE64URL: &str = "E: frame is not base64url";

/// The sealed bytes of a text frame, decoded into `out`: `codec.malformed` without the `E:` prefix
/// or when the rest is not unpadded base64url.
pub fn decode_text(text: &[u8], out: &mut Vec<u8>) -> Result<()> {
    let Some(body) = text.strip_prefix(TEXT_PREFIX) else {
        return Err(malformed("ASP text must start with E:"));
    };
    let n = b64::decoded_len(body.len()).ok_or(malformed(NOT_BASE64URL))?;
    out.resize(n, 0);
    if !b64::decode_into(body, out) {
        return Err(malformed(NOT_BASE64URL));
    }
    Ok(())
}

/// Scratch vectors stay allocated between frames, unless a rare large frame grew them.
fn keep_scratch(mut v: Vec<u8>) -> Vec<u8> {
    if v.capacity() > 64 * 1024 {
        v = Vec::new();
    }
    v
}

/// Nonces seen inside the window, in arrival order. When full, the oldest entry is dropped and its
/// timestamp becomes a floor: anything at or below the floor is refused, so eviction never opens a
/// replay hole (it only makes very late frames fail).
struct ReplayCache {
    seen: HashSet<NonceKey, Seeded>,
    order: VecDeque<(NonceKey, u64)>,
    capacity: usize,
    floor: Option<u64>,
}

/// A nonce as the replay cache holds it (12 bytes, like the nonce itself). Hashed without SipHash
/// (std's default, more work than the rest of a cache update for a 12-byte key) and so that one
/// sealer's consecutive counters land in consecutive buckets, 32 at a time: a full cache evicts its
/// oldest nonce on every insert, and with random buckets each eviction and insert was a cache miss
/// in a table of up to 1 MB. Where each run of 32 lands comes from a keyed multiply of the prefix
/// and the counter's upper bits with seeds random per cache, so a client cannot aim its nonces at
/// one bucket without knowing them; and only authenticated nonces are ever inserted.
#[derive(Clone, Copy, PartialEq, Eq)]
struct NonceKey([u8; NONCE_LEN]);

impl Hash for NonceKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let (p, c) = self.0.split_at(4);
        state.write_u64(u64::from_be_bytes(c.try_into().unwrap_or_default()));
        state.write_u32(u32::from_be_bytes(p.try_into().unwrap_or_default()));
    }
}

#[derive(Clone)]
struct Seeded(u64, u64);

impl Seeded {
    fn random() -> Result<Self> {
        let b = random_bytes::<16>()?;
        let (a, c) = b.split_at(8);
        let a = u64::from_le_bytes(a.try_into().unwrap_or_default());
        // Odd, so never 0: a zero multiplier would send every key to one bucket.
        let c = u64::from_le_bytes(c.try_into().unwrap_or_default()) | 1;
        Ok(Seeded(a, c))
    }
}

fn folded_multiply(a: u64, b: u64) -> u64 {
    let p = a as u128 * b as u128;
    (p as u64) ^ (p >> 64) as u64
}

/// Hashes a `NonceKey` (its counter, then its prefix); see there.
struct Fold {
    seeds: (u64, u64),
    counter: u64,
    prefix: u64,
}

impl BuildHasher for Seeded {
    type Hasher = Fold;
    fn build_hasher(&self) -> Fold {
        Fold {
            seeds: (self.0, self.1),
            counter: 0,
            prefix: 0,
        }
    }
}

/// Low bits: the bucket; top 7 bits: the tag hashbrown compares within a probe group.
const RUN_BITS: u32 = 5;
const RUN: u64 = (1 << RUN_BITS) - 1;
const TAG_SHIFT: u32 = 57;

impl Hasher for Fold {
    fn write(&mut self, bytes: &[u8]) {
        // Not used by NonceKey; a correct (slower) fallback for any other input.
        for &b in bytes {
            self.counter = folded_multiply(self.counter ^ b as u64 ^ self.seeds.0, self.seeds.1);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.counter ^= v;
    }
    fn write_u32(&mut self, v: u32) {
        self.prefix ^= v as u64;
    }
    fn finish(&self) -> u64 {
        let (s0, s1) = self.seeds;
        let lane = folded_multiply(self.prefix ^ s0, s1);
        let run = folded_multiply((self.counter >> RUN_BITS) ^ lane, s1);
        let i = self.counter & RUN;
        // Consecutive buckets within a run; distinct tags too (37 is odd), so a probe that meets
        // its neighbours does not compare their keys.
        let tag = ((run >> TAG_SHIFT) + i * 37) & 127;
        (run & !RUN & !(127 << TAG_SHIFT)) | i | tag << TAG_SHIFT
    }
}

impl ReplayCache {
    fn contains(&self, nonce: &[u8; NONCE_LEN], ts: u64) -> bool {
        self.floor.is_some_and(|f| ts <= f) || self.seen.contains(&NonceKey(*nonce))
    }

    fn insert(&mut self, nonce: [u8; NONCE_LEN], ts: u64, now: u64, window_ms: u64) {
        let nonce = NonceKey(nonce);
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
    text: Vec<u8>,
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
                seen: HashSet::with_hasher(Seeded::random()?),
                order: VecDeque::new(),
                capacity,
                floor: None,
            },
            scratch: Vec::new(),
            inflated: Vec::new(),
            text: Vec::new(),
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
        self.open_with(sealed, ns, now, vec_out(&mut out))?;
        Ok(out)
    }

    /// Opens the text form, `E:` + base64url(sealed), in one call: `decode_text`'s checks first,
    /// then `open_with`'s. Without deflate the output is `decoded - OVERHEAD` bytes.
    pub fn open_text_with<'o>(
        &mut self,
        text: &[u8],
        ns: &[u8],
        now: u64,
        alloc: impl FnOnce(usize) -> Option<&'o mut [u8]>,
    ) -> Result<()> {
        let mut sealed = std::mem::take(&mut self.text);
        let r =
            decode_text(text, &mut sealed).and_then(|()| self.open_with(&sealed, ns, now, alloc));
        self.text = keep_scratch(sealed);
        r
    }

    pub fn open_text(&mut self, text: &[u8], ns: &[u8], now: u64) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.open_text_with(text, ns, now, vec_out(&mut out))?;
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
    fn text_form_is_prefix_plus_base64url_of_the_sealed_bytes() {
        let key = derive_key(MASTER, "sess-t", Scope::Ws).unwrap();
        let now = 1_700_000_000_000;
        for (z, plain) in [
            (false, &b""[..]),
            (false, b"hi"),
            (true, b"hello hello hello"),
            (false, &[7u8; 300][..]),
        ] {
            let sealed = Sealer::new(&key, Role::Client, Some((3, 9)))
                .unwrap()
                .seal(plain, b"/t", now, z)
                .unwrap();
            let text = Sealer::new(&key, Role::Client, Some((3, 9)))
                .unwrap()
                .seal_text(plain, b"/t", now, z)
                .unwrap();
            assert_eq!(text.len(), text_len(sealed.len()));
            let mut expected = b"E:".to_vec();
            let mut enc = vec![0u8; b64::encoded_len(sealed.len())];
            b64::encode_into(&sealed, &mut enc);
            expected.extend_from_slice(&enc);
            assert_eq!(text, expected);
            let mut server =
                Opener::new(&key, Role::Server, DEFAULT_WINDOW_MS, 8, 1 << 20).unwrap();
            assert_eq!(server.open_text(&text, b"/t", now).unwrap(), plain);
            // The same frame again, in either form, is a replay.
            assert_eq!(
                server.open_text(&text, b"/t", now).unwrap_err().code,
                Code::Replay
            );
            assert_eq!(
                server.open(&sealed, b"/t", now).unwrap_err().code,
                Code::Replay
            );
        }
    }

    #[test]
    fn text_form_refusals() {
        let key = [5u8; 32];
        let now = 1_000_000;
        let mut s = Sealer::new(&key, Role::Client, Some((1, 1))).unwrap();
        let mut o = Opener::new(&key, Role::Server, 60_000, 16, 1 << 20).unwrap();
        let text = s.seal_text(b"payload", b"/n", now, false).unwrap();
        let malformed = |o: &mut Opener, t: &[u8]| {
            let e = o.open_text(t, b"/n", now).unwrap_err();
            assert_eq!(e.code, Code::Malformed, "{:?}", String::from_utf8_lossy(t));
            e.message
        };
        // No prefix, a wrong prefix, a bare prefix.
        assert_eq!(malformed(&mut o, &text[2..]), "ASP text must start with E:");
        assert_eq!(malformed(&mut o, b"e:AAAA"), "ASP text must start with E:");
        assert_eq!(malformed(&mut o, b"E"), "ASP text must start with E:");
        assert_eq!(malformed(&mut o, b"E:"), "sealed frame is truncated");
        // Characters outside base64url (padding, the standard alphabet, whitespace, non-ASCII).
        for bad in [b'=', b'+', b'/', b' ', 0xc3] {
            let mut t = text.clone();
            t[10] = bad;
            assert_eq!(malformed(&mut o, &t), NOT_BASE64URL);
        }
        // A length no base64url text has, and a decodable text too short to be a frame.
        let mut t = text.clone();
        t.push(b'A');
        if (t.len() - 2) % 4 != 1 {
            t.truncate(2 + (t.len() - 2) / 4 * 4 + 1);
        }
        assert_eq!(malformed(&mut o, &t), NOT_BASE64URL);
        // 48 characters = 36 bytes, two short of the smallest frame.
        assert_eq!(
            malformed(&mut o, &text[..2 + 48]),
            "sealed frame is truncated"
        );
        // Cut inside the tag: decodes, but the tag no longer matches.
        let cut = &text[..text.len() - 4];
        assert_eq!(
            o.open_text(cut, b"/n", now).unwrap_err().code,
            Code::Decrypt
        );
        // None of the refusals consumed the nonce: the genuine frame still opens, once.
        assert_eq!(o.open_text(&text, b"/n", now).unwrap(), b"payload");
        assert_eq!(
            o.open_text(&text, b"/n", now).unwrap_err().code,
            Code::Replay
        );
    }

    #[test]
    fn replay_cache_hash_keeps_runs_of_one_sealer_together() {
        let seeds = Seeded::random().unwrap();
        let h = |prefix: u32, counter: u64| {
            let mut n = [0u8; NONCE_LEN];
            n[..4].copy_from_slice(&prefix.to_be_bytes());
            n[4..].copy_from_slice(&counter.to_be_bytes());
            seeds.hash_one(NonceKey(n))
        };
        // 32 consecutive counters: consecutive buckets (low bits), 32 distinct tags (top 7 bits).
        let base = 7 << RUN_BITS;
        let run: Vec<u64> = (0..32).map(|i| h(0x8123_4567, base + i)).collect();
        for (i, x) in run.iter().enumerate() {
            assert_eq!(x & RUN, i as u64);
            assert_eq!(
                x & !RUN & !(127 << TAG_SHIFT),
                run[0] & !RUN & !(127 << TAG_SHIFT)
            );
        }
        let tags: HashSet<u64> = run.iter().map(|x| x >> TAG_SHIFT).collect();
        assert_eq!(tags.len(), 32);
        // 64 sealers x 256 counters spread over a 65,536-bucket table like random keys would.
        let buckets: HashSet<u64> = (0..64u32)
            .flat_map(|p| {
                (0..256u64).map(move |c| (p.wrapping_mul(0x9e37_79b9), c + p as u64 * 1000))
            })
            .map(|(p, c)| h(p, c) & 0xffff)
            .collect();
        assert!(buckets.len() > 12_000, "{} distinct buckets", buckets.len());
        // Another cache's seeds put the same run elsewhere.
        let other = Seeded::random().unwrap();
        let mut n = [0u8; NONCE_LEN];
        n[4..].copy_from_slice(&base.to_be_bytes());
        assert_ne!(
            other.hash_one(NonceKey(n)) >> RUN_BITS,
            h(0, base) >> RUN_BITS
        );
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

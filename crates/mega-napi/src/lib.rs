//! Node binding of mega-codec. One call per message each way. Inputs are `&[u8]` views of the
//! caller's Buffers (no copy). Outputs go into a Buffer the caller passes in (`out`): V8 allocates
//! pooled Buffers in ~70 ns while `napi_create_buffer` costs ~1-2 us, and result objects are
//! replaced by offsets written into a caller-owned Uint32Array for the same reason. A call returns
//! the output length n >= 0, or -n when the output did not fit: the bytes then wait in a per-thread
//! slot until `takePending(out)` copies them. No external buffers anywhere. Errors are thrown with
//! `code` set to the codec's dotted code; the kernel facade turns them into `MegaError`.
#![allow(clippy::new_without_default)]

mod alloc;
pub mod net;

#[global_allocator]
static GLOBAL: alloc::MegaAlloc = alloc::MegaAlloc;

use std::cell::RefCell;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};

use mega_codec::{asp, deflate, frame, Code, CodecError};
use napi::bindgen_prelude::{FromNapiValue, ObjectFinalize, TypeName};
use napi::{sys, Env, ValueType};
use napi_derive::napi;

type Result<T> = std::result::Result<T, napi::Error<&'static str>>;

fn err(e: CodecError) -> napi::Error<&'static str> {
    napi::Error::new(e.code.as_str(), e.message)
}

fn invalid_arg(message: &'static str) -> napi::Error<&'static str> {
    napi::Error::new("codec.invalid_argument", message)
}

thread_local! {
    static PENDING: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Output that lands in the caller's buffer when it fits, else in a spill vector.
struct Sink<'o> {
    out: &'o mut [u8],
    spill: Vec<u8>,
    len: usize,
}

impl<'o> Sink<'o> {
    fn new(out: &'o mut [u8]) -> Self {
        Sink {
            out,
            spill: Vec::new(),
            len: 0,
        }
    }
    fn alloc(&mut self, n: usize) -> Option<&mut [u8]> {
        self.len = n;
        if n <= self.out.len() {
            Some(&mut self.out[..n])
        } else {
            self.spill.resize(n, 0);
            Some(&mut self.spill[..])
        }
    }
    fn finish(self) -> f64 {
        let n = self.len;
        if n <= self.out.len() {
            return n as f64;
        }
        PENDING.with(|p| *p.borrow_mut() = self.spill);
        -(n as f64)
    }
}

/// Copies a finished output into `out`, or parks it for `takePending`.
fn emit(bytes: &[u8], out: &mut [u8]) -> f64 {
    let mut sink = Sink::new(out);
    if let Some(dst) = sink.alloc(bytes.len()) {
        dst.copy_from_slice(bytes);
    }
    sink.finish()
}

/// Like `emit`, but a large output is parked by moving the vector instead of copying it.
fn emit_vec(bytes: &mut Vec<u8>, out: &mut [u8]) -> f64 {
    if bytes.len() <= out.len() {
        return emit(bytes, out);
    }
    let n = bytes.len();
    PENDING.with(|p| *p.borrow_mut() = std::mem::take(bytes));
    -(n as f64)
}

/// Copies the output parked by the previous call that returned a negative length.
#[napi]
pub fn take_pending(mut out: OutBuf) -> Result<u32> {
    let out = out.slice();
    PENDING.with(|p| {
        let p = std::mem::take(&mut *p.borrow_mut());
        if p.len() > out.len() {
            return Err(invalid_arg("takePending: output buffer too small"));
        }
        out[..p.len()].copy_from_slice(&p);
        Ok(p.len() as u32)
    })
}

/// A writable typed-array argument (`Buffer`/`Uint8Array` or `Uint32Array`), borrowed for the call.
pub struct Writable<T> {
    ptr: *mut T,
    len: usize,
}

impl<T> Writable<T> {
    fn slice(&mut self) -> &mut [T] {
        if self.len == 0 || self.ptr.is_null() {
            return &mut [];
        }
        // The typed array outlives the call and the caller passes no view twice in one call.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

trait Element {
    const KIND: sys::napi_typedarray_type;
}
impl Element for u8 {
    const KIND: sys::napi_typedarray_type = sys::TypedarrayType::uint8_array;
}
impl Element for u32 {
    const KIND: sys::napi_typedarray_type = sys::TypedarrayType::uint32_array;
}

impl<T: Element> FromNapiValue for Writable<T> {
    unsafe fn from_napi_value(env: sys::napi_env, v: sys::napi_value) -> napi::Result<Self> {
        let (mut kind, mut len, mut data, mut ab, mut off) =
            (0, 0usize, ptr::null_mut(), ptr::null_mut(), 0usize);
        let st = unsafe {
            sys::napi_get_typedarray_info(env, v, &mut kind, &mut len, &mut data, &mut ab, &mut off)
        };
        if st != sys::Status::napi_ok || kind != T::KIND {
            return Err(napi::Error::new(
                napi::Status::InvalidArg,
                "expected a writable typed array",
            ));
        }
        Ok(Writable {
            ptr: data.cast(),
            len,
        })
    }
}

impl<T> TypeName for Writable<T> {
    fn type_name() -> &'static str {
        "TypedArray"
    }
    fn value_type() -> ValueType {
        ValueType::Object
    }
}

type OutBuf = Writable<u8>;

/// A JS string argument read as UTF-8 into a stack buffer (no allocation for short namespaces).
pub struct Str {
    len: usize,
    stack: [u8; 256],
    heap: Vec<u8>,
}

impl Str {
    fn bytes(&self) -> &[u8] {
        if self.heap.is_empty() {
            &self.stack[..self.len]
        } else {
            &self.heap[..self.len]
        }
    }
    fn as_str(&self) -> &str {
        // napi_get_value_string_utf8 always writes valid UTF-8 (lone surrogates become U+FFFD).
        std::str::from_utf8(self.bytes()).unwrap_or("")
    }
}

impl FromNapiValue for Str {
    unsafe fn from_napi_value(env: sys::napi_env, v: sys::napi_value) -> napi::Result<Self> {
        let mut s = Str {
            len: 0,
            stack: [0; 256],
            heap: Vec::new(),
        };
        let mut len = 0usize;
        let st = unsafe {
            sys::napi_get_value_string_utf8(
                env,
                v,
                s.stack.as_mut_ptr().cast(),
                s.stack.len(),
                &mut len,
            )
        };
        if st != sys::Status::napi_ok {
            return Err(napi::Error::new(
                napi::Status::StringExpected,
                "expected a string",
            ));
        }
        if len + 4 >= s.stack.len() {
            // Possibly truncated (V8 never splits a character, so a cut can land up to 3 bytes
            // short of the end): ask for the real length and read again.
            unsafe { sys::napi_get_value_string_utf8(env, v, ptr::null_mut(), 0, &mut len) };
            s.heap = vec![0; len + 1];
            unsafe {
                sys::napi_get_value_string_utf8(
                    env,
                    v,
                    s.heap.as_mut_ptr().cast(),
                    len + 1,
                    &mut len,
                )
            };
        }
        s.len = len;
        Ok(s)
    }
}

impl TypeName for Str {
    fn type_name() -> &'static str {
        "string"
    }
    fn value_type() -> ValueType {
        ValueType::String
    }
}

fn role(server: bool) -> asp::Role {
    if server {
        asp::Role::Server
    } else {
        asp::Role::Client
    }
}

/// Timestamps and sizes arrive as JS numbers; anything non-integral or negative is refused.
fn int(v: f64) -> Result<u64> {
    if !(0.0..=asp::MAX_SAFE as f64).contains(&v) || v.fract() != 0.0 {
        return Err(invalid_arg("expected a non-negative safe integer"));
    }
    Ok(v as u64)
}

fn size(v: f64) -> Result<usize> {
    int(v).map(|n| n as usize)
}

/// Equals the kernel package version when the addon was built from the same tree.
#[napi]
pub fn version() -> &'static str {
    mega_codec::VERSION
}

#[napi]
pub fn derive_key(master: &[u8], session_id: Str, scope: Str, mut out: OutBuf) -> Result<f64> {
    let scope = asp::Scope::parse(scope.as_str()).map_err(err)?;
    let key = asp::derive_key(master, session_id.as_str(), scope).map_err(err)?;
    Ok(emit(&key, out.slice()))
}

/// Low-level seal with an explicit nonce and timestamp (vectors, tooling).
#[napi]
pub fn seal(
    key: &[u8],
    nonce: &[u8],
    ts: f64,
    ns: Str,
    plaintext: &[u8],
    compress: bool,
    mut out: OutBuf,
) -> Result<f64> {
    let key = asp::Key::new(key).map_err(err)?;
    let nonce: &[u8; 12] = nonce
        .try_into()
        .map_err(|_| invalid_arg("nonce must be 12 bytes"))?;
    let mut sealed =
        asp::seal(&key, nonce, int(ts)?, ns.bytes(), plaintext, compress).map_err(err)?;
    Ok(emit_vec(&mut sealed, out.slice()))
}

/// Stateless open: tag and drift checks only.
#[napi]
pub fn open(
    key: &[u8],
    sealed: &[u8],
    ns: Str,
    now: f64,
    window_ms: f64,
    max_output: f64,
    mut out: OutBuf,
) -> Result<f64> {
    let key = asp::Key::new(key).map_err(err)?;
    let mut plain = asp::open(
        &key,
        sealed,
        ns.bytes(),
        int(now)?,
        int(window_ms)?,
        size(max_output)?,
    )
    .map_err(err)?;
    Ok(emit_vec(&mut plain, out.slice()))
}

/// Sealers and openers live in per-thread slots rather than inside their JS wrappers, so the
/// per-frame text calls (`sealText` / `openText` at the end of this file, raw N-API callbacks) can
/// reach them by slot number. A wrapper frees its slot when it is dropped (collected).
struct Slots<T> {
    items: Vec<Option<T>>,
    free: Vec<u32>,
}

impl<T> Slots<T> {
    const fn new() -> Self {
        Slots {
            items: Vec::new(),
            free: Vec::new(),
        }
    }
    fn put(&mut self, v: T) -> u32 {
        if let Some(i) = self.free.pop() {
            self.items[i as usize] = Some(v);
            return i;
        }
        self.items.push(Some(v));
        (self.items.len() - 1) as u32
    }
    fn get(&mut self, i: u32) -> Result<&mut T> {
        self.items
            .get_mut(i as usize)
            .and_then(Option::as_mut)
            .ok_or_else(|| invalid_arg("no such sealer or opener"))
    }
    fn free(&mut self, i: u32) {
        if let Some(slot) = self.items.get_mut(i as usize) {
            if slot.take().is_some() {
                self.free.push(i);
            }
        }
    }
}

thread_local! {
    static SEALERS: RefCell<Slots<asp::Sealer>> = const { RefCell::new(Slots::new()) };
    static OPENERS: RefCell<Slots<asp::Opener>> = const { RefCell::new(Slots::new()) };
}

/// Runs `f` on the sealer or opener in `slot`. No N-API call happens inside (none can re-enter).
fn with_slot<T, R>(
    slots: &'static std::thread::LocalKey<RefCell<Slots<T>>>,
    slot: u32,
    f: impl FnOnce(&mut T) -> Result<R>,
) -> Result<R> {
    slots.with(|s| f(s.borrow_mut().get(slot)?))
}

/// Frees a slot; quietly does nothing while the thread is shutting down.
fn free_slot<T>(slots: &'static std::thread::LocalKey<RefCell<Slots<T>>>, slot: u32) {
    let _ = slots.try_with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            s.free(slot);
        }
    });
}

#[napi]
pub struct Sealer {
    slot: u32,
}

#[napi]
impl Sealer {
    /// `prefix`/`counter` seed the nonce sequence for reproducible tests; omit them in production.
    #[napi(constructor)]
    pub fn new(
        key: &[u8],
        server: bool,
        prefix: Option<u32>,
        counter: Option<f64>,
    ) -> Result<Self> {
        let seed = match (prefix, counter) {
            (Some(p), Some(c)) => Some((p, int(c)?)),
            _ => None,
        };
        let inner = asp::Sealer::new(key, role(server), seed).map_err(err)?;
        Ok(Sealer {
            slot: SEALERS.with(|s| s.borrow_mut().put(inner)),
        })
    }

    /// The slot `sealText(slot, ...)` takes.
    #[napi(getter)]
    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// Without deflate the sealed size is `plaintext.length + 38`: pass a buffer of exactly that.
    #[napi]
    pub fn seal(
        &mut self,
        plaintext: &[u8],
        ns: Str,
        ts: f64,
        compress: bool,
        mut out: OutBuf,
    ) -> Result<f64> {
        let ts = int(ts)?;
        let mut sink = Sink::new(out.slice());
        with_slot(&SEALERS, self.slot, |s| {
            s.seal_with(plaintext, ns.bytes(), ts, compress, |n| sink.alloc(n))
                .map_err(err)
        })?;
        Ok(sink.finish())
    }
}

impl Drop for Sealer {
    fn drop(&mut self) {
        free_slot(&SEALERS, self.slot);
    }
}

#[napi]
pub struct Opener {
    slot: u32,
}

#[napi]
impl Opener {
    #[napi(constructor)]
    pub fn new(
        key: &[u8],
        server: bool,
        window_ms: f64,
        capacity: f64,
        max_output: f64,
    ) -> Result<Self> {
        let inner = asp::Opener::new(
            key,
            role(server),
            int(window_ms)?,
            size(capacity)?,
            size(max_output)?,
        )
        .map_err(err)?;
        Ok(Opener {
            slot: OPENERS.with(|s| s.borrow_mut().put(inner)),
        })
    }

    /// The slot `openText(slot, ...)` takes.
    #[napi(getter)]
    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// Without the deflate flag the plaintext size is `sealed.length - 38`.
    #[napi]
    pub fn open(&mut self, sealed: &[u8], ns: Str, now: f64, mut out: OutBuf) -> Result<f64> {
        let now = int(now)?;
        let mut sink = Sink::new(out.slice());
        with_slot(&OPENERS, self.slot, |o| {
            o.open_with(sealed, ns.bytes(), now, |n| sink.alloc(n))
                .map_err(err)
        })?;
        Ok(sink.finish())
    }
}

impl Drop for Opener {
    fn drop(&mut self) {
        free_slot(&OPENERS, self.slot);
    }
}

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

#[napi]
pub fn deflate(data: &[u8], level: u32, mut out: OutBuf) -> Result<f64> {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        s.clear();
        deflate::deflate_into(data, level, &mut s).map_err(err)?;
        Ok(emit_vec(&mut s, out.slice()))
    })
}

#[napi]
pub fn inflate(data: &[u8], max_output: f64, mut out: OutBuf) -> Result<f64> {
    let max = size(max_output)?;
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        deflate::inflate_into(data, max, &mut s).map_err(err)?;
        Ok(emit_vec(&mut s, out.slice()))
    })
}

fn closed(what: &'static str) -> napi::Error<&'static str> {
    napi::Error::new(Code::Closed.as_str(), what)
}

/// Tells V8 about zlib state held outside its heap, so a burst of connections that come and go
/// triggers collections (and finalizers) instead of piling up unseen native memory. Best effort:
/// a failed adjustment only loses the hint.
fn account(env: &Env, bytes: usize, sign: i64) {
    if sign > 0 {
        HELD.fetch_add(bytes, Ordering::Relaxed);
    } else {
        HELD.fetch_sub(bytes, Ordering::Relaxed);
    }
    let _ = env.adjust_external_memory(sign * bytes as i64);
}

/// zlib state held by live deflaters/inflaters, as reported to V8 (Node's per-addon counter is not
/// readable from JS, so this one is: tests and `mega` diagnostics read it).
static HELD: AtomicUsize = AtomicUsize::new(0);

#[napi]
pub fn held_bytes() -> f64 {
    HELD.load(Ordering::Relaxed) as f64
}

/// A per-connection deflate stream. `close()` frees the zlib state at once (a closed WebSocket
/// calls it); otherwise the finalizer does when V8 collects the wrapper. Either way the external
/// memory reported at construction is given back exactly once.
#[napi(custom_finalize)]
pub struct Deflater {
    inner: Option<deflate::Deflater>,
    reported: usize,
}

#[napi]
impl Deflater {
    #[napi(constructor)]
    pub fn new(env: Env, level: u32, window_bits: u32, takeover: bool) -> Result<Self> {
        let wb = u8::try_from(window_bits).unwrap_or(0);
        let inner = deflate::Deflater::new(level, wb, takeover).map_err(err)?;
        let reported = inner.footprint();
        account(&env, reported, 1);
        Ok(Deflater {
            inner: Some(inner),
            reported,
        })
    }

    #[napi]
    pub fn deflate(&mut self, data: &[u8], mut out: OutBuf) -> Result<f64> {
        let inner = self
            .inner
            .as_mut()
            .ok_or_else(|| closed("deflater is closed"))?;
        let n = emit(inner.deflate(data).map_err(err)?, out.slice());
        inner.trim();
        Ok(n)
    }

    /// Frees the zlib state now; later calls fail with `codec.closed`. Idempotent.
    #[napi]
    pub fn close(&mut self, env: Env) {
        if self.inner.take().is_some() {
            account(&env, std::mem::take(&mut self.reported), -1);
        }
    }
}

impl ObjectFinalize for Deflater {
    fn finalize(self, env: Env) -> napi::Result<()> {
        account(&env, self.reported, -1);
        Ok(())
    }
}

/// A per-connection inflate stream; same lifetime rules as [`Deflater`].
#[napi(custom_finalize)]
pub struct Inflater {
    inner: Option<deflate::Inflater>,
    reported: usize,
}

#[napi]
impl Inflater {
    #[napi(constructor)]
    pub fn new(env: Env, window_bits: u32, takeover: bool, max_output: f64) -> Result<Self> {
        let wb = u8::try_from(window_bits).unwrap_or(0);
        let inner = deflate::Inflater::new(wb, takeover, size(max_output)?).map_err(err)?;
        let reported = inner.footprint();
        account(&env, reported, 1);
        Ok(Inflater {
            inner: Some(inner),
            reported,
        })
    }

    #[napi]
    pub fn inflate(&mut self, data: &[u8], mut out: OutBuf) -> Result<f64> {
        let inner = self
            .inner
            .as_mut()
            .ok_or_else(|| closed("inflater is closed"))?;
        let n = emit(inner.inflate(data).map_err(err)?, out.slice());
        inner.trim();
        Ok(n)
    }

    /// Frees the zlib state now; later calls fail with `codec.closed`. Idempotent.
    #[napi]
    pub fn close(&mut self, env: Env) {
        if self.inner.take().is_some() {
            account(&env, std::mem::take(&mut self.reported), -1);
        }
    }
}

impl ObjectFinalize for Inflater {
    fn finalize(self, env: Env) -> napi::Result<()> {
        account(&env, self.reported, -1);
        Ok(())
    }
}

#[napi]
pub fn encode_frame(
    ty: Str,
    ns: Option<Str>,
    payload: &[u8],
    id: Option<Str>,
    mut out: OutBuf,
) -> Result<f64> {
    let (ns, id) = (ns.as_ref().map(Str::as_str), id.as_ref().map(Str::as_str));
    let mut sink = Sink::new(out.slice());
    frame::encode_frame_with(ty.as_str(), id, ns, payload, |n| sink.alloc(n)).map_err(err)?;
    Ok(sink.finish())
}

const ABSENT: u32 = u32::MAX;

/// Writes `[typeStart, typeEnd, idStart, idEnd, idEscaped, nsStart, nsEnd, nsEscaped, payloadOffset,
/// payloadLength]` into `meta` (absent id/ns: start = 0xffffffff). The JS side slices the strings.
#[napi]
pub fn validate_frame(bytes: &[u8], mut meta: Writable<u32>) -> Result<()> {
    let meta = meta.slice();
    let h = frame::validate_frame_spans(bytes).map_err(err)?;
    if meta.len() < 10 {
        return Err(invalid_arg("meta must hold 10 entries"));
    }
    let span = |s: Option<(usize, usize, bool)>| {
        s.map_or([ABSENT, ABSENT, 0], |(a, b, e)| {
            [a as u32, b as u32, e as u32]
        })
    };
    let (ps, pe) = h.payload.unwrap_or((0, 0));
    meta[..2].copy_from_slice(&[h.ty.0 as u32, h.ty.1 as u32]);
    meta[2..5].copy_from_slice(&span(h.id));
    meta[5..8].copy_from_slice(&span(h.ns));
    meta[8..10].copy_from_slice(&[ps as u32, (pe - ps) as u32]);
    Ok(())
}

#[napi]
pub fn encode_server_frame(
    kind: u32,
    ty: Str,
    ns: Str,
    target: Str,
    origin: Str,
    payload: &[u8],
    mut out: OutBuf,
) -> Result<f64> {
    let kind = u8::try_from(kind).map_err(|_| invalid_arg("kind must be 0..=255"))?;
    let mut sink = Sink::new(out.slice());
    frame::encode_server_frame_with(
        kind,
        ty.as_str(),
        ns.as_str(),
        target.as_str(),
        origin.as_str(),
        payload,
        |n| sink.alloc(n),
    )
    .map_err(err)?;
    Ok(sink.finish())
}

/// Writes `[kind, typeStart, typeEnd, nsStart, nsEnd, targetStart, targetEnd, originStart,
/// originEnd, payloadOffset, payloadLength]` into `meta`; every string is already UTF-8-checked.
#[napi]
pub fn decode_server_frame(bytes: &[u8], mut meta: Writable<u32>) -> Result<()> {
    let meta = meta.slice();
    let f = frame::decode_server_frame(bytes).map_err(err)?;
    if meta.len() < 11 {
        return Err(invalid_arg("meta must hold 11 entries"));
    }
    let at = |s: &str| (s.as_ptr() as usize - bytes.as_ptr() as usize) as u32;
    let span = |s: &str| [at(s), at(s) + s.len() as u32];
    meta[0] = f.kind as u32;
    meta[1..3].copy_from_slice(&span(f.ty));
    meta[3..5].copy_from_slice(&span(f.ns));
    meta[5..7].copy_from_slice(&span(f.target));
    meta[7..9].copy_from_slice(&span(f.origin));
    meta[9..11].copy_from_slice(&[f.payload.0 as u32, (f.payload.1 - f.payload.0) as u32]);
    Ok(())
}

/// The per-frame ASP text calls as plain N-API callbacks. A `#[napi]` function pays napi-rs's
/// per-call bookkeeping (a borrow scope allocated and locked, each buffer argument and the
/// receiver registered and checked): measured on the encrypted echo, that glue and the malloc
/// traffic it causes cost about as much as the AES-GCM work itself. These two run once per
/// WebSocket frame each way, so they read their arguments with direct N-API calls instead, and
/// reach the sealer or opener through its slot.
#[cfg_attr(test, allow(dead_code))] // registered by the module constructor, absent from test builds
mod text {
    use super::*;
    use std::ffi::CString;
    use std::panic::{catch_unwind, AssertUnwindSafe};

    unsafe fn args<const N: usize>(
        env: sys::napi_env,
        info: sys::napi_callback_info,
    ) -> Result<[sys::napi_value; N]> {
        let mut argc = N;
        let mut argv = [ptr::null_mut(); N];
        let st = unsafe {
            sys::napi_get_cb_info(
                env,
                info,
                &mut argc,
                argv.as_mut_ptr(),
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        if st != sys::Status::napi_ok || argc < N {
            return Err(invalid_arg("missing arguments"));
        }
        Ok(argv)
    }

    unsafe fn number(env: sys::napi_env, v: sys::napi_value) -> Result<f64> {
        let mut n = 0.0;
        match unsafe { sys::napi_get_value_double(env, v, &mut n) } {
            sys::Status::napi_ok => Ok(n),
            _ => Err(invalid_arg("expected a number")),
        }
    }

    unsafe fn slot(env: sys::napi_env, v: sys::napi_value) -> Result<u32> {
        let n = unsafe { number(env, v) }?;
        if !(0.0..=u32::MAX as f64).contains(&n) || n.fract() != 0.0 {
            return Err(invalid_arg("expected a slot number"));
        }
        Ok(n as u32)
    }

    unsafe fn boolean(env: sys::napi_env, v: sys::napi_value) -> Result<bool> {
        let mut b = false;
        match unsafe { sys::napi_get_value_bool(env, v, &mut b) } {
            sys::Status::napi_ok => Ok(b),
            _ => Err(invalid_arg("expected a boolean")),
        }
    }

    unsafe fn bytes(env: sys::napi_env, v: sys::napi_value) -> Result<Writable<u8>> {
        unsafe { Writable::<u8>::from_napi_value(env, v) }
            .map_err(|_| invalid_arg("expected a Buffer or Uint8Array"))
    }

    unsafe fn string(env: sys::napi_env, v: sys::napi_value) -> Result<Str> {
        unsafe { Str::from_napi_value(env, v) }.map_err(|_| invalid_arg("expected a string"))
    }

    /// The length as a JS number, or a thrown Error carrying the codec's dotted code.
    unsafe fn settle(env: sys::napi_env, r: std::thread::Result<Result<f64>>) -> sys::napi_value {
        let e = match r {
            Ok(Ok(n)) => {
                let mut v = ptr::null_mut();
                unsafe { sys::napi_create_double(env, n, &mut v) };
                return v;
            }
            Ok(Err(e)) => e,
            Err(_) => napi::Error::new(
                "codec.invalid_argument",
                "internal error in the codec addon",
            ),
        };
        let code = CString::new(e.status).unwrap_or_default();
        let message = CString::new(e.reason.replace('\0', " ")).unwrap_or_default();
        unsafe { sys::napi_throw_error(env, code.as_ptr(), message.as_ptr()) };
        ptr::null_mut()
    }

    /// `sealText(slot, plaintext, ns, ts, deflate, out)`: `E:` + base64url(sealed) into `out`.
    pub unsafe extern "C" fn seal_text(
        env: sys::napi_env,
        info: sys::napi_callback_info,
    ) -> sys::napi_value {
        let r = catch_unwind(AssertUnwindSafe(|| unsafe {
            let [slot_v, p, ns, ts, z, out] = args::<6>(env, info)?;
            let slot = slot(env, slot_v)?;
            let mut p = bytes(env, p)?;
            let ns = string(env, ns)?;
            let ts = int(number(env, ts)?)?;
            let z = boolean(env, z)?;
            let mut out = bytes(env, out)?;
            let mut sink = Sink::new(out.slice());
            let plaintext = p.slice();
            with_slot(&SEALERS, slot, |s| {
                s.seal_text_with(plaintext, ns.bytes(), ts, z, |n| sink.alloc(n))
                    .map_err(err)
            })?;
            Ok(sink.finish())
        }));
        unsafe { settle(env, r) }
    }

    /// `openText(slot, text, ns, now, out)`: opens `E:` + base64url(sealed) into `out`.
    pub unsafe extern "C" fn open_text(
        env: sys::napi_env,
        info: sys::napi_callback_info,
    ) -> sys::napi_value {
        let r = catch_unwind(AssertUnwindSafe(|| unsafe {
            let [slot_v, text, ns, now, out] = args::<5>(env, info)?;
            let slot = slot(env, slot_v)?;
            let mut text = bytes(env, text)?;
            let ns = string(env, ns)?;
            let now = int(number(env, now)?)?;
            let mut out = bytes(env, out)?;
            let mut sink = Sink::new(out.slice());
            let text = text.slice();
            with_slot(&OPENERS, slot, |o| {
                o.open_text_with(text, ns.bytes(), now, |n| sink.alloc(n))
                    .map_err(err)
            })?;
            Ok(sink.finish())
        }));
        unsafe { settle(env, r) }
    }

    #[napi(module_exports)]
    pub fn exports(exports: napi::bindgen_prelude::Object, env: Env) -> napi::Result<()> {
        use napi::JsValue;
        type Callback =
            unsafe extern "C" fn(sys::napi_env, sys::napi_callback_info) -> sys::napi_value;
        let fns: [(&std::ffi::CStr, Callback); 2] =
            [(c"sealText", seal_text), (c"openText", open_text)];
        for (name, cb) in fns {
            let mut f = ptr::null_mut();
            let st = unsafe {
                sys::napi_create_function(
                    env.raw(),
                    name.as_ptr(),
                    name.to_bytes().len() as isize,
                    Some(cb),
                    ptr::null_mut(),
                    &mut f,
                )
            };
            let st = if st == sys::Status::napi_ok {
                unsafe { sys::napi_set_named_property(env.raw(), exports.raw(), name.as_ptr(), f) }
            } else {
                st
            };
            if st != sys::Status::napi_ok {
                return Err(napi::Error::from_reason(
                    "could not export the ASP text calls",
                ));
            }
        }
        Ok(())
    }
}

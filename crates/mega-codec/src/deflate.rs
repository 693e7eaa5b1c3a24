//! Raw deflate in the RFC 7692 (permessage-deflate) message format: every message ends with a sync
//! flush whose `00 00 ff ff` tail is stripped by the sender and appended back by the receiver.
//! Stateful objects keep one zlib stream per connection (context takeover), because a fresh stream
//! per message costs ~10-20 us of allocation and table clearing.
use std::cell::RefCell;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::error::{invalid, malformed, Code, CodecError, Result};

/// The empty stored block a sync flush ends with (RFC 7692 section 7.2.1).
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
pub const DEFAULT_LEVEL: u32 = 6;
pub const DEFAULT_WINDOW_BITS: u8 = 15;
/// Inflated size limit per message unless the caller picks another one.
pub const DEFAULT_MAX_OUTPUT: usize = 16 << 20;

/// Output buffers above this are dropped after use (see `trim`).
const TRIM_ABOVE: usize = 64 * 1024;

const TOO_LARGE: CodecError =
    CodecError::new(Code::TooLarge, "inflated message exceeds the output limit");

fn check_params(level: u32, window_bits: u8) -> Result<()> {
    if level > 9 {
        return Err(invalid("deflate level must be 0..=9"));
    }
    // zlib silently turns a raw window of 8 into 9; refuse it instead of lying about the window.
    if !(9..=15).contains(&window_bits) {
        return Err(invalid("windowBits must be 9..=15"));
    }
    Ok(())
}

/// Compresses `input` with a sync flush and appends it to `out` without the tail.
fn compress_message(c: &mut Compress, input: &[u8], out: &mut Vec<u8>) -> Result<()> {
    if input.is_empty() {
        // zlib emits nothing for a sync flush right after another one (Z_BUF_ERROR), so write the
        // empty stored block ourselves: [0x00] + tail, as RFC 7692 section 7.2.3.6 allows.
        out.push(0x00);
        return Ok(());
    }
    out.reserve(input.len() + input.len() / 8 + 64);
    let mut pos = 0;
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(1024));
        }
        let before = c.total_in();
        c.compress_vec(&input[pos..], out, FlushCompress::Sync)
            .map_err(|_| CodecError::new(Code::Closed, "deflate stream failed"))?;
        pos += (c.total_in() - before) as usize;
        // A sync flush is complete once all input is in and zlib left output space unused.
        if pos == input.len() && out.len() < out.capacity() {
            break;
        }
    }
    if !out.ends_with(&TAIL) {
        return Err(CodecError::new(
            Code::Closed,
            "deflate stream did not end on a sync flush",
        ));
    }
    out.truncate(out.len() - TAIL.len());
    Ok(())
}

/// Output per zlib call. Matches node:zlib's default chunk size so that both backends see errors
/// and the size limit at the same points: an error inside a chunk wins, the limit is checked after
/// each chunk (a stream that overflows the limit before its first error is `too_large`).
const CHUNK: usize = 16 * 1024;

/// Inflates one message (tail appended) into `out`. Returns true when the stream hit a final block.
fn inflate_message(
    d: &mut Decompress,
    input: &[u8],
    out: &mut Vec<u8>,
    max: usize,
) -> Result<bool> {
    out.clear();
    // One contiguous input, like the TS side's Buffer.concat([data, TAIL]), keeps chunking identical.
    let mut framed = Vec::with_capacity(input.len() + TAIL.len());
    framed.extend_from_slice(input);
    framed.extend_from_slice(&TAIL);
    let mut pos = 0;
    loop {
        let len = out.len();
        out.resize(len + CHUNK, 0);
        let (in0, out0) = (d.total_in(), d.total_out());
        let status = d.decompress(&framed[pos..], &mut out[len..], FlushDecompress::Sync);
        let produced = (d.total_out() - out0) as usize;
        pos += (d.total_in() - in0) as usize;
        out.truncate(len + produced);
        let status = status.map_err(|_| malformed("invalid deflate data"))?;
        if out.len() > max {
            return Err(TOO_LARGE);
        }
        if status == Status::StreamEnd {
            return Ok(true);
        }
        if produced < CHUNK {
            return Ok(false);
        }
    }
}

/// Memory zlib documents for a raw deflate stream: `(1 << (windowBits + 2)) + (1 << (memLevel + 9))`
/// (memLevel 8), plus its ~6 KB state; what a binding reports to the JS garbage collector.
pub fn deflater_footprint(window_bits: u8) -> usize {
    (1usize << (window_bits + 2)) + (1 << 17) + 6 * 1024
}

/// Memory zlib documents for an inflate stream: the `1 << windowBits` window plus its ~7 KB state.
pub fn inflater_footprint(window_bits: u8) -> usize {
    (1usize << window_bits) + 7 * 1024
}

/// Stateful compressor for one connection direction.
pub struct Deflater {
    c: Compress,
    window_bits: u8,
    takeover: bool,
    broken: bool,
    out: Vec<u8>,
}

impl Deflater {
    pub fn new(level: u32, window_bits: u8, takeover: bool) -> Result<Self> {
        check_params(level, window_bits)?;
        Ok(Self {
            c: Compress::new_with_window_bits(Compression::new(level), false, window_bits),
            window_bits,
            takeover,
            broken: false,
            out: Vec::new(),
        })
    }

    /// Bytes of zlib state this object holds (see [`deflater_footprint`]).
    pub fn footprint(&self) -> usize {
        deflater_footprint(self.window_bits)
    }

    /// Gives back an output buffer grown past 64 KiB by one large message, so an idle connection
    /// holds only its zlib state. Call after the last output slice was copied out.
    pub fn trim(&mut self) {
        if self.out.capacity() > TRIM_ABOVE {
            self.out = Vec::new();
        }
    }

    /// Compresses one message; the returned slice is valid until the next call.
    pub fn deflate(&mut self, input: &[u8]) -> Result<&[u8]> {
        if self.broken {
            return Err(CodecError::new(
                Code::Closed,
                "deflater unusable after an earlier failure",
            ));
        }
        if !self.takeover {
            self.c.reset();
        }
        self.out.clear();
        if let Err(e) = compress_message(&mut self.c, input, &mut self.out) {
            self.broken = true;
            return Err(e);
        }
        Ok(&self.out)
    }
}

/// Stateful decompressor for one connection direction.
pub struct Inflater {
    d: Decompress,
    window_bits: u8,
    takeover: bool,
    broken: bool,
    max_output: usize,
    out: Vec<u8>,
}

impl Inflater {
    pub fn new(window_bits: u8, takeover: bool, max_output: usize) -> Result<Self> {
        check_params(0, window_bits)?;
        Ok(Self {
            d: Decompress::new_with_window_bits(false, window_bits),
            window_bits,
            takeover,
            broken: false,
            max_output,
            out: Vec::new(),
        })
    }

    /// Bytes of zlib state this object holds (see [`inflater_footprint`]).
    pub fn footprint(&self) -> usize {
        inflater_footprint(self.window_bits)
    }

    /// Gives back an output buffer grown past 64 KiB by one large message, so an idle connection
    /// holds only its zlib state. Call after the last output slice was copied out.
    pub fn trim(&mut self) {
        if self.out.capacity() > TRIM_ABOVE {
            self.out = Vec::new();
        }
    }

    /// Inflates one message; the returned slice is valid until the next call. After a failure the
    /// shared window is unknown, so every later call fails with `codec.closed`.
    pub fn inflate(&mut self, input: &[u8]) -> Result<&[u8]> {
        if self.broken {
            return Err(CodecError::new(
                Code::Closed,
                "inflater unusable after an earlier failure",
            ));
        }
        if !self.takeover {
            self.d.reset(false);
        }
        match inflate_message(&mut self.d, input, &mut self.out, self.max_output) {
            Ok(ended) => {
                // A final block ends the stream: the peer starts a fresh one (empty window).
                if ended {
                    self.d = Decompress::new_with_window_bits(false, self.window_bits);
                }
                Ok(&self.out)
            }
            Err(e) => {
                self.broken = true;
                Err(e)
            }
        }
    }
}

thread_local! {
    // Stateless calls reuse one stream per thread: reset is far cheaper than a fresh allocation.
    static STATELESS_DEFLATE: RefCell<Option<(u32, Compress)>> = const { RefCell::new(None) };
    static STATELESS_INFLATE: RefCell<Option<Decompress>> = const { RefCell::new(None) };
}

/// Stateless deflate of one message (window 15): same bytes as a fresh `Deflater`.
pub fn deflate_into(input: &[u8], level: u32, out: &mut Vec<u8>) -> Result<()> {
    check_params(level, DEFAULT_WINDOW_BITS)?;
    STATELESS_DEFLATE.with(|cell| {
        let mut slot = cell.borrow_mut();
        let c = match &mut *slot {
            Some((l, c)) if *l == level => {
                c.reset();
                c
            }
            _ => {
                let c = Compress::new_with_window_bits(
                    Compression::new(level),
                    false,
                    DEFAULT_WINDOW_BITS,
                );
                &mut slot.insert((level, c)).1
            }
        };
        compress_message(c, input, out)
    })
}

pub fn deflate(input: &[u8], level: u32) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    deflate_into(input, level, &mut out)?;
    Ok(out)
}

/// Stateless inflate of one message (tail appended), limited to `max_output` bytes.
pub fn inflate_into(input: &[u8], max_output: usize, out: &mut Vec<u8>) -> Result<()> {
    STATELESS_INFLATE.with(|cell| {
        let mut slot = cell.borrow_mut();
        let d = slot
            .get_or_insert_with(|| Decompress::new_with_window_bits(false, DEFAULT_WINDOW_BITS));
        d.reset(false);
        inflate_message(d, input, out, max_output).map(|_| ())
    })
}

pub fn inflate(input: &[u8], max_output: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    inflate_into(input, max_output, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_with_takeover() {
        let mut d = Deflater::new(6, 15, true).unwrap();
        let mut i = Inflater::new(15, true, DEFAULT_MAX_OUTPUT).unwrap();
        let msg = br#"{"type":"chat.msg","payload":{"text":"hello hello hello"}}"#;
        let a = d.deflate(msg).unwrap().to_vec();
        let b = d.deflate(msg).unwrap().to_vec();
        assert!(b.len() < a.len(), "second message must reuse the window");
        assert_eq!(d.deflate(b"").unwrap(), [0u8]);
        let c = d.deflate(msg).unwrap().to_vec();
        assert_eq!(i.inflate(&a).unwrap(), msg);
        assert_eq!(i.inflate(&b).unwrap(), msg);
        assert_eq!(i.inflate(&[0]).unwrap(), b"");
        assert_eq!(i.inflate(&c).unwrap(), msg);
    }

    #[test]
    fn stateless_matches_fresh_deflater() {
        let msg = vec![b'x'; 10_000];
        let mut d = Deflater::new(6, 15, false).unwrap();
        assert_eq!(deflate(&msg, 6).unwrap(), d.deflate(&msg).unwrap());
        assert_eq!(inflate(&deflate(&msg, 6).unwrap(), 1 << 20).unwrap(), msg);
        assert_eq!(deflate(b"", 6).unwrap(), [0u8]);
        assert_eq!(inflate(&[0], 10).unwrap(), b"");
    }

    #[test]
    fn trim_drops_large_output_buffers_and_keeps_working() {
        let mut d = Deflater::new(6, 15, true).unwrap();
        let mut i = Inflater::new(15, true, DEFAULT_MAX_OUTPUT).unwrap();
        let big: Vec<u8> = (0..300_000u32).map(|n| (n * 7 % 251) as u8).collect();
        let z = d.deflate(&big).unwrap().to_vec();
        d.trim();
        assert_eq!(d.out.capacity(), 0);
        assert_eq!(i.inflate(&z).unwrap(), &big[..]);
        i.trim();
        assert_eq!(i.out.capacity(), 0);
        let z2 = d.deflate(b"after trim").unwrap().to_vec();
        assert_eq!(i.inflate(&z2).unwrap(), b"after trim");
        assert_eq!(d.footprint(), deflater_footprint(15));
        assert_eq!(i.footprint(), inflater_footprint(15));
    }

    #[test]
    fn limit_and_garbage() {
        let z = deflate(&vec![0u8; 100_000], 9).unwrap();
        assert_eq!(inflate(&z, 99_999).unwrap_err().code, Code::TooLarge);
        assert_eq!(inflate(&z, 100_000).unwrap().len(), 100_000);
        assert_eq!(
            inflate(&[0xff, 0xff, 0xff], 100).unwrap_err().code,
            Code::Malformed
        );
        let mut i = Inflater::new(15, true, 10).unwrap();
        assert_eq!(i.inflate(&z).unwrap_err().code, Code::TooLarge);
        assert_eq!(i.inflate(&[0]).unwrap_err().code, Code::Closed);
    }
}

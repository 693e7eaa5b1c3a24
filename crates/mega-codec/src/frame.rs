//! Client envelope frames (SPEC section 5) and the binary server-to-server frame (FORMAT.md).
use crate::error::{invalid, malformed, Result};
use crate::vec_out;

pub const MAX_TYPE_LEN: usize = 128;
/// Raw bytes between the quotes of `id` and `ns` in an inbound envelope.
pub const MAX_FIELD_LEN: usize = 256;
/// Nesting depth of the whole inbound document (the envelope object is depth 1).
pub const MAX_DEPTH: usize = 64;
pub const SERVER_MAGIC: u8 = 0x4d;
pub const SERVER_VERSION: u8 = 1;

/// `type` is dotted lowercase words: `[a-z][a-z0-9_]*` separated by single dots.
pub fn is_valid_type(t: &[u8]) -> bool {
    if t.is_empty() || t.len() > MAX_TYPE_LEN {
        return false;
    }
    let mut word_start = true;
    for &b in t {
        match b {
            b'a'..=b'z' => word_start = false,
            b'0'..=b'9' | b'_' if !word_start => {}
            b'.' if !word_start => word_start = true,
            _ => return false,
        }
    }
    !word_start
}

fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// JSON string exactly as `JSON.stringify` writes it for well-formed text.
pub fn write_json_string(s: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    if !s.iter().any(|&b| needs_escape(b)) {
        out.extend_from_slice(s);
    } else {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for &b in s {
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                0x08 => out.extend_from_slice(b"\\b"),
                0x0c => out.extend_from_slice(b"\\f"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                0..=0x1f => out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[(b >> 4) as usize],
                    HEX[(b & 15) as usize],
                ]),
                _ => out.push(b),
            }
        }
    }
    out.push(b'"');
}

/// Everything before the payload: `{"type":"t","id":"..","ns":"..","payload":`.
pub fn envelope_head(
    ty: &str,
    id: Option<&str>,
    ns: Option<&str>,
    head: &mut Vec<u8>,
) -> Result<()> {
    if !is_valid_type(ty.as_bytes()) {
        return Err(invalid(
            "frame type must be dotted lowercase words (max 128 bytes)",
        ));
    }
    head.extend_from_slice(b"{\"type\":\"");
    head.extend_from_slice(ty.as_bytes());
    head.push(b'"');
    if let Some(id) = id {
        head.extend_from_slice(b",\"id\":");
        write_json_string(id.as_bytes(), head);
    }
    if let Some(ns) = ns {
        head.extend_from_slice(b",\"ns\":");
        write_json_string(ns.as_bytes(), head);
    }
    head.extend_from_slice(b",\"payload\":");
    Ok(())
}

/// Builds an outbound envelope once from already-serialised payload JSON (not re-validated), so a
/// broadcast to N recipients serialises once.
pub fn encode_frame_with<'o>(
    ty: &str,
    id: Option<&str>,
    ns: Option<&str>,
    payload: &[u8],
    alloc: impl FnOnce(usize) -> Option<&'o mut [u8]>,
) -> Result<()> {
    if payload.is_empty() {
        return Err(invalid("payload JSON must not be empty"));
    }
    let mut head = Vec::with_capacity(64);
    envelope_head(ty, id, ns, &mut head)?;
    let h = head.len();
    let out = alloc(h + payload.len() + 1).ok_or(invalid("could not allocate the output"))?;
    out[..h].copy_from_slice(&head);
    out[h..h + payload.len()].copy_from_slice(payload);
    out[h + payload.len()] = b'}';
    Ok(())
}

pub fn encode_frame(
    ty: &str,
    id: Option<&str>,
    ns: Option<&str>,
    payload: &[u8],
) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    encode_frame_with(ty, id, ns, payload, vec_out(&mut out))?;
    Ok(out)
}

/// What `validate_frame` learns from an inbound envelope. `payload` is the byte range of the
/// payload value (None when absent), so the caller can parse just that slice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameHeader<'a> {
    pub ty: &'a str,
    pub id: Option<String>,
    pub ns: Option<String>,
    pub payload: Option<(usize, usize)>,
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
    depth: usize,
}

const BAD: crate::error::CodecError = malformed("frame is not a valid envelope");

impl<'a> Scanner<'a> {
    fn peek(&self) -> Result<u8> {
        self.b.get(self.i).copied().ok_or(BAD)
    }
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }
    fn expect(&mut self, c: u8) -> Result<()> {
        if self.peek()? != c {
            return Err(BAD);
        }
        self.i += 1;
        Ok(())
    }
    /// At an opening quote: returns the raw content range and whether it holds escapes.
    fn string(&mut self) -> Result<(usize, usize, bool)> {
        self.expect(b'"')?;
        let start = self.i;
        let mut esc = false;
        loop {
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return Ok((start, self.i - 1, esc));
                }
                b'\\' => {
                    esc = true;
                    self.i += 1;
                    match self.peek()? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 1,
                        b'u' => {
                            let hex = self.b.get(self.i + 1..self.i + 5).ok_or(BAD)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return Err(BAD);
                            }
                            self.i += 5;
                        }
                        _ => return Err(BAD),
                    }
                }
                0..=0x1f => return Err(BAD),
                _ => self.i += 1,
            }
        }
    }
    fn digits(&mut self) -> Result<()> {
        if !self.peek()?.is_ascii_digit() {
            return Err(BAD);
        }
        while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
        Ok(())
    }
    fn number(&mut self) -> Result<()> {
        if self.peek()? == b'-' {
            self.i += 1;
        }
        if self.peek()? == b'0' {
            self.i += 1;
        } else {
            self.digits()?;
        }
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            self.digits()?;
        }
        if let Some(b'e' | b'E') = self.b.get(self.i) {
            self.i += 1;
            if let Some(b'+' | b'-') = self.b.get(self.i) {
                self.i += 1;
            }
            self.digits()?;
        }
        Ok(())
    }
    fn literal(&mut self, word: &[u8]) -> Result<()> {
        if self.b.get(self.i..self.i + word.len()) != Some(word) {
            return Err(BAD);
        }
        self.i += word.len();
        Ok(())
    }
    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        self.i += 1;
        if self.depth > MAX_DEPTH {
            return Err(BAD);
        }
        self.ws();
        Ok(())
    }
    /// An object or array body after its opening byte: comma-separated `item`s, then `close`.
    fn items(&mut self, close: u8, mut item: impl FnMut(&mut Self) -> Result<()>) -> Result<()> {
        self.enter()?;
        if self.peek()? != close {
            loop {
                item(self)?;
                self.ws();
                if self.peek()? != b',' {
                    break;
                }
                self.i += 1;
                self.ws();
            }
        }
        self.expect(close)?;
        self.depth -= 1;
        Ok(())
    }
    fn value(&mut self) -> Result<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' => self.items(b'}', |p| {
                p.string()?;
                p.ws();
                p.expect(b':')?;
                p.ws();
                p.value()
            }),
            b'[' => self.items(b']', Self::value),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(BAD),
        }
    }
    /// `id` / `ns`: a string or null; returns the raw content span and whether it holds escapes.
    fn opt_string(&mut self) -> Result<Option<(usize, usize, bool)>> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            return Ok(None);
        }
        let (s, e, esc) = self.string()?;
        if e - s > MAX_FIELD_LEN {
            return Err(malformed("envelope id/ns too long"));
        }
        // Escapes only ever sit between whole characters, so checking the raw bytes is enough.
        std::str::from_utf8(&self.b[s..e])
            .map_err(|_| malformed("envelope string is not valid UTF-8"))?;
        Ok(Some((s, e, esc)))
    }
}

fn hex4(h: &[u8]) -> u32 {
    h.iter().fold(0, |acc, &c| {
        acc * 16 + (c as char).to_digit(16).unwrap_or(0)
    })
}

/// Decodes a scanned (already syntax-checked) JSON string body. Lone surrogates become U+FFFD,
/// which is what the TS backend's `toWellFormed()` produces.
fn decode_string(raw: &[u8], esc: bool) -> Result<String> {
    let bad_utf8 = malformed("envelope string is not valid UTF-8");
    if !esc {
        return std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| bad_utf8);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] != b'\\' {
            out.push(raw[i]);
            i += 1;
            continue;
        }
        let c = raw[i + 1];
        i += 2;
        let ch = match c {
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let u = hex4(&raw[i..i + 4]);
                i += 4;
                if (0xd800..0xdc00).contains(&u) && raw.get(i..i + 2) == Some(b"\\u") {
                    let lo = hex4(&raw[i + 2..i + 6]);
                    if (0xdc00..0xe000).contains(&lo) {
                        i += 6;
                        char::from_u32(0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00))
                            .unwrap_or('\u{fffd}')
                    } else {
                        '\u{fffd}'
                    }
                } else {
                    char::from_u32(u).unwrap_or('\u{fffd}')
                }
            }
            other => other as char,
        };
        let mut buf = [0u8; 4];
        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
    }
    String::from_utf8(out).map_err(|_| bad_utf8)
}

/// Fast check of an inbound text frame: a JSON object with only the keys `type` (required, dotted
/// lowercase, no escapes), `id`, `ns` (string or null) and `payload` (any JSON value), each at most
/// once, nesting at most 64. Keys must be written without escapes. Syntax is checked in full
/// (RFC 8259); UTF-8 is checked only inside `id` and `ns` (text frames are UTF-8-checked by the
/// WebSocket layer). Every failure is `codec.malformed`.
pub fn validate_frame_spans(b: &[u8]) -> Result<FrameSpans> {
    let mut s = Scanner { b, i: 0, depth: 0 };
    s.ws();
    if s.peek()? != b'{' {
        return Err(BAD);
    }
    s.enter()?;
    let (mut ty, mut id, mut ns, mut payload) = (None, None, None, None);
    let mut seen = 0u8;
    if s.peek()? != b'}' {
        loop {
            let (ks, ke, kesc) = s.string()?;
            s.ws();
            s.expect(b':')?;
            s.ws();
            let bit = match (&b[ks..ke], kesc) {
                (b"type", false) => 1,
                (b"id", false) => 2,
                (b"ns", false) => 4,
                (b"payload", false) => 8,
                _ => return Err(malformed("unknown envelope key")),
            };
            if seen & bit != 0 {
                return Err(malformed("duplicate envelope key"));
            }
            seen |= bit;
            match bit {
                1 => {
                    let (ts, te, tesc) = s.string()?;
                    if tesc || !is_valid_type(&b[ts..te]) {
                        return Err(malformed("envelope type must be dotted lowercase words"));
                    }
                    ty = Some((ts, te));
                }
                2 => id = s.opt_string()?,
                4 => ns = s.opt_string()?,
                _ => {
                    let start = s.i;
                    s.value()?;
                    payload = Some((start, s.i));
                }
            }
            s.ws();
            if s.peek()? != b',' {
                break;
            }
            s.i += 1;
            s.ws();
        }
    }
    s.expect(b'}')?;
    s.ws();
    if s.i != b.len() {
        return Err(BAD);
    }
    let ty = ty.ok_or(malformed("envelope has no type"))?;
    Ok(FrameSpans {
        ty,
        id,
        ns,
        payload,
    })
}

/// Byte ranges found by `validate_frame_spans`; `id`/`ns` carry an "has escapes" flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSpans {
    pub ty: (usize, usize),
    pub id: Option<(usize, usize, bool)>,
    pub ns: Option<(usize, usize, bool)>,
    pub payload: Option<(usize, usize)>,
}

/// `validate_frame_spans` plus decoded strings.
pub fn validate_frame(b: &[u8]) -> Result<FrameHeader<'_>> {
    let s = validate_frame_spans(b)?;
    let text = |span: Option<(usize, usize, bool)>| {
        span.map(|(a, e, esc)| decode_string(&b[a..e], esc))
            .transpose()
    };
    Ok(FrameHeader {
        // The scanner accepted only ASCII here.
        ty: std::str::from_utf8(&b[s.ty.0..s.ty.1]).map_err(|_| BAD)?,
        id: text(s.id)?,
        ns: text(s.ns)?,
        payload: s.payload,
    })
}

/// Decoded binary server frame; `payload` is a byte range of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFrame<'a> {
    pub kind: u8,
    pub ty: &'a str,
    pub ns: &'a str,
    pub target: &'a str,
    pub origin: &'a str,
    pub payload: (usize, usize),
}

pub fn server_frame_len(ty: &str, ns: &str, target: &str, origin: &str, payload: &[u8]) -> usize {
    4 + 1 + ty.len() + 2 + ns.len() + 2 + target.len() + 2 + origin.len() + 4 + payload.len()
}

pub fn encode_server_frame_with<'o>(
    kind: u8,
    ty: &str,
    ns: &str,
    target: &str,
    origin: &str,
    payload: &[u8],
    alloc: impl FnOnce(usize) -> Option<&'o mut [u8]>,
) -> Result<()> {
    if !is_valid_type(ty.as_bytes()) {
        return Err(invalid(
            "frame type must be dotted lowercase words (max 128 bytes)",
        ));
    }
    if [ns, target, origin]
        .iter()
        .any(|s| s.len() > u16::MAX as usize)
        || payload.len() > u32::MAX as usize
    {
        return Err(invalid("server frame field too long"));
    }
    let out = alloc(server_frame_len(ty, ns, target, origin, payload))
        .ok_or(invalid("could not allocate the output"))?;
    out[..4].copy_from_slice(&[SERVER_MAGIC, SERVER_VERSION, kind, 0]);
    out[4] = ty.len() as u8;
    let mut p = 5;
    out[p..p + ty.len()].copy_from_slice(ty.as_bytes());
    p += ty.len();
    for s in [ns, target, origin] {
        out[p..p + 2].copy_from_slice(&(s.len() as u16).to_be_bytes());
        out[p + 2..p + 2 + s.len()].copy_from_slice(s.as_bytes());
        p += 2 + s.len();
    }
    out[p..p + 4].copy_from_slice(&(payload.len() as u32).to_be_bytes());
    out[p + 4..].copy_from_slice(payload);
    Ok(())
}

pub fn encode_server_frame(
    kind: u8,
    ty: &str,
    ns: &str,
    target: &str,
    origin: &str,
    payload: &[u8],
) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    encode_server_frame_with(kind, ty, ns, target, origin, payload, vec_out(&mut out))?;
    Ok(out)
}

pub fn decode_server_frame(b: &[u8]) -> Result<ServerFrame<'_>> {
    let bad = malformed("not a valid server frame");
    if b.len() < 5 || b[0] != SERVER_MAGIC || b[1] != SERVER_VERSION || b[3] != 0 {
        return Err(bad);
    }
    let tl = b[4] as usize;
    let ty = b.get(5..5 + tl).ok_or(bad.clone())?;
    if !is_valid_type(ty) {
        return Err(bad);
    }
    let mut p = 5 + tl;
    let field = |p: &mut usize| -> Result<&str> {
        let l = b.get(*p..*p + 2).ok_or(bad.clone())?;
        let l = u16::from_be_bytes([l[0], l[1]]) as usize;
        let s = b.get(*p + 2..*p + 2 + l).ok_or(bad.clone())?;
        *p += 2 + l;
        std::str::from_utf8(s).map_err(|_| bad.clone())
    };
    let ns = field(&mut p)?;
    let target = field(&mut p)?;
    let origin = field(&mut p)?;
    let l = b.get(p..p + 4).ok_or(bad.clone())?;
    let l = u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize;
    if b.len() - (p + 4) != l {
        return Err(bad);
    }
    Ok(ServerFrame {
        kind: b[2],
        ty: std::str::from_utf8(ty).map_err(|_| bad.clone())?,
        ns,
        target,
        origin,
        payload: (p + 4, b.len()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_and_validate_envelope() {
        let f = encode_frame(
            "chat.msg",
            Some("c\"1\n"),
            Some("/chat"),
            br#"{"a":[1,2.5e-3,true,null]}"#,
        )
        .unwrap();
        assert_eq!(
            std::str::from_utf8(&f).unwrap(),
            r#"{"type":"chat.msg","id":"c\"1\n","ns":"/chat","payload":{"a":[1,2.5e-3,true,null]}}"#
        );
        let h = validate_frame(&f).unwrap();
        assert_eq!(h.ty, "chat.msg");
        assert_eq!(h.id.as_deref(), Some("c\"1\n"));
        assert_eq!(
            &f[h.payload.unwrap().0..h.payload.unwrap().1],
            br#"{"a":[1,2.5e-3,true,null]}"#
        );
        assert_eq!(
            validate_frame(br#" {"type":"a.b_2"} "#).unwrap().payload,
            None
        );
        assert_eq!(
            validate_frame(br#"{"id":"\ud83d\ude00\ud800x","type":"a"}"#)
                .unwrap()
                .id
                .as_deref(),
            Some("😀\u{fffd}x")
        );
        for bad in [
            &br#"{"type":"A"}"#[..],
            br#"{"type":"a."}"#,
            br#"{"id":"x"}"#,
            br#"{"type":"a","type":"b"}"#,
            br#"{"type":"a","extra":1}"#,
            br#"{"type":"a","payload":01}"#,
            br#"{"type":"a","payload":[1,]}"#,
            br#"{"type":"a"} x"#,
            br#"{"type":"a","payload":"\x"}"#,
            br#"{"type":"a""#,
            b"",
            b"[]",
        ] {
            assert!(
                validate_frame(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let deep = format!(
            r#"{{"type":"a","payload":{}{}}}"#,
            "[".repeat(63),
            "]".repeat(63)
        );
        assert!(validate_frame(deep.as_bytes()).is_ok());
        let deeper = format!(
            r#"{{"type":"a","payload":{}{}}}"#,
            "[".repeat(64),
            "]".repeat(64)
        );
        assert!(validate_frame(deeper.as_bytes()).is_err());
    }

    #[test]
    fn server_frame_roundtrip() {
        let f = encode_server_frame(1, "chat.msg", "/chat", "room-1", "inst-a", b"{}").unwrap();
        let d = decode_server_frame(&f).unwrap();
        assert_eq!(
            (d.kind, d.ty, d.ns, d.target, d.origin),
            (1, "chat.msg", "/chat", "room-1", "inst-a")
        );
        assert_eq!(&f[d.payload.0..d.payload.1], b"{}");
        for n in 0..f.len() {
            assert!(decode_server_frame(&f[..n]).is_err());
        }
    }
}

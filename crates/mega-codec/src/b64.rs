//! base64url without padding (RFC 4648 §5), the text form of ASP frames (`E:` + base64url).
//!
//! Decoding accepts exactly what the TS backend accepts (`^[A-Za-z0-9_-]*$`, length % 4 != 1, then
//! Node's decoder): no padding, no whitespace, and — like Node — the unused low bits of a final
//! partial group are ignored rather than refused, so both backends open the same texts.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const INVALID: u8 = 0xff;

const DECODE: [u8; 256] = {
    let mut t = [INVALID; 256];
    let mut i = 0;
    while i < 64 {
        t[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    t
};

/// Text length of `n` bytes.
pub const fn encoded_len(n: usize) -> usize {
    n / 3 * 4 + [0, 2, 3][n % 3]
}

/// Byte length of a text of `n` characters, `None` when no base64url text has that length.
pub const fn decoded_len(n: usize) -> Option<usize> {
    if n % 4 == 1 {
        None
    } else {
        Some(n / 4 * 3 + [0, 0, 1, 2][n % 4])
    }
}

/// Writes the text of `src` into `dst` (exactly `encoded_len(src.len())` bytes).
pub fn encode_into(src: &[u8], dst: &mut [u8]) {
    debug_assert_eq!(dst.len(), encoded_len(src.len()));
    let a = |v: u64| ALPHABET[(v & 63) as usize];
    // 6 bytes -> 8 characters per step, through one u64 (zipped chunks: no bounds checks).
    let whole = src.len() / 6;
    for (c, o) in src.chunks_exact(6).zip(dst.chunks_exact_mut(8)) {
        let mut b = [0u8; 8];
        b[2..].copy_from_slice(c);
        let v = u64::from_be_bytes(b);
        for (k, slot) in o.iter_mut().enumerate() {
            *slot = a(v >> (42 - 6 * k));
        }
    }
    let (src, dst) = (&src[whole * 6..], &mut dst[whole * 8..]);
    let mut chunks = src.chunks_exact(3);
    let mut o = 0;
    for c in &mut chunks {
        let v = (c[0] as u64) << 16 | (c[1] as u64) << 8 | c[2] as u64;
        dst[o..o + 4].copy_from_slice(&[a(v >> 18), a(v >> 12), a(v >> 6), a(v)]);
        o += 4;
    }
    match *chunks.remainder() {
        [x] => dst[o..o + 2].copy_from_slice(&[a(x as u64 >> 2), a((x as u64) << 4)]),
        [x, y] => {
            let v = (x as u64) << 8 | y as u64;
            dst[o..o + 3].copy_from_slice(&[a(v >> 10), a(v >> 4), a(v << 2)]);
        }
        _ => {}
    }
}

/// Decodes `src` into `dst` (exactly `decoded_len(src.len())` bytes); false when `src` holds a
/// character outside the alphabet (the caller checked the length with `decoded_len`).
pub fn decode_into(src: &[u8], dst: &mut [u8]) -> bool {
    debug_assert_eq!(Some(dst.len()), decoded_len(src.len()));
    let d = |c: u8| DECODE[c as usize] as u64;
    // INVALID is 0xff: an invalid character sets a bit above the low 6 in `bad`.
    let mut bad = 0u64;
    // 8 characters -> 6 bytes per step, through one u64.
    let whole = src.len() / 8;
    for (c, o) in src.chunks_exact(8).zip(dst.chunks_exact_mut(6)) {
        let mut v = 0u64;
        for &ch in c {
            let x = d(ch);
            bad |= x;
            v = v << 6 | x;
        }
        o.copy_from_slice(&v.to_be_bytes()[2..]);
    }
    let (src, dst) = (&src[whole * 8..], &mut dst[whole * 6..]);
    let mut chunks = src.chunks_exact(4);
    let mut o = 0;
    for c in &mut chunks {
        let (w, x, y, z) = (d(c[0]), d(c[1]), d(c[2]), d(c[3]));
        bad |= w | x | y | z;
        let v = w << 18 | x << 12 | y << 6 | z;
        dst[o..o + 3].copy_from_slice(&[(v >> 16) as u8, (v >> 8) as u8, v as u8]);
        o += 3;
    }
    match *chunks.remainder() {
        [w, x] => {
            let (w, x) = (d(w), d(x));
            bad |= w | x;
            dst[o] = (w << 2 | x >> 4) as u8;
        }
        [w, x, y] => {
            let (w, x, y) = (d(w), d(x), d(y));
            bad |= w | x | y;
            let v = w << 12 | x << 6 | y;
            dst[o..o + 2].copy_from_slice(&[(v >> 10) as u8, (v >> 2) as u8]);
        }
        _ => {}
    }
    bad & !63 == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(src: &[u8]) -> String {
        let mut out = vec![0u8; encoded_len(src.len())];
        encode_into(src, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn dec(src: &str) -> Option<Vec<u8>> {
        let mut out = vec![0u8; decoded_len(src.len())?];
        decode_into(src.as_bytes(), &mut out).then_some(out)
    }

    #[test]
    fn rfc4648_vectors_without_padding() {
        for (plain, text) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(enc(plain.as_bytes()), text);
            assert_eq!(dec(text).unwrap(), plain.as_bytes());
        }
        assert_eq!(enc(&[0xfb, 0xff, 0xfe]), "-__-");
        assert_eq!(dec("-__-").unwrap(), [0xfb, 0xff, 0xfe]);
    }

    #[test]
    fn round_trip_every_length_and_byte() {
        let data: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        for n in 0..data.len() {
            assert_eq!(dec(&enc(&data[..n])).unwrap(), &data[..n]);
        }
    }

    #[test]
    fn refusals_and_node_leniency() {
        assert_eq!(dec("Zm9vY"), None); // length % 4 == 1
        for bad in ["Zm9v=", "Zm9+", "Zm/v", "Zm 9", "Zm9=", "Z\u{e9}9v", "=="] {
            assert_eq!(dec(bad), None, "{bad}");
        }
        // A bad character at every position, wide and narrow steps alike.
        let good = enc(&(0..40u8).collect::<Vec<_>>());
        for i in 0..good.len() {
            for bad in [b'=', b'+', b'/', b'.', 0x80, 0xff] {
                let mut t = good.clone().into_bytes();
                t[i] = bad;
                let mut out = vec![0u8; decoded_len(t.len()).unwrap()];
                assert!(!decode_into(&t, &mut out), "position {i}");
            }
        }
        // Unused trailing bits are ignored, as Node's decoder does.
        assert_eq!(dec("Zh").unwrap(), b"f");
        assert_eq!(dec("Zm9").unwrap(), b"fo");
    }
}

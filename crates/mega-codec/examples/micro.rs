//! Quick timing of the crate's hot calls without the Node boundary: cargo run --release --example micro
//! (`MICRO_ONLY=<substring>` for a subset)
use std::time::Instant;

use mega_codec::{asp, deflate, frame};

/// `MICRO_ONLY=open` times only the calls whose name contains "open".
fn time(name: &str, iters: u32, mut f: impl FnMut() -> usize) {
    if std::env::var("MICRO_ONLY").is_ok_and(|only| !name.contains(&only)) {
        return;
    }
    let mut sink = 0;
    for _ in 0..iters / 10 {
        sink += f();
    }
    let t = Instant::now();
    for _ in 0..iters {
        sink += f();
    }
    let ns = t.elapsed().as_nanos() as f64 / iters as f64;
    println!("{name:<32} {ns:>9.0} ns  ({sink})");
}

fn main() {
    for size in [64usize, 1024, 16384] {
        let data: Vec<u8> = (0..size)
            .map(|i| b"{\"user\":\"u1\",\"text\":\"message number\"},"[i % 38])
            .collect();
        println!("-- {size} B");
        let mut d = deflate::Deflater::new(6, 15, true).unwrap();
        time("deflate ctx", 20_000, || d.deflate(&data).unwrap().len());
        for level in [1u32, 2, 3, 4, 5, 7, 9] {
            let mut d1 = deflate::Deflater::new(level, 15, true).unwrap();
            time(&format!("deflate ctx level {level}"), 20_000, || {
                d1.deflate(&data).unwrap().len()
            });
        }
        time("deflate stateless", 20_000, || {
            deflate::deflate(&data, 6).unwrap().len()
        });
        let z = deflate::deflate(&data, 6).unwrap();
        time("inflate stateless", 20_000, || {
            deflate::inflate(&z, 1 << 24).unwrap().len()
        });
        let key = [7u8; 32];
        let mut s = asp::Sealer::new(&key, asp::Role::Client, None).unwrap();
        time("seal", 100_000, || {
            s.seal(&data, b"/chat", 1, false).unwrap().len()
        });
        // Opener in steady state: the replay cache full (16,384), one eviction per frame.
        // (Pre-sealed frames: 64 and 1024 B only, 16 KiB ones would need ~2 GB.)
        let n = if size <= 1024 { 100_000usize } else { 0 };
        // Timestamps go up by one per frame (the clock the opener sees too), so the replay floor
        // left by each eviction stays below the next frame.
        let sealed: Vec<Vec<u8>> = (0..n + n / 10)
            .map(|t| s.seal(&data, b"/chat", 1 + t as u64, false).unwrap())
            .collect();
        let mut o = asp::Opener::new(&key, asp::Role::Server, 60_000, 16_384, 1 << 24).unwrap();
        let mut i = 0;
        if n > 0 {
            time("open (replay cache full)", n as u32, || {
                i += 1;
                o.open(&sealed[i - 1], b"/chat", i as u64).unwrap().len()
            });
        }
        let texts: Vec<Vec<u8>> = (0..n + n / 10)
            .map(|t| s.seal_text(&data, b"/chat", 1 + t as u64, false).unwrap())
            .collect();
        let mut o = asp::Opener::new(&key, asp::Role::Server, 60_000, 16_384, 1 << 24).unwrap();
        let mut i = 0;
        if n > 0 {
            time("open_text (replay cache full)", n as u32, || {
                i += 1;
                o.open_text(&texts[i - 1], b"/chat", i as u64)
                    .unwrap()
                    .len()
            });
        }
        time("seal_text", 100_000, || {
            s.seal_text(&data, b"/chat", 1, false).unwrap().len()
        });
        // 64 clients of one session interleaved (the bench:ws echo): 64 nonce sequences.
        let mut clients: Vec<asp::Sealer> = (0..64)
            .map(|_| asp::Sealer::new(&key, asp::Role::Client, None).unwrap())
            .collect();
        let mixed: Vec<Vec<u8>> = (0..n + n / 10)
            .map(|t| {
                clients[t % 64]
                    .seal(&data, b"/chat", 1 + t as u64, false)
                    .unwrap()
            })
            .collect();
        let mut o = asp::Opener::new(&key, asp::Role::Server, 60_000, 16_384, 1 << 24).unwrap();
        let mut i = 0;
        if n > 0 {
            time("open, 64 clients (cache full)", n as u32, || {
                i += 1;
                o.open(&mixed[i - 1], b"/chat", i as u64).unwrap().len()
            });
        }
        let f = frame::encode_frame("chat.msg", None, Some("/chat"), &data).unwrap();
        time("encode frame", 100_000, || {
            frame::encode_frame("chat.msg", None, Some("/chat"), &data)
                .unwrap()
                .len()
        });
        time("validate frame (non-JSON payload)", 100_000, || {
            frame::validate_frame(&f).map(|h| h.ty.len()).unwrap_or(0)
        });
    }
}

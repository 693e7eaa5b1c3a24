//! Quick timing of the crate's hot calls without the Node boundary: cargo run --release --example micro
use std::time::Instant;

use mega_codec::{asp, deflate, frame};

fn time(name: &str, iters: u32, mut f: impl FnMut() -> usize) {
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

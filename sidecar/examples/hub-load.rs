//! `npm run bench:hub`: a broadcast storm through the real hub binary. N bridges each hold M
//! sessions in one channel and each sends K broadcasts; every broadcast reaches the N-1 other
//! bridges. Prints the hub's frame deliveries per second and per CPU-second (utime + stime from
//! /proc/<pid>/stat), for a 100 B message, a 2 KiB message, and a 2 KiB message on deflate links
//! (compressed once per broadcast, shared by its recipients), side by side.
//!
//! Options (env): HUB_BIN (default target/release/mega-hub), BENCH_BRIDGES (8),
//! BENCH_SESSIONS (100), BENCH_MESSAGES (20000 per bridge).
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// Frames a sender may be ahead of the slowest receiver (the hub closes a bridge whose queue
/// passes 16384 frames, so the storm keeps well below that).
const WINDOW: u64 = 4096;

fn env_num(k: &str, d: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU seconds (user + system) of a process.
fn cpu_seconds(pid: u32, tck: f64) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let n = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (n(11) + n(12)) / tck
}

fn start_hub() -> (Child, u16) {
    let bin = std::env::var("HUB_BIN")
        .unwrap_or_else(|_| format!("{}/../target/release/mega-hub", env!("CARGO_MANIFEST_DIR")));
    let mut child = Command::new(&bin)
        .env("MEGA_WSHUB_TOKENS", "bench")
        .env("MEGA_WSHUB_PORT", "0")
        .env("MEGA_WSHUB_MAX_FRAME_BYTES", "1048576")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start {bin}: {e} (run `cargo build --release -p mega-hub` first)")
        });
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("hub output");
    let port = line
        .split_whitespace()
        .find_map(|w| w.rsplit_once(':').and_then(|(_, p)| p.parse().ok()))
        .expect("listening line");
    (child, port)
}

struct Result {
    deliveries: u64,
    secs: f64,
    hub_cpu: f64,
    load_cpu: f64,
}

async fn storm(
    port: u16,
    n: usize,
    m: usize,
    k: u64,
    msg_bytes: usize,
    deflate: bool,
    hub_pid: u32,
) -> Result {
    let tck = clk_tck();
    let url = format!("ws://127.0.0.1:{port}");
    let caps = if deflate {
        r#","capabilities":["deflate"]"#
    } else {
        ""
    };
    let mut links = Vec::new();
    for b in 0..n {
        let (mut ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .expect("connect");
        let reg = format!(
            r#"{{"type":"register","payload":{{"token":"bench","bridgeId":"bench-{b}-{msg_bytes}"{caps}}}}}"#
        );
        ws.send(Message::text(reg)).await.unwrap();
        ws.next().await.unwrap().unwrap();
        for s in 0..m {
            let j = format!(
                r#"{{"type":"join","payload":{{"sessionId":"b{b}-s{s}-{msg_bytes}","userId":"u{s}","channels":["storm"]}}}}"#
            );
            ws.feed(Message::text(j)).await.unwrap();
        }
        ws.flush().await.unwrap();
        links.push(ws);
    }
    // Drain the join announcements: bridge i hears the joins of the bridges registered after it.
    let mut split = Vec::new();
    for (i, ws) in links.into_iter().enumerate() {
        let (tx, mut rx) = ws.split();
        let mut seen = 0;
        while seen < (m * (n - 1 - i)) as u64 {
            if let Some(Ok(Message::Text(_))) = rx.next().await {
                seen += 1;
            }
        }
        split.push((tx, rx));
    }
    let text = "x".repeat(msg_bytes);
    let body = format!(
        r#"{{"type":"broadcast","payload":{{"channel":"storm","message":{{"text":"{text}"}}}}}}"#
    );
    let sent = Arc::new(AtomicU64::new(0));
    let received: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let sent_by: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let total = k * n as u64 * (n as u64 - 1);
    let (cpu0, load0, t0) = (
        cpu_seconds(hub_pid, tck),
        cpu_seconds(std::process::id(), tck),
        Instant::now(),
    );
    let mut tasks = Vec::new();
    for (i, (mut tx, mut rx)) in split.into_iter().enumerate() {
        let (received1, sent, sent_by, body) = (
            received.clone(),
            sent.clone(),
            sent_by.clone(),
            body.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while let Some(Ok(m)) = rx.next().await {
                if matches!(m, Message::Text(_) | Message::Binary(_)) {
                    received1[i].fetch_add(1, Relaxed);
                }
            }
        }));
        let received2 = Arc::clone(&received);
        tasks.push(tokio::spawn(async move {
            let mut mine = 0;
            while mine < k {
                // Window: no receiver may lag more than WINDOW frames behind what was sent to it.
                let all = sent.load(Relaxed);
                let lagging = (0..n)
                    .any(|j| all - sent_by[j].load(Relaxed) > received2[j].load(Relaxed) + WINDOW);
                if lagging {
                    tokio::time::sleep(Duration::from_micros(200)).await;
                    continue;
                }
                let batch = 64.min(k - mine);
                for _ in 0..batch {
                    tx.feed(Message::text(body.clone())).await.unwrap();
                }
                tx.flush().await.unwrap();
                mine += batch;
                sent.fetch_add(batch, Relaxed);
                sent_by[i].fetch_add(batch, Relaxed);
            }
            std::future::pending::<()>().await;
        }));
    }
    while received.iter().map(|r| r.load(Relaxed)).sum::<u64>() < total {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let secs = t0.elapsed().as_secs_f64();
    let hub_cpu = cpu_seconds(hub_pid, tck) - cpu0;
    let load_cpu = cpu_seconds(std::process::id(), tck) - load0;
    for t in tasks {
        t.abort();
    }
    Result {
        deliveries: total,
        secs,
        hub_cpu,
        load_cpu,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let n = env_num("BENCH_BRIDGES", 8) as usize;
    let m = env_num("BENCH_SESSIONS", 100) as usize;
    let k = env_num("BENCH_MESSAGES", 20_000);
    let (mut hub, port) = start_hub();
    let pid = hub.id();
    println!("hub broadcast storm: {n} bridges x {m} sessions, {k} broadcasts per bridge, each to {} bridges", n - 1);
    println!(
        "(2-core machine shared with the load generator; CPU is the hub process's utime+stime)\n"
    );
    println!(
        "{:<26} {:>12} {:>14} {:>18} {:>11} {:>10}",
        "case", "deliveries", "deliveries/s", "deliveries/CPU-s", "hub CPU s", "load CPU s"
    );
    let mut rows = Vec::new();
    let cases = [
        ("100 B message, text", 100, false),
        ("2 KiB message, text", 2048, false),
        ("2 KiB message, deflate", 2048, true),
    ];
    for (name, bytes, deflate) in cases {
        let r = storm(port, n, m, k, bytes, deflate, pid).await;
        let per_cpu = r.deliveries as f64 / r.hub_cpu.max(0.01);
        println!(
            "{:<26} {:>12} {:>14.0} {:>18.0} {:>11.2} {:>10.2}",
            name,
            r.deliveries,
            r.deliveries as f64 / r.secs,
            per_cpu,
            r.hub_cpu,
            r.load_cpu
        );
        rows.push((name, per_cpu));
    }
    println!(
        "\nratios (deliveries per hub CPU-s): 2 KiB/100 B text {:.2}, 2 KiB deflate/text {:.2}\n\
         each bridge delivery fans out to {m} local sessions ({:.0} session deliveries per hub CPU-s, 100 B case)",
        rows[1].1 / rows[0].1,
        rows[2].1 / rows[1].1,
        rows[0].1 * m as f64
    );
    println!("context: Centrifugo publishes ~12.5k/s per CPU at 1M connections; text case here = {:.0}x that, per bridge frame", rows[0].1 / 12_500.0);
    let _ = hub.kill();
    let _ = hub.wait();
}

//! A8: a bridge that stops reading is removed from every roster at once when its queue overflows
//! (bytes or frames), or after MEGA_WSHUB_WRITE_TIMEOUT_MS when its socket accepts nothing, over
//! real sockets against the real server (the same `Server` the binary runs).
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use mega_hub::config::Config;
use mega_hub::hub::lock;
use mega_hub::server::Server;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

async fn start(cfg: Config) -> (Arc<Server>, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let server = Server::new(cfg);
    let s = server.clone();
    tokio::spawn(async move { s.run(listener, std::future::pending()).await });
    (server, url)
}

async fn bridge(url: &str, name: &str) -> Ws {
    let (mut ws, _) = connect_async(url).await.unwrap();
    let reg = json!({ "type": "register", "payload": { "token": "tok", "bridgeId": name } });
    ws.send(Message::Text(reg.to_string().into()))
        .await
        .unwrap();
    let ok = next(&mut ws).await;
    assert_eq!(ok["type"], "register_ok", "{ok}");
    ws
}

/// Next non-heartbeat frame.
async fn next(ws: &mut Ws) -> Value {
    loop {
        match ws.next().await.expect("link open").expect("frame") {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] != "heartbeat" {
                    return v;
                }
            }
            Message::Close(c) => panic!("closed: {c:?}"),
            _ => {}
        }
    }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// Sets up `watch` (reads everything) and `stuck` (joined to "c", then never reads again) and a
/// sender `a`. Returns them with the stuck link kept alive but unread.
async fn setup(url: &str) -> (Ws, Ws, Ws) {
    let mut watch = bridge(url, "watch").await;
    let mut stuck = bridge(url, "stuck").await;
    let a = bridge(url, "a").await;
    send(
        &mut stuck,
        json!({ "type": "join", "payload": { "sessionId": "s-stuck", "userId": "u", "channels": ["c"] } }),
    )
    .await;
    let j = next(&mut watch).await;
    assert_eq!(j["payload"]["sessionId"], "s-stuck");
    (watch, stuck, a)
}

/// Waits (bounded) for watch to hear that `stuck` was evicted.
async fn evicted_within(watch: &mut Ws, bound: Duration) -> Duration {
    let t0 = Instant::now();
    let v = tokio::time::timeout(bound, next(watch))
        .await
        .unwrap_or_else(|_| panic!("stuck bridge still present after {bound:?}"));
    assert_eq!(
        v,
        json!({ "type": "bulk_leave", "payload": { "bridgeId": "stuck", "reason": "evicted", "sessionIds": ["s-stuck"] } })
    );
    t0.elapsed()
}

fn frame_64k(i: usize) -> Value {
    json!({ "type": "broadcast", "payload": { "channel": "c", "message": { "i": i, "pad": "x".repeat(60 * 1024) } } })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a8_a_stuck_bridge_is_evicted_at_once_when_its_queue_overflows() {
    let mut cfg = Config::with_tokens(&["tok"]);
    cfg.max_frame_bytes = 128 * 1024;
    cfg.queue_frames = 64;
    // No write timeout in play: only the overflow may evict here.
    cfg.write_timeout_ms = 600_000;
    let (server, url) = start(cfg).await;
    let (mut watch, _stuck, mut a) = setup(&url).await;
    // Broadcast until the hub reports the overflow (kernel buffers absorb a few MB first).
    let mut sent = 0;
    while server.metrics.queue_full() == 0 {
        send(&mut a, frame_64k(sent)).await;
        sent += 1;
        assert!(sent < 2000, "no overflow after {sent} frames");
        if sent % 16 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let took = evicted_within(&mut watch, Duration::from_secs(2)).await;
    assert!(took < Duration::from_secs(2));
    assert_eq!(lock(&server.hub).counts(), (2, 0, 0));
    // The frames queued for it are released with it.
    let t0 = Instant::now();
    while server.queued_bytes() > 0 {
        assert!(t0.elapsed() < Duration::from_secs(2), "queue not released");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a8_each_bridge_queue_is_bounded_in_bytes() {
    let mut cfg = Config::with_tokens(&["tok"]);
    cfg.max_frame_bytes = 128 * 1024;
    cfg.queue_frames = 16_384;
    cfg.queue_bytes = 1 << 20;
    cfg.write_timeout_ms = 600_000;
    let limit = cfg.queue_bytes;
    let (server, url) = start(cfg).await;
    let (mut watch, _stuck, mut a) = setup(&url).await;
    let mut sent = 0;
    let mut peak = 0;
    while server.metrics.queue_full() == 0 {
        send(&mut a, frame_64k(sent)).await;
        sent += 1;
        peak = peak.max(server.queued_bytes());
        assert!(sent < 2000, "no overflow after {sent} frames");
        if sent % 16 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    // Far below the 16384-frame limit: the byte bound evicted it, and never held more than it.
    assert!(sent < 1000, "{sent}");
    assert!(peak <= limit, "queued {peak} > {limit}");
    evicted_within(&mut watch, Duration::from_secs(2)).await;
    assert_eq!(lock(&server.hub).counts(), (2, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a8_a_bridge_whose_socket_accepts_nothing_is_evicted_after_the_write_timeout() {
    let mut cfg = Config::with_tokens(&["tok"]);
    cfg.max_frame_bytes = 128 * 1024;
    // The queue never overflows here: only the write timeout may evict.
    cfg.queue_frames = 16_384;
    cfg.queue_bytes = 1 << 30;
    cfg.write_timeout_ms = 500;
    let (server, url) = start(cfg).await;
    let (mut watch, _stuck, mut a) = setup(&url).await;
    // ~20 MB: more than loopback socket buffers hold, so the hub's writes stall.
    for i in 0..320 {
        send(&mut a, frame_64k(i)).await;
    }
    let took = evicted_within(&mut watch, Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(server.metrics.queue_full(), 0);
    assert_eq!(lock(&server.hub).counts(), (2, 0, 0));
}

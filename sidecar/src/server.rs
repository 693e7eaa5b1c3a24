//! Sockets: one listener serving WebSocket upgrades (bridges), GET /metrics and GET /healthz;
//! one task per bridge link; drain on shutdown.
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::config::Config;
use crate::hub::{close, lock, Gone, Handle, Hub, Link, OutFrame, Verdict};
use crate::metrics::{Dropped, Metrics};
use crate::protocol::{epoch_ms, frame_value};

const MAX_HEAD_BYTES: usize = 16 * 1024;
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Outbound frames written per flush.
const WRITE_BATCH: usize = 256;

pub struct Server {
    pub cfg: Arc<Config>,
    pub hub: Arc<Mutex<Hub>>,
    pub metrics: Arc<Metrics>,
    next_id: AtomicU64,
    active: AtomicUsize,
    idle: Notify,
    epoch: Instant,
}

impl Server {
    pub fn new(cfg: Config) -> Arc<Self> {
        let cfg = Arc::new(cfg);
        let metrics = Arc::new(Metrics::default());
        Arc::new(Self {
            hub: Arc::new(Mutex::new(Hub::new(cfg.clone(), metrics.clone()))),
            cfg,
            metrics,
            next_id: AtomicU64::new(1),
            active: AtomicUsize::new(0),
            idle: Notify::new(),
            epoch: Instant::now(),
        })
    }

    /// Text bytes queued to all bridges right now.
    pub fn queued_bytes(&self) -> usize {
        lock(&self.hub).queued_bytes()
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Accepts until `stop` resolves, then drains: every link gets close 4503 and the call returns
    /// once all links ended or `drain_ms` passed.
    pub async fn run(
        self: &Arc<Self>,
        listener: TcpListener,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                r = listener.accept() => {
                    if let Ok((s, _)) = r {
                        let me = self.clone();
                        me.active.fetch_add(1, Relaxed);
                        tokio::spawn(async move {
                            me.connection(s).await;
                            if me.active.fetch_sub(1, Relaxed) == 1 {
                                me.idle.notify_waiters();
                            }
                        });
                    }
                }
                _ = &mut stop => break,
            }
        }
        drop(listener);
        let handles = {
            let mut h = lock(&self.hub);
            h.draining = true;
            h.handles()
        };
        for h in handles {
            let _ = h.ctl.send((close::DRAIN, "hub.draining".into()));
        }
        let deadline = tokio::time::sleep(Duration::from_millis(self.cfg.drain_ms));
        tokio::pin!(deadline);
        while self.active.load(Relaxed) > 0 {
            let idle = self.idle.notified();
            tokio::select! {
                _ = idle => {}
                _ = &mut deadline => break,
                // Re-check now and then: a notification can race the counter.
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    }

    async fn connection(self: &Arc<Self>, mut s: TcpStream) {
        let _ = s.set_nodelay(true);
        let Ok(Ok(Some((head, rest)))) =
            tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut s)).await
        else {
            let _ = s
                .write_all(
                    b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                )
                .await;
            return;
        };
        let req = parse_head(&head);
        let draining = lock(&self.hub).draining;
        if let Some(key) = req.ws_key.as_deref().filter(|_| req.upgrade) {
            if req.method != "GET" || req.ws_version.as_deref() != Some("13") {
                let _ = s
                    .write_all(b"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
                    .await;
                return;
            }
            if draining {
                let _ = respond(
                    &mut s,
                    "503 Service Unavailable",
                    "text/plain",
                    "draining\n",
                )
                .await;
                return;
            }
            let accept = derive_accept_key(key.as_bytes());
            let resp = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            );
            if s.write_all(resp.as_bytes()).await.is_err() {
                return;
            }
            self.metrics.connections.fetch_add(1, Relaxed);
            let mut wc = WebSocketConfig::default();
            wc.max_message_size = Some(self.cfg.max_frame_bytes);
            wc.max_frame_size = Some(self.cfg.max_frame_bytes);
            let last_write = Arc::new(AtomicU64::new(self.now()));
            let s = Tracked {
                inner: s,
                last_write: last_write.clone(),
                epoch: self.epoch,
            };
            let ws = WebSocketStream::from_partially_read(s, rest, Role::Server, Some(wc)).await;
            self.link(ws, last_write).await;
            return;
        }
        let _ = match (
            req.method.as_str(),
            req.path.split('?').next().unwrap_or(""),
        ) {
            ("GET", "/metrics") => {
                let ((b, se, c), q) = {
                    let h = lock(&self.hub);
                    (h.counts(), h.queued_bytes())
                };
                respond(
                    &mut s,
                    "200 OK",
                    "text/plain; version=0.0.4",
                    &self.metrics.render(b, se, c, q),
                )
                .await
            }
            ("GET", "/healthz") if draining => {
                respond(
                    &mut s,
                    "503 Service Unavailable",
                    "text/plain",
                    "draining\n",
                )
                .await
            }
            ("GET", "/healthz") => respond(&mut s, "200 OK", "text/plain", "ok\n").await,
            ("GET", _) => respond(&mut s, "404 Not Found", "text/plain", "not found\n").await,
            _ => {
                respond(
                    &mut s,
                    "405 Method Not Allowed",
                    "text/plain",
                    "method not allowed\n",
                )
                .await
            }
        };
    }

    async fn link(self: &Arc<Self>, ws: WebSocketStream<Tracked>, last_write: Arc<AtomicU64>) {
        let (mut sink, mut stream) = ws.split();
        let (tx, mut rx) = mpsc::channel::<Arc<OutFrame>>(self.cfg.queue_frames);
        let (ctl_tx, mut ctl_rx) = mpsc::unbounded_channel();
        let conn = self.next_id.fetch_add(1, Relaxed);
        let handle = Handle::new(tx, ctl_tx, self.cfg.queue_bytes);
        let mut link = Link::new(conn, handle.clone(), self.now());
        let write_timeout = self.cfg.write_timeout_ms;
        let hb = self.cfg.heartbeat_ms;
        let mut tick = tokio::time::interval(Duration::from_millis((hb / 4).max(5)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_hb_sent = self.now();
        let register_by = tokio::time::sleep(Duration::from_millis(self.cfg.register_timeout_ms));
        tokio::pin!(register_by);
        let max = self.cfg.max_frame_bytes;
        let threshold = self.cfg.compress_threshold;
        let metrics = self.metrics.clone();

        let (code, reason, why): (u16, String, Gone) = loop {
            tokio::select! {
                m = stream.next() => {
                    let now = self.now();
                    let verdict = match m {
                        Some(Ok(Message::Text(t))) => link.on_text(&self.hub, t.as_bytes(), now),
                        Some(Ok(Message::Binary(b))) => {
                            metrics.bytes_in.fetch_add(b.len() as u64, Relaxed);
                            link.on_binary(&self.hub, &b, max, now)
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {
                            link.last_seen = now;
                            Verdict::Continue
                        }
                        Some(Ok(Message::Close(_))) | None => break (0, String::new(), Gone::Closed),
                        Some(Err(WsError::Capacity(CapacityError::MessageTooLong { .. }))) => {
                            metrics.dropped(Dropped::Oversize);
                            Verdict::Close(close::TOO_BIG, "hub.too_big".into())
                        }
                        Some(Err(WsError::Utf8(_))) => Verdict::Close(1007, "hub.invalid_utf8".into()),
                        Some(Err(_)) => break (0, String::new(), Gone::Closed),
                    };
                    if let Verdict::Close(c, r) = verdict {
                        break (c, r, Gone::Evicted);
                    }
                }
                f = rx.recv() => {
                    let Some(f) = f else { continue };
                    // The write stalls while the peer reads nothing; it is raced against the write
                    // timeout (no byte accepted for write_timeout_ms) and against a close request
                    // (the hub evicted this bridge on overflow), so neither waits on the socket.
                    last_write.store(self.now(), Relaxed);
                    let deflate = link.deflate;
                    let batch = async {
                        let mut next = Some(f);
                        let mut n = 0;
                        while let Some(f) = next.take() {
                            handle.taken(&f);
                            let msg = match f.deflated(threshold).filter(|_| deflate) {
                                Some(z) => Message::Binary(z.clone()),
                                None => Message::Text(f.text.clone()),
                            };
                            drop(f);
                            metrics.bytes_out.fetch_add(msg.len() as u64, Relaxed);
                            sink.feed(msg).await?;
                            n += 1;
                            if n < WRITE_BATCH {
                                next = rx.try_recv().ok();
                            }
                        }
                        sink.flush().await
                    };
                    tokio::select! {
                        r = batch => {
                            if r.is_err() {
                                break (0, String::new(), Gone::Closed);
                            }
                        }
                        _ = stalled(&last_write, self.epoch, write_timeout) => {
                            break (close::SLOW, "hub.write_timeout".into(), Gone::Evicted);
                        }
                        c = ctl_rx.recv() => {
                            let Some((c, r)) = c else { continue };
                            break (c, r, gone_for(c));
                        }
                    }
                }
                c = ctl_rx.recv() => {
                    let Some((c, r)) = c else { continue };
                    break (c, r, gone_for(c));
                }
                _ = tick.tick() => {
                    let now = self.now();
                    if link.expired(now, hb) {
                        break (close::HEARTBEAT, "hub.heartbeat_timeout".into(), Gone::HeartbeatTimeout);
                    }
                    if link.bridge.is_some() && now.saturating_sub(last_hb_sent) >= hb {
                        last_hb_sent = now;
                        let f = OutFrame::new(frame_value("heartbeat", &serde_json::json!({ "ts": epoch_ms() })));
                        last_write.store(now, Relaxed);
                        tokio::select! {
                            r = sink.send(Message::Text(f.text.clone())) => {
                                if r.is_err() {
                                    break (0, String::new(), Gone::Closed);
                                }
                            }
                            _ = stalled(&last_write, self.epoch, write_timeout) => {
                                break (close::SLOW, "hub.write_timeout".into(), Gone::Evicted);
                            }
                        }
                    }
                }
                _ = &mut register_by, if link.bridge.is_none() => {
                    break (close::POLICY, "hub.register_timeout".into(), Gone::Closed);
                }
            }
        };
        link.on_closed(&self.hub, why);
        if code == close::SLOW {
            // It reads nothing: release its queue now and do not wait on it. The close frame gets
            // a short chance (a slow but live bridge learns why), the peer's close none.
            rx.close();
            while let Ok(f) = rx.try_recv() {
                handle.taken(&f);
            }
            drop(rx);
            let frame = CloseFrame {
                code: CloseCode::from(code),
                reason: reason.into(),
            };
            let _ = tokio::time::timeout(
                Duration::from_millis(500),
                sink.send(Message::Close(Some(frame))),
            )
            .await;
            return;
        }
        if code != 0 {
            // Flush what was already queued (e.g. the `error` that explains a 1008), then close.
            let flush = async {
                while let Ok(f) = rx.try_recv() {
                    handle.taken(&f);
                    if sink.feed(Message::Text(f.text.clone())).await.is_err() {
                        break;
                    }
                }
                let frame = CloseFrame {
                    code: CloseCode::from(code),
                    reason: reason.into(),
                };
                sink.send(Message::Close(Some(frame))).await
            };
            let _ = tokio::time::timeout(Duration::from_secs(2), flush).await;
            // Wait briefly for the peer's close so the TCP close is clean.
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while let Some(Ok(m)) = stream.next().await {
                    if m.is_close() {
                        break;
                    }
                }
            })
            .await;
        }
        let _ = sink.close().await;
    }
}

fn gone_for(code: u16) -> Gone {
    match code {
        close::REPLACED => Gone::Replaced,
        close::DRAIN => Gone::Closed,
        _ => Gone::Evicted,
    }
}

/// Resolves once `last_write` (ms since `epoch`) is `timeout_ms` old: the socket has accepted no
/// byte for that long.
async fn stalled(last_write: &AtomicU64, epoch: Instant, timeout_ms: u64) {
    loop {
        let now = epoch.elapsed().as_millis() as u64;
        let due = last_write.load(Relaxed).saturating_add(timeout_ms);
        if now >= due {
            return;
        }
        tokio::time::sleep(Duration::from_millis(due - now)).await;
    }
}

/// The bridge's TCP stream, recording when it last accepted bytes (the write timeout's clock).
pub struct Tracked {
    inner: TcpStream,
    last_write: Arc<AtomicU64>,
    epoch: Instant,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.last_write
                .store(self.epoch.elapsed().as_millis() as u64, Relaxed);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.last_write
                .store(self.epoch.elapsed().as_millis() as u64, Relaxed);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

async fn respond(s: &mut TcpStream, status: &str, ctype: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await?;
    s.write_all(body.as_bytes()).await?;
    s.shutdown().await
}

/// Reads up to the blank line ending the request head; returns the head and any bytes after it.
async fn read_head(s: &mut TcpStream) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut buf = Vec::with_capacity(1024);
    let mut tmp = [0u8; 2048];
    loop {
        let n = s.read(&mut tmp).await?;
        if n == 0 {
            return Ok(None);
        }
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&tmp[..n]);
        if let Some(i) = buf[from..].windows(4).position(|w| w == b"\r\n\r\n") {
            let end = from + i + 4;
            let rest = buf.split_off(end);
            return Ok(String::from_utf8(buf).ok().map(|h| (h, rest)));
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Ok(None);
        }
    }
}

#[derive(Debug, Default, PartialEq)]
pub struct Head {
    pub method: String,
    pub path: String,
    pub upgrade: bool,
    pub ws_key: Option<String>,
    pub ws_version: Option<String>,
}

pub fn parse_head(h: &str) -> Head {
    let mut lines = h.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let mut r = Head {
        method: first.next().unwrap_or("").to_owned(),
        path: first.next().unwrap_or("").to_owned(),
        ..Head::default()
    };
    let (mut up, mut conn_up) = (false, false);
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k.trim().to_ascii_lowercase().as_str() {
            "upgrade" => up = v.eq_ignore_ascii_case("websocket"),
            "connection" => {
                conn_up = v
                    .split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            }
            "sec-websocket-key" => r.ws_key = Some(v.to_owned()),
            "sec-websocket-version" => r.ws_version = Some(v.to_owned()),
            _ => {}
        }
    }
    r.upgrade = up && conn_up;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_heads() {
        let h = parse_head("GET /hub HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: abc\r\nSec-WebSocket-Version: 13\r\n\r\n");
        assert!(h.upgrade);
        assert_eq!(
            (h.method.as_str(), h.path.as_str(), h.ws_key.as_deref()),
            ("GET", "/hub", Some("abc"))
        );
        let h = parse_head("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(!h.upgrade && h.ws_key.is_none());
        assert_eq!(parse_head("garbage").method, "garbage");
        assert!(!parse_head("GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n").upgrade);
    }
}

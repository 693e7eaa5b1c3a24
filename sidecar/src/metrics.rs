//! Prometheus counters (text format 0.0.4), served at GET /metrics on the hub's port.
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::protocol::TYPES;

/// Why a frame was not delivered or not accepted.
#[derive(Debug, Clone, Copy)]
pub enum Dropped {
    /// A bridge's outbound queue was full in frames or bytes (the bridge is then evicted, 1013).
    QueueFull,
    /// An inbound frame was rejected with an `error` message.
    Invalid,
    /// An inbound message above the frame limit (closed with 1009).
    Oversize,
}

const DROPS: [&str; 3] = ["queue_full", "invalid", "oversize"];

#[derive(Default)]
pub struct Metrics {
    frames_in: [AtomicU64; TYPES.len()],
    pub frames_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    drops: [AtomicU64; DROPS.len()],
    pub connections: AtomicU64,
    pub rejected_auth: AtomicU64,
}

impl Metrics {
    pub fn frame_in(&self, ty: &str, bytes: usize) {
        if let Some(i) = TYPES.iter().position(|t| *t == ty) {
            self.frames_in[i].fetch_add(1, Relaxed);
        }
        self.bytes_in.fetch_add(bytes as u64, Relaxed);
    }

    pub fn queue_full(&self) -> u64 {
        self.drops[Dropped::QueueFull as usize].load(Relaxed)
    }

    pub fn dropped(&self, why: Dropped) {
        self.drops[why as usize].fetch_add(1, Relaxed);
    }

    pub fn render(
        &self,
        bridges: usize,
        sessions: usize,
        channels: usize,
        queued: usize,
    ) -> String {
        let mut s = String::with_capacity(2048);
        let mut gauge = |name: &str, help: &str, v: usize| {
            let _ = write!(s, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n");
        };
        gauge("mega_hub_bridges", "Registered bridges.", bridges);
        gauge(
            "mega_hub_sessions",
            "Sessions in the presence table.",
            sessions,
        );
        gauge(
            "mega_hub_channels",
            "Channels with at least one session.",
            channels,
        );
        gauge(
            "mega_hub_queued_bytes",
            "Frame bytes queued to bridges (each bounded by MEGA_WSHUB_QUEUE_BYTES).",
            queued,
        );
        s.push_str("# HELP mega_hub_frames_in_total Accepted inbound frames by type.\n# TYPE mega_hub_frames_in_total counter\n");
        for (i, t) in TYPES.iter().enumerate() {
            let v = self.frames_in[i].load(Relaxed);
            if v > 0 || matches!(*t, "broadcast" | "direct" | "join") {
                let _ = writeln!(s, "mega_hub_frames_in_total{{type=\"{t}\"}} {v}");
            }
        }
        let counters = [
            (
                "mega_hub_frames_out_total",
                "Frames queued to bridges.",
                self.frames_out.load(Relaxed),
            ),
            (
                "mega_hub_bytes_in_total",
                "Inbound message bytes (as received).",
                self.bytes_in.load(Relaxed),
            ),
            (
                "mega_hub_bytes_out_total",
                "Outbound message bytes (as sent).",
                self.bytes_out.load(Relaxed),
            ),
            (
                "mega_hub_connections_total",
                "Accepted WebSocket connections.",
                self.connections.load(Relaxed),
            ),
            (
                "mega_hub_auth_failures_total",
                "Registrations refused for a bad token.",
                self.rejected_auth.load(Relaxed),
            ),
        ];
        for (name, help, v) in counters {
            let _ = write!(
                s,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
            );
        }
        s.push_str("# HELP mega_hub_dropped_frames_total Frames not delivered or not accepted, by reason.\n# TYPE mega_hub_dropped_frames_total counter\n");
        for (i, r) in DROPS.iter().enumerate() {
            let _ = writeln!(
                s,
                "mega_hub_dropped_frames_total{{reason=\"{r}\"}} {}",
                self.drops[i].load(Relaxed)
            );
        }
        s
    }
}

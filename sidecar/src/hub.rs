//! The routing core: bridges, the presence table (sessions, channel and user indices) and the
//! per-connection protocol driver (`Link`). No sockets here: the server feeds frames in and drains
//! each bridge's queue, and the tests drive the same code with the protocol vectors.
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::config::{Config, Role};
use crate::metrics::{Dropped, Metrics};
use crate::protocol::{
    self, error_frame, frame, frame_value, parse_inbound, ErrorCode, Inbound, ProtoError, Register,
    CAP_DEFLATE, PROTOCOL_VERSION,
};

pub type ConnId = u64;

/// Close codes the hub uses on bridge links.
pub mod close {
    /// Bad token, no `register` first or in time, invalid `register`, or repeated abuse.
    pub const POLICY: u16 = 1008;
    /// A message above MEGA_WSHUB_MAX_FRAME_BYTES (inflated size for compressed frames).
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL: u16 = 1011;
    /// The bridge's outbound queue overflowed (frames or bytes), or its socket accepted nothing
    /// for MEGA_WSHUB_WRITE_TIMEOUT_MS.
    pub const SLOW: u16 = 1013;
    /// No frame for 2 x heartbeat.
    pub const HEARTBEAT: u16 = 4408;
    /// An admin link registered the same bridgeId; do not reconnect this one.
    pub const REPLACED: u16 = 4409;
    /// The hub is draining (SIGTERM): reconnect later, keep state.
    pub const DRAIN: u16 = 4503;
}

/// Protocol errors in this window that close a link with 1008.
pub const ABUSE_STRIKES: usize = 10;
pub const ABUSE_WINDOW_MS: u64 = 10_000;

/// One outbound frame, shared by every recipient; the deflated form is made at most once.
pub struct OutFrame {
    pub text: Utf8Bytes,
    deflated: OnceLock<Option<Bytes>>,
}

impl OutFrame {
    /// `text` is JSON the hub wrote or checked; invalid UTF-8 (never expected) becomes an empty
    /// object rather than a broken text frame.
    pub fn new(text: Vec<u8>) -> Arc<Self> {
        let text = Utf8Bytes::try_from(text).unwrap_or_else(|_| Utf8Bytes::from_static("{}"));
        Arc::new(Self {
            text,
            deflated: OnceLock::new(),
        })
    }

    /// Raw deflate (mega-codec, RFC 7692 message format, no context takeover) when it is worth it.
    pub fn deflated(&self, threshold: usize) -> Option<&Bytes> {
        if self.text.len() < threshold {
            return None;
        }
        self.deflated
            .get_or_init(|| {
                mega_codec::deflate::deflate(self.text.as_bytes(), 6)
                    .ok()
                    .filter(|z| z.len() < self.text.len())
                    .map(Bytes::from)
            })
            .as_ref()
    }
}

/// What the server holds to reach a connection: its queue, bounded in frames (the channel) and in
/// bytes (`queued` against `limit`), and a close request.
#[derive(Clone)]
pub struct Handle {
    pub tx: mpsc::Sender<Arc<OutFrame>>,
    pub ctl: mpsc::UnboundedSender<(u16, String)>,
    /// Text bytes of the frames in the queue; the writer subtracts what it takes out.
    pub queued: Arc<AtomicUsize>,
    limit: usize,
}

/// Why a frame could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The frame or byte bound is reached: the bridge is not keeping up.
    Full,
    /// The connection task is gone.
    Closed,
}

impl Handle {
    pub fn new(
        tx: mpsc::Sender<Arc<OutFrame>>,
        ctl: mpsc::UnboundedSender<(u16, String)>,
        limit_bytes: usize,
    ) -> Self {
        Self {
            tx,
            ctl,
            queued: Arc::new(AtomicUsize::new(0)),
            limit: limit_bytes,
        }
    }

    /// Queues a frame within both bounds. Only the hub (under its lock) and the link's own
    /// replies push, so the byte check and the add cannot overshoot by more than one frame.
    pub fn push(&self, f: &Arc<OutFrame>) -> Result<(), PushError> {
        let n = f.text.len();
        if self.queued.load(Relaxed) + n > self.limit {
            return Err(PushError::Full);
        }
        self.queued.fetch_add(n, Relaxed);
        match self.tx.try_send(f.clone()) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.queued.fetch_sub(n, Relaxed);
                Err(match e {
                    mpsc::error::TrySendError::Full(_) => PushError::Full,
                    mpsc::error::TrySendError::Closed(_) => PushError::Closed,
                })
            }
        }
    }

    /// The writer took `f` out of the queue.
    pub fn taken(&self, f: &OutFrame) {
        self.queued.fetch_sub(f.text.len(), Relaxed);
    }
}

struct Bridge {
    name: String,
    handle: Handle,
    role: Role,
    sessions: BTreeSet<String>,
}

struct Session {
    owner: ConnId,
    user: String,
    channels: BTreeSet<String>,
    metadata: Option<Map<String, Value>>,
}

/// Why a bridge's presence was dropped (the `reason` of the resulting `bulk_leave`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    /// The bridge sent `bulk_leave` itself.
    Left,
    /// The link closed (by the bridge or the network).
    Closed,
    HeartbeatTimeout,
    Replaced,
    /// The hub closed it (abuse, oversize, slow consumer).
    Evicted,
}

impl Gone {
    fn as_str(self) -> &'static str {
        match self {
            Gone::Left => "left",
            Gone::Closed => "closed",
            Gone::HeartbeatTimeout => "heartbeat_timeout",
            Gone::Replaced => "replaced",
            Gone::Evicted => "evicted",
        }
    }
}

pub struct Hub {
    pub cfg: Arc<Config>,
    pub metrics: Arc<Metrics>,
    bridges: HashMap<ConnId, Bridge>,
    names: HashMap<String, ConnId>,
    sessions: HashMap<String, Session>,
    channels: HashMap<String, HashMap<ConnId, u32>>,
    users: HashMap<String, HashMap<ConnId, u32>>,
    /// Set by SIGTERM: links are closing anyway, so no bulk_leave fan-out.
    pub draining: bool,
    /// Bridges whose queue overflowed during the current operation; removed (presence dropped,
    /// bulk_leave sent) before the operation returns, see `settle`.
    overflowed: Vec<ConnId>,
}

fn inc(idx: &mut HashMap<String, HashMap<ConnId, u32>>, key: &str, conn: ConnId) {
    *idx.entry(key.to_owned())
        .or_default()
        .entry(conn)
        .or_insert(0) += 1;
}

fn dec(idx: &mut HashMap<String, HashMap<ConnId, u32>>, key: &str, conn: ConnId) {
    if let Some(m) = idx.get_mut(key) {
        if let Some(n) = m.get_mut(&conn) {
            *n -= 1;
            if *n == 0 {
                m.remove(&conn);
            }
        }
        if m.is_empty() {
            idx.remove(key);
        }
    }
}

/// JSON array items serialised one by one and cut into chunks below `budget` bytes.
fn chunks(items: Vec<Vec<u8>>, budget: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    for it in items {
        if !cur.is_empty() && cur.len() + it.len() + 2 > budget {
            cur.push(b']');
            out.push(std::mem::take(&mut cur));
        }
        cur.push(if cur.is_empty() { b'[' } else { b',' });
        cur.extend_from_slice(&it);
    }
    if !cur.is_empty() {
        cur.push(b']');
        out.push(cur);
    }
    out
}

impl Hub {
    pub fn new(cfg: Arc<Config>, metrics: Arc<Metrics>) -> Self {
        Self {
            cfg,
            metrics,
            bridges: HashMap::new(),
            names: HashMap::new(),
            sessions: HashMap::new(),
            channels: HashMap::new(),
            users: HashMap::new(),
            draining: false,
            overflowed: Vec::new(),
        }
    }

    pub fn counts(&self) -> (usize, usize, usize) {
        (self.bridges.len(), self.sessions.len(), self.channels.len())
    }

    /// Every registered link's handle (the server closes them all when draining).
    pub fn handles(&self) -> Vec<Handle> {
        self.bridges.values().map(|b| b.handle.clone()).collect()
    }

    /// Text bytes queued to all bridges (the `mega_hub_queued_bytes` gauge).
    pub fn queued_bytes(&self) -> usize {
        self.bridges
            .values()
            .map(|b| b.handle.queued.load(Relaxed))
            .sum()
    }

    /// Queues a frame. A full queue (frames or bytes) evicts the bridge before the current
    /// operation returns (`settle`): its presence leaves every roster at once and its link is told
    /// to close with 1013, rather than keeping a bridge that reads nothing in the rosters.
    fn send(&mut self, conn: ConnId, f: &Arc<OutFrame>) {
        let Some(b) = self.bridges.get(&conn) else {
            return;
        };
        if self.overflowed.contains(&conn) {
            self.metrics.dropped(Dropped::QueueFull);
            return;
        }
        match b.handle.push(f) {
            Ok(()) => {
                self.metrics.frames_out.fetch_add(1, Relaxed);
            }
            Err(PushError::Full) => {
                self.metrics.dropped(Dropped::QueueFull);
                let _ = b.handle.ctl.send((close::SLOW, "hub.slow_consumer".into()));
                self.overflowed.push(conn);
            }
            Err(PushError::Closed) => {}
        }
    }

    /// Removes the bridges that overflowed, and any that overflow on the resulting bulk_leave.
    fn settle(&mut self) {
        while let Some(c) = self.overflowed.first().copied() {
            self.remove_bridge_now(c, Gone::Evicted);
            self.overflowed.retain(|x| *x != c);
        }
    }

    fn send_others(&mut self, except: ConnId, f: &Arc<OutFrame>) {
        let targets: Vec<ConnId> = self
            .bridges
            .keys()
            .copied()
            .filter(|c| *c != except)
            .collect();
        for c in targets {
            self.send(c, f);
        }
    }

    fn name_of(&self, conn: ConnId) -> String {
        self.bridges
            .get(&conn)
            .map(|b| b.name.clone())
            .unwrap_or_default()
    }

    /// Adds a registered bridge. A bridgeId held by a live link is refused
    /// (`hub.bridge_id_in_use`) unless the new link is an admin: then the older link is closed with
    /// 4409 and its presence dropped first, so the new link starts from an empty slate.
    pub fn add_bridge(
        &mut self,
        conn: ConnId,
        name: &str,
        handle: Handle,
        role: Role,
    ) -> Result<(), ProtoError> {
        if let Some(old) = self.names.get(name).copied() {
            if role != Role::Admin {
                return Err(ProtoError::new(
                    ErrorCode::BridgeIdInUse,
                    format!("bridgeId {name} is held by a live link"),
                    Some("register"),
                ));
            }
            if let Some(b) = self.bridges.get(&old) {
                let _ = b.handle.ctl.send((close::REPLACED, "hub.replaced".into()));
            }
            self.remove_bridge_now(old, Gone::Replaced);
        }
        self.names.insert(name.to_owned(), conn);
        self.bridges.insert(
            conn,
            Bridge {
                name: name.to_owned(),
                handle,
                role,
                sessions: BTreeSet::new(),
            },
        );
        self.settle();
        Ok(())
    }

    fn is_admin(&self, conn: ConnId) -> bool {
        self.bridges
            .get(&conn)
            .is_some_and(|b| b.role == Role::Admin)
    }

    fn drop_session(&mut self, sid: &str) -> Option<Session> {
        let s = self.sessions.remove(sid)?;
        for ch in &s.channels {
            dec(&mut self.channels, ch, s.owner);
        }
        dec(&mut self.users, &s.user, s.owner);
        if let Some(b) = self.bridges.get_mut(&s.owner) {
            b.sessions.remove(sid);
        }
        Some(s)
    }

    /// Forwards `bulk_leave` for `sids` of `name` to every bridge but `conn`, in frames that stay
    /// under half the frame limit.
    fn announce_bulk_leave(&mut self, conn: ConnId, name: &str, sids: Vec<String>, why: Gone) {
        if sids.is_empty() || self.draining {
            return;
        }
        let items = sids
            .iter()
            .map(|s| serde_json::to_vec(s).unwrap_or_default())
            .collect();
        let head = format!(
            "{{\"bridgeId\":{},\"reason\":\"{}\",\"sessionIds\":",
            serde_json::to_string(name).unwrap_or_default(),
            why.as_str()
        );
        for arr in chunks(items, self.cfg.max_frame_bytes / 2) {
            let mut p = head.clone().into_bytes();
            p.extend_from_slice(&arr);
            p.push(b'}');
            let f = OutFrame::new(frame("bulk_leave", &p));
            self.send_others(conn, &f);
        }
    }

    /// Drops a bridge and all its presence (bulk_leave to the others unless draining).
    pub fn remove_bridge(&mut self, conn: ConnId, why: Gone) {
        self.remove_bridge_now(conn, why);
        self.settle();
    }

    fn remove_bridge_now(&mut self, conn: ConnId, why: Gone) {
        let Some(b) = self.bridges.get(&conn) else {
            return;
        };
        let name = b.name.clone();
        let sids: Vec<String> = b.sessions.iter().cloned().collect();
        for s in &sids {
            self.drop_session(s);
        }
        // Out of the table first, so the announcement (which may evict others) never targets it.
        self.bridges.remove(&conn);
        self.announce_bulk_leave(conn, &name, sids, why);
        if self.names.get(&name) == Some(&conn) {
            self.names.remove(&name);
        }
    }

    fn join(&mut self, conn: ConnId, j: protocol::Join) -> Result<(), ProtoError> {
        let name = self.name_of(conn);
        let mut added: Vec<String> = Vec::new();
        match self.sessions.get(&j.session_id) {
            Some(s) if s.owner == conn && s.user != j.user_id => {
                return Err(ProtoError::new(
                    ErrorCode::SessionConflict,
                    format!("session {} belongs to another userId", j.session_id),
                    Some("join"),
                ));
            }
            Some(s) if s.owner != conn && s.user != j.user_id && !self.is_admin(conn) => {
                return Err(ProtoError::new(
                    ErrorCode::Forbidden,
                    format!(
                        "session {} belongs to another bridge and userId; moving it to another userId needs an admin token",
                        j.session_id
                    ),
                    Some("join"),
                ));
            }
            Some(s) if s.owner != conn => {
                // The session moved (e.g. a requeued client reconnected elsewhere, same userId):
                // last join wins. An admin may also move it to another userId.
                let old = s.owner;
                let old_name = self.name_of(old);
                self.drop_session(&j.session_id);
                let f = OutFrame::new(frame_value(
                    "leave",
                    &json!({ "sessionId": j.session_id, "bridgeId": old_name }),
                ));
                self.send_others(conn, &f);
            }
            _ => {}
        }
        let is_new = !self.sessions.contains_key(&j.session_id);
        let s = self
            .sessions
            .entry(j.session_id.clone())
            .or_insert_with(|| Session {
                owner: conn,
                user: j.user_id.clone(),
                channels: BTreeSet::new(),
                metadata: None,
            });
        for ch in &j.channels {
            if s.channels.insert(ch.clone()) {
                added.push(ch.clone());
            }
        }
        let meta_changed = j.metadata.is_some();
        if let Some(m) = &j.metadata {
            s.metadata = Some(m.clone());
        }
        for ch in &added {
            inc(&mut self.channels, ch, conn);
        }
        if is_new {
            inc(&mut self.users, &j.user_id, conn);
            if let Some(b) = self.bridges.get_mut(&conn) {
                b.sessions.insert(j.session_id.clone());
            }
        }
        if is_new || !added.is_empty() || meta_changed {
            let mut p = json!({ "sessionId": j.session_id, "userId": j.user_id, "channels": added, "bridgeId": name });
            if let Some(m) = j.metadata {
                p["metadata"] = Value::Object(m);
            }
            let f = OutFrame::new(frame_value("join", &p));
            self.send_others(conn, &f);
        }
        Ok(())
    }

    fn leave(&mut self, conn: ConnId, l: protocol::Leave) {
        let name = self.name_of(conn);
        let Some(s) = self.sessions.get_mut(&l.session_id) else {
            return;
        };
        if s.owner != conn {
            return;
        }
        let p = match l.channels {
            Some(chs) => {
                let mut removed = Vec::new();
                for ch in chs {
                    if s.channels.remove(&ch) {
                        removed.push(ch);
                    }
                }
                for ch in &removed {
                    dec(&mut self.channels, ch, conn);
                }
                if removed.is_empty() {
                    return;
                }
                json!({ "sessionId": l.session_id, "channels": removed, "bridgeId": name })
            }
            None => {
                self.drop_session(&l.session_id);
                json!({ "sessionId": l.session_id, "bridgeId": name })
            }
        };
        let f = OutFrame::new(frame_value("leave", &p));
        self.send_others(conn, &f);
    }

    fn bulk_leave(&mut self, conn: ConnId, l: protocol::BulkLeave) {
        let name = self.name_of(conn);
        let mut gone = Vec::new();
        for sid in l.session_ids {
            if self.sessions.get(&sid).is_some_and(|s| s.owner == conn)
                && self.drop_session(&sid).is_some()
            {
                gone.push(sid);
            }
        }
        gone.sort();
        gone.dedup();
        self.announce_bulk_leave(conn, &name, gone, Gone::Left);
    }

    fn owned(&mut self, conn: ConnId, sid: &str, ty: &str) -> Result<&mut Session, ProtoError> {
        match self.sessions.get_mut(sid) {
            Some(s) if s.owner == conn => Ok(s),
            _ => Err(ProtoError::new(
                ErrorCode::UnknownSession,
                format!("no session {sid} of this bridge"),
                Some(ty),
            )),
        }
    }

    fn metadata(&mut self, conn: ConnId, m: protocol::Metadata) -> Result<(), ProtoError> {
        let name = self.name_of(conn);
        self.owned(conn, &m.session_id, "metadata")?.metadata = Some(m.metadata.clone());
        let p = json!({ "sessionId": m.session_id, "metadata": m.metadata, "bridgeId": name });
        let f = OutFrame::new(frame_value("metadata", &p));
        self.send_others(conn, &f);
        Ok(())
    }

    fn route(&mut self, conn: ConnId, targets: Option<&HashMap<ConnId, u32>>, f: Arc<OutFrame>) {
        let Some(t) = targets else { return };
        let t: Vec<ConnId> = t.keys().copied().filter(|c| *c != conn).collect();
        for c in t {
            self.send(c, &f);
        }
    }

    fn disconnect(
        &mut self,
        conn: ConnId,
        d: &protocol::Disconnect,
        payload: &[u8],
    ) -> Result<(), ProtoError> {
        let owner = match self.sessions.get(&d.session_id) {
            Some(s) => s.owner,
            None => {
                return Err(ProtoError::new(
                    ErrorCode::UnknownSession,
                    format!("no session {}", d.session_id),
                    Some("disconnect"),
                ))
            }
        };
        // A bridge closes its own sessions locally; the hub only carries an admin's requests to
        // the owner of a foreign session.
        if owner != conn && !self.is_admin(conn) {
            return Err(ProtoError::new(
                ErrorCode::Forbidden,
                format!(
                    "session {} belongs to another bridge; disconnecting it needs an admin token",
                    d.session_id
                ),
                Some("disconnect"),
            ));
        }
        if owner != conn {
            let f = OutFrame::new(frame("disconnect", payload));
            self.send(owner, &f);
        }
        Ok(())
    }

    fn sync(&mut self, conn: ConnId, s: protocol::Sync) {
        let filter: Option<BTreeSet<&String>> = s.channels.as_ref().map(|c| c.iter().collect());
        let mut sids: Vec<&String> = self
            .sessions
            .iter()
            .filter(|(_, v)| {
                filter
                    .as_ref()
                    .is_none_or(|f| v.channels.iter().any(|c| f.contains(c)))
            })
            .map(|(k, _)| k)
            .collect();
        sids.sort();
        let items: Vec<Vec<u8>> = sids
            .into_iter()
            .map(|sid| {
                let v = &self.sessions[sid];
                let mut o = json!({
                    "sessionId": sid,
                    "userId": v.user,
                    "bridgeId": self.bridges.get(&v.owner).map(|b| b.name.as_str()).unwrap_or(""),
                    "channels": v.channels,
                });
                if let Some(m) = &v.metadata {
                    o["metadata"] = Value::Object(m.clone());
                }
                serde_json::to_vec(&o).unwrap_or_default()
            })
            .collect();
        let mut parts = chunks(items, self.cfg.max_frame_bytes / 2);
        if parts.is_empty() {
            parts.push(b"[]".to_vec());
        }
        let n = parts.len();
        let rid = s
            .request_id
            .map(|r| serde_json::to_string(&r).unwrap_or_default());
        for (i, arr) in parts.into_iter().enumerate() {
            let mut p = Vec::with_capacity(arr.len() + 64);
            p.push(b'{');
            if let Some(r) = &rid {
                p.extend_from_slice(b"\"requestId\":");
                p.extend_from_slice(r.as_bytes());
                p.push(b',');
            }
            p.extend_from_slice(b"\"sessions\":");
            p.extend_from_slice(&arr);
            p.extend_from_slice(if i + 1 == n {
                b",\"done\":true}"
            } else {
                b",\"done\":false}"
            });
            let f = OutFrame::new(frame("sync", &p));
            self.send(conn, &f);
        }
    }

    /// Applies one message from a registered bridge. `raw` is the frame's payload bytes.
    pub fn apply(&mut self, conn: ConnId, msg: Inbound, raw: &[u8]) -> Result<(), ProtoError> {
        let r = self.apply_inner(conn, msg, raw);
        self.settle();
        r
    }

    fn apply_inner(&mut self, conn: ConnId, msg: Inbound, raw: &[u8]) -> Result<(), ProtoError> {
        match msg {
            Inbound::Register(_) => {
                return Err(ProtoError::new(
                    ErrorCode::AlreadyRegistered,
                    "this link is already registered",
                    Some("register"),
                ))
            }
            Inbound::Join(j) => self.join(conn, j)?,
            Inbound::Leave(l) => self.leave(conn, l),
            Inbound::BulkLeave(l) => self.bulk_leave(conn, l),
            Inbound::Metadata(m) => self.metadata(conn, m)?,
            Inbound::Broadcast(b) => {
                let f = OutFrame::new(frame("broadcast", raw));
                let t = self.channels.get(&b.channel).cloned();
                self.route(conn, t.as_ref(), f);
            }
            Inbound::Direct(d) => {
                let f = OutFrame::new(frame("direct", raw));
                let t = self.users.get(&d.user_id).cloned();
                self.route(conn, t.as_ref(), f);
            }
            Inbound::Disconnect(d) => self.disconnect(conn, &d, raw)?,
            Inbound::Heartbeat(_) => {}
            Inbound::Sync(s) => self.sync(conn, s),
        }
        Ok(())
    }
}

/// What the connection should do after a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Continue,
    Close(u16, String),
}

/// The protocol driver of one connection: registration, error replies and the abuse counter.
pub struct Link {
    pub conn: ConnId,
    handle: Handle,
    pub bridge: Option<String>,
    pub deflate: bool,
    strikes: VecDeque<u64>,
    pub last_seen: u64,
}

pub fn lock(hub: &Mutex<Hub>) -> MutexGuard<'_, Hub> {
    // A panic while holding the lock leaves plain maps behind; keep serving rather than cascade.
    hub.lock().unwrap_or_else(|p| p.into_inner())
}

impl Link {
    pub fn new(conn: ConnId, handle: Handle, now: u64) -> Self {
        Self {
            conn,
            handle,
            bridge: None,
            deflate: false,
            strikes: VecDeque::new(),
            last_seen: now,
        }
    }

    fn reply(&self, metrics: &Metrics, f: Vec<u8>) {
        // Replies go through the same queue as routed frames, so they keep their order.
        if self.handle.push(&OutFrame::new(f)).is_ok() {
            metrics.frames_out.fetch_add(1, Relaxed);
        }
    }

    fn strike(&mut self, now: u64) -> bool {
        self.strikes.push_back(now);
        while self
            .strikes
            .front()
            .is_some_and(|t| now.saturating_sub(*t) >= ABUSE_WINDOW_MS)
        {
            self.strikes.pop_front();
        }
        self.strikes.len() >= ABUSE_STRIKES
    }

    fn fail(&mut self, hub: &Mutex<Hub>, e: &ProtoError, now: u64) -> Verdict {
        let m = lock(hub).metrics.clone();
        m.dropped(Dropped::Invalid);
        self.reply(&m, error_frame(e));
        if e.code.is_strike() && self.strike(now) {
            return Verdict::Close(close::POLICY, "hub.abuse".into());
        }
        Verdict::Continue
    }

    fn register(&mut self, hub: &Mutex<Hub>, r: Register) -> Verdict {
        let mut h = lock(hub);
        let Some(role) = h.cfg.token_role(&r.token) else {
            h.metrics.rejected_auth.fetch_add(1, Relaxed);
            return Verdict::Close(close::POLICY, "hub.unauthorized".into());
        };
        let version = r.protocol_version.unwrap_or(1).min(PROTOCOL_VERSION);
        let caps: Vec<&str> = r
            .capabilities
            .iter()
            .flatten()
            .map(String::as_str)
            .filter(|c| *c == CAP_DEFLATE)
            .collect();
        self.deflate = !caps.is_empty();
        if let Err(e) = h.add_bridge(self.conn, &r.bridge_id, self.handle.clone(), role) {
            let m = h.metrics.clone();
            drop(h);
            self.reply(&m, error_frame(&e));
            return Verdict::Close(close::POLICY, e.code.as_str().into());
        }
        h.metrics.frame_in("register", 0);
        let ok = json!({
            "hubId": h.cfg.hub_id,
            "bridgeId": r.bridge_id,
            "protocolVersion": version,
            "heartbeatMs": h.cfg.heartbeat_ms,
            "maxFrameBytes": h.cfg.max_frame_bytes,
            "capabilities": caps,
            "role": role.as_str(),
            "acceptedAt": protocol::epoch_ms(),
        });
        let m = h.metrics.clone();
        drop(h);
        self.bridge = Some(r.bridge_id);
        self.reply(&m, frame_value("register_ok", &ok));
        Verdict::Continue
    }

    /// One text message (or an inflated binary one) from the peer.
    pub fn on_text(&mut self, hub: &Mutex<Hub>, b: &[u8], now: u64) -> Verdict {
        self.last_seen = now;
        let parsed = parse_inbound(b);
        if self.bridge.is_none() {
            return match parsed {
                Ok(p) => match p.msg {
                    Inbound::Register(r) => self.register(hub, r),
                    _ => Verdict::Close(close::POLICY, "hub.register_required".into()),
                },
                Err(e) if e.ty.as_deref() == Some("register") => {
                    self.reply(&lock(hub).metrics.clone(), error_frame(&e));
                    Verdict::Close(close::POLICY, "hub.invalid_register".into())
                }
                Err(_) => Verdict::Close(close::POLICY, "hub.register_required".into()),
            };
        }
        match parsed {
            Ok(p) => {
                let ty = p.msg.type_name();
                let mut h = lock(hub);
                h.metrics.frame_in(ty, b.len());
                match h.apply(self.conn, p.msg, &b[p.payload.0..p.payload.1]) {
                    Ok(()) => Verdict::Continue,
                    Err(e) => {
                        drop(h);
                        self.fail(hub, &e, now)
                    }
                }
            }
            Err(e) => self.fail(hub, &e, now),
        }
    }

    /// A binary message: raw-deflated JSON text, only on links that negotiated `deflate`.
    pub fn on_binary(&mut self, hub: &Mutex<Hub>, b: &[u8], max: usize, now: u64) -> Verdict {
        self.last_seen = now;
        if !self.deflate {
            if self.bridge.is_none() {
                return Verdict::Close(close::POLICY, "hub.register_required".into());
            }
            let e = ProtoError::new(
                ErrorCode::Compression,
                "binary frames need the deflate capability",
                None,
            );
            return self.fail(hub, &e, now);
        }
        match mega_codec::deflate::inflate(b, max) {
            Ok(text) if std::str::from_utf8(&text).is_ok() => self.on_text(hub, &text, now),
            Ok(_) => {
                let e = ProtoError::new(
                    ErrorCode::Malformed,
                    "inflated frame is not valid UTF-8",
                    None,
                );
                self.fail(hub, &e, now)
            }
            Err(e) if e.code == mega_codec::Code::TooLarge => {
                lock(hub).metrics.dropped(Dropped::Oversize);
                Verdict::Close(close::TOO_BIG, "hub.too_big".into())
            }
            Err(_) => {
                let e = ProtoError::new(
                    ErrorCode::Compression,
                    "binary frame is not valid raw deflate",
                    None,
                );
                self.fail(hub, &e, now)
            }
        }
    }

    /// True once a registered link has been silent for more than 2 x heartbeat.
    pub fn expired(&self, now: u64, heartbeat_ms: u64) -> bool {
        self.bridge.is_some() && now.saturating_sub(self.last_seen) > 2 * heartbeat_ms
    }

    /// The link ended: drop its presence.
    pub fn on_closed(&mut self, hub: &Mutex<Hub>, why: Gone) {
        if self.bridge.take().is_some() {
            lock(hub).remove_bridge(self.conn, why);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct T {
        link: Link,
        rx: mpsc::Receiver<Arc<OutFrame>>,
        ctl: mpsc::UnboundedReceiver<(u16, String)>,
    }

    fn hub() -> Mutex<Hub> {
        Mutex::new(Hub::new(
            Arc::new(Config::with_tokens(&["tok"])),
            Arc::new(Metrics::default()),
        ))
    }

    fn bridge(hub: &Mutex<Hub>, conn: ConnId, name: &str, queue: usize) -> T {
        let (tx, rx) = mpsc::channel(queue);
        let (ctl_tx, ctl) = mpsc::unbounded_channel();
        let mut link = Link::new(conn, Handle::new(tx, ctl_tx, usize::MAX), 0);
        let reg =
            format!(r#"{{"type":"register","payload":{{"token":"tok","bridgeId":"{name}"}}}}"#);
        assert_eq!(link.on_text(hub, reg.as_bytes(), 0), Verdict::Continue);
        let mut t = T { link, rx, ctl };
        assert!(t.next().contains("register_ok"));
        t
    }

    impl T {
        fn send(&mut self, hub: &Mutex<Hub>, s: &str) -> Verdict {
            self.link.on_text(hub, s.as_bytes(), 1)
        }
        fn next(&mut self) -> String {
            self.rx.try_recv().expect("a frame").text.to_string()
        }
        fn none(&mut self) {
            assert!(self.rx.try_recv().is_err(), "no frame expected");
        }
    }

    #[test]
    fn indices_follow_joins_moves_and_leaves() {
        let h = hub();
        let (mut a, mut b) = (bridge(&h, 1, "a", 64), bridge(&h, 2, "b", 64));
        a.send(
            &h,
            r#"{"type":"join","payload":{"sessionId":"s1","userId":"u","channels":["x","y","x"]}}"#,
        );
        assert_eq!(
            b.next(),
            r#"{"type":"join","payload":{"bridgeId":"a","channels":["x","y"],"sessionId":"s1","userId":"u"}}"#
        );
        assert_eq!(lock(&h).counts(), (2, 1, 2));
        // Re-joining the same channels changes nothing and announces nothing.
        a.send(
            &h,
            r#"{"type":"join","payload":{"sessionId":"s1","userId":"u","channels":["y"]}}"#,
        );
        b.none();
        // The session moves to b: a hears it left, the channel index follows the new owner.
        b.send(
            &h,
            r#"{"type":"join","payload":{"sessionId":"s1","userId":"u","channels":["z"]}}"#,
        );
        assert_eq!(
            a.next(),
            r#"{"type":"leave","payload":{"bridgeId":"a","sessionId":"s1"}}"#
        );
        assert!(a.next().contains(r#""channels":["z"]"#));
        {
            let g = lock(&h);
            assert_eq!(g.counts(), (2, 1, 1));
            assert_eq!(g.channels["z"].keys().copied().collect::<Vec<_>>(), vec![2]);
            assert_eq!(g.users["u"][&2], 1);
        }
        // A stale leave from the old owner is ignored.
        a.send(&h, r#"{"type":"leave","payload":{"sessionId":"s1"}}"#);
        assert_eq!(lock(&h).counts(), (2, 1, 1));
        b.send(&h, r#"{"type":"leave","payload":{"sessionId":"s1"}}"#);
        assert_eq!(lock(&h).counts(), (2, 0, 0));
        assert!(lock(&h).users.is_empty());
    }

    #[test]
    fn a8_full_queue_evicts_the_bridge_at_once_with_1013() {
        let h = hub();
        let mut a = bridge(&h, 1, "a", 64);
        let mut slow = bridge(&h, 2, "slow", 2);
        slow.send(
            &h,
            r#"{"type":"join","payload":{"sessionId":"s","userId":"u","channels":["c"]}}"#,
        );
        let _ = a.next();
        for _ in 0..5 {
            a.send(
                &h,
                r#"{"type":"broadcast","payload":{"channel":"c","message":1}}"#,
            );
        }
        assert_eq!(slow.ctl.try_recv().unwrap().0, close::SLOW);
        // A8: evicted at once, before its link task runs at all: no presence left behind.
        assert_eq!(
            a.next(),
            r#"{"type":"bulk_leave","payload":{"bridgeId":"slow","reason":"evicted","sessionIds":["s"]}}"#
        );
        assert_eq!(lock(&h).counts(), (1, 0, 0));
        // The link ending later changes nothing.
        slow.link.on_closed(&h, Gone::Evicted);
        a.none();
        assert_eq!(lock(&h).counts(), (1, 0, 0));
    }

    #[test]
    fn bulk_leave_and_sync_are_chunked_under_the_frame_limit() {
        let h = hub();
        let (mut a, mut b) = (bridge(&h, 1, "a", 100_000), bridge(&h, 2, "b", 100_000));
        let n = 3000;
        for i in 0..n {
            a.send(&h, &format!(r#"{{"type":"join","payload":{{"sessionId":"session-{i:05}","userId":"u{i}","channels":["c"]}}}}"#));
        }
        while b.rx.try_recv().is_ok() {}
        b.send(&h, r#"{"type":"sync","payload":{"requestId":"r"}}"#);
        let mut seen = 0;
        let max = lock(&h).cfg.max_frame_bytes;
        loop {
            let f = b.next();
            assert!(f.len() <= max);
            let v: Value = serde_json::from_str(&f).unwrap();
            seen += v["payload"]["sessions"].as_array().unwrap().len();
            if v["payload"]["done"] == true {
                break;
            }
        }
        assert_eq!(seen, n);
        a.link.on_closed(&h, Gone::Closed);
        let mut left = 0;
        while let Ok(f) = b.rx.try_recv() {
            let v: Value = serde_json::from_str(&f.text).unwrap();
            assert!(f.text.len() <= max / 2 + 200);
            left += v["payload"]["sessionIds"].as_array().unwrap().len();
        }
        assert_eq!(left, n);
        assert_eq!(lock(&h).counts(), (1, 0, 0));
    }

    #[test]
    fn abuse_closes_after_the_strike_limit() {
        let h = hub();
        let mut a = bridge(&h, 1, "a", 64);
        for i in 1..ABUSE_STRIKES {
            assert_eq!(a.link.on_text(&h, b"garbage", i as u64), Verdict::Continue);
        }
        assert_eq!(
            a.link.on_text(&h, b"garbage", 20),
            Verdict::Close(close::POLICY, "hub.abuse".into())
        );
        // Strikes older than the window are forgotten.
        let mut b = bridge(&h, 2, "b", 64);
        for i in 0..30u64 {
            assert_eq!(
                b.link.on_text(&h, b"{", i * ABUSE_WINDOW_MS / 5),
                Verdict::Continue
            );
        }
    }

    #[test]
    fn out_frame_deflates_once_above_threshold() {
        let f = OutFrame::new(vec![b'a'; 4000]);
        let z = f.deflated(1024).unwrap().clone();
        assert!(z.len() < 100);
        assert_eq!(
            mega_codec::deflate::inflate(&z, 1 << 20).unwrap(),
            vec![b'a'; 4000]
        );
        assert!(OutFrame::new(vec![b'a'; 10]).deflated(1024).is_none());
    }
}

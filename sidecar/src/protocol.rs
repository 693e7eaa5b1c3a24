//! Wire protocol v1 between bridges and the hub (protocol/README.md is the contract, the JSON
//! Schemas and vectors under protocol/ are its machine-checked form).
//!
//! Inbound frames are checked in two passes: mega-codec's envelope scanner (full JSON syntax,
//! nesting <= 64, `type` charset, byte span of `payload`), then serde on the payload slice only.
use std::fmt;

use mega_codec::frame::{encode_frame, validate_frame_spans};
use serde::de::{Deserializer, IgnoredAny};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Highest protocol version this hub speaks; versions are cumulative (vN implies v1..vN).
pub const PROTOCOL_VERSION: u64 = 1;
/// Identifiers (bridgeId, sessionId, userId, channel, ns, instanceId): 1..=256 characters.
pub const MAX_ID_CHARS: usize = 256;
/// Channels in one join, leave or sync.
pub const MAX_CHANNELS: usize = 256;
/// Sessions named in one `exceptSessionIds`.
pub const MAX_EXCEPT: usize = 1024;
/// Sessions named in one inbound `bulk_leave`.
pub const MAX_BULK: usize = 10_000;
pub const MAX_CAPABILITIES: usize = 32;
pub const MAX_CAPABILITY_CHARS: usize = 64;
pub const MAX_REQUEST_ID_CHARS: usize = 64;
/// A WebSocket close reason has 123 bytes of room.
pub const MAX_REASON_BYTES: usize = 123;
/// The one capability this hub implements: binary frames carrying raw-deflated JSON text.
pub const CAP_DEFLATE: &str = "deflate";

/// Every message type of v1 (both directions).
pub const TYPES: [&str; 12] = [
    "register",
    "register_ok",
    "join",
    "leave",
    "bulk_leave",
    "metadata",
    "broadcast",
    "direct",
    "disconnect",
    "heartbeat",
    "error",
    "sync",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Not a JSON object with `type` and `payload` (syntax, nesting, extra keys, bad UTF-8).
    Malformed,
    /// `type` is not one a bridge may send.
    UnknownType,
    /// The payload does not match the type's schema.
    InvalidPayload,
    /// A second `register` on a registered link.
    AlreadyRegistered,
    /// A binary frame on a link that did not negotiate `deflate`, or one that does not inflate.
    Compression,
    /// metadata/disconnect for a session the hub does not know (or this bridge does not own).
    UnknownSession,
    /// join for an existing session of this bridge with a different userId.
    SessionConflict,
    /// An act on another bridge's session that needs an admin token (disconnect it, or move it
    /// to another userId).
    Forbidden,
    /// `register` with a bridgeId a live link holds (only an admin token may replace it).
    BridgeIdInUse,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Malformed => "hub.malformed",
            ErrorCode::UnknownType => "hub.unknown_type",
            ErrorCode::InvalidPayload => "hub.invalid_payload",
            ErrorCode::AlreadyRegistered => "hub.already_registered",
            ErrorCode::Compression => "hub.compression",
            ErrorCode::UnknownSession => "hub.unknown_session",
            ErrorCode::SessionConflict => "hub.session_conflict",
            ErrorCode::Forbidden => "hub.forbidden",
            ErrorCode::BridgeIdInUse => "hub.bridge_id_in_use",
        }
    }

    /// Protocol violations count towards the abuse limit; state races (a session that just moved
    /// or left) are normal in a cluster and do not.
    pub fn is_strike(self) -> bool {
        !matches!(
            self,
            ErrorCode::UnknownSession | ErrorCode::SessionConflict | ErrorCode::Forbidden
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtoError {
    pub code: ErrorCode,
    pub message: String,
    /// The offending frame's type when it was readable.
    pub ty: Option<String>,
}

impl ProtoError {
    pub fn new(code: ErrorCode, message: impl Into<String>, ty: Option<&str>) -> Self {
        Self {
            code,
            message: message.into(),
            ty: ty.map(str::to_owned),
        }
    }
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

/// Optional fields are absent or of their type: `null` is rejected like in the schemas.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Register {
    pub token: String,
    pub bridge_id: String,
    #[serde(default, deserialize_with = "present")]
    pub instance_id: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub protocol_version: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    pub capabilities: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Join {
    pub session_id: String,
    pub user_id: String,
    pub channels: Vec<String>,
    #[serde(default, deserialize_with = "present")]
    pub metadata: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Leave {
    pub session_id: String,
    #[serde(default, deserialize_with = "present")]
    pub channels: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BulkLeave {
    pub session_ids: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Metadata {
    pub session_id: String,
    pub metadata: Map<String, Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Broadcast {
    pub channel: String,
    /// Forwarded verbatim: only its presence and syntax matter to the hub.
    #[allow(dead_code)]
    pub message: IgnoredAny,
    #[serde(default, deserialize_with = "present")]
    pub ns: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub except_session_ids: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Direct {
    pub user_id: String,
    #[allow(dead_code)]
    pub message: IgnoredAny,
    #[serde(default, deserialize_with = "present")]
    pub ns: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DisconnectMode {
    Kick,
    Requeue,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Disconnect {
    pub session_id: String,
    pub mode: DisconnectMode,
    #[serde(default, deserialize_with = "present")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Heartbeat {
    #[serde(default, deserialize_with = "present")]
    pub ts: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Sync {
    #[serde(default, deserialize_with = "present")]
    pub request_id: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub channels: Option<Vec<String>>,
}

/// A parsed bridge-to-hub frame. `payload` is the byte range of the payload in the frame, so that
/// routed messages (broadcast, direct, disconnect) are forwarded without re-serialising.
#[derive(Debug, Clone)]
pub enum Inbound {
    Register(Register),
    Join(Join),
    Leave(Leave),
    BulkLeave(BulkLeave),
    Metadata(Metadata),
    Broadcast(Broadcast),
    Direct(Direct),
    Disconnect(Disconnect),
    Heartbeat(Heartbeat),
    Sync(Sync),
}

impl Inbound {
    pub fn type_name(&self) -> &'static str {
        match self {
            Inbound::Register(_) => "register",
            Inbound::Join(_) => "join",
            Inbound::Leave(_) => "leave",
            Inbound::BulkLeave(_) => "bulk_leave",
            Inbound::Metadata(_) => "metadata",
            Inbound::Broadcast(_) => "broadcast",
            Inbound::Direct(_) => "direct",
            Inbound::Disconnect(_) => "disconnect",
            Inbound::Heartbeat(_) => "heartbeat",
            Inbound::Sync(_) => "sync",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Parsed {
    pub msg: Inbound,
    pub payload: (usize, usize),
}

fn id_ok(s: &str) -> bool {
    !s.is_empty() && s.chars().count() <= MAX_ID_CHARS
}

fn check_id(field: &str, s: &str, ty: &str) -> Result<(), ProtoError> {
    if id_ok(s) {
        Ok(())
    } else {
        Err(invalid(
            ty,
            format!("{field} must be a string of 1..={MAX_ID_CHARS} characters"),
        ))
    }
}

fn check_ids(
    field: &str,
    v: &[String],
    min: usize,
    max: usize,
    ty: &str,
) -> Result<(), ProtoError> {
    if v.len() < min || v.len() > max {
        return Err(invalid(
            ty,
            format!("{field} must hold {min}..={max} items"),
        ));
    }
    for s in v {
        check_id(field, s, ty)?;
    }
    Ok(())
}

fn invalid(ty: &str, message: String) -> ProtoError {
    ProtoError::new(ErrorCode::InvalidPayload, message, Some(ty))
}

fn from_payload<'a, T: Deserialize<'a>>(ty: &str, p: &'a [u8]) -> Result<T, ProtoError> {
    serde_json::from_slice(p).map_err(|e| invalid(ty, format!("{ty} payload: {e}")))
}

/// Parses and validates one bridge-to-hub frame (the JSON text, already inflated).
pub fn parse_inbound(b: &[u8]) -> Result<Parsed, ProtoError> {
    let spans = validate_frame_spans(b).map_err(|e| {
        ProtoError::new(
            ErrorCode::Malformed,
            format!("not a hub frame ({})", e.message),
            None,
        )
    })?;
    let ty = std::str::from_utf8(&b[spans.ty.0..spans.ty.1]).unwrap_or_default();
    if spans.id.is_some() || spans.ns.is_some() {
        return Err(ProtoError::new(
            ErrorCode::Malformed,
            "a hub frame has only `type` and `payload`",
            Some(ty),
        ));
    }
    if !TYPES.contains(&ty) || matches!(ty, "register_ok" | "error") {
        return Err(ProtoError::new(
            ErrorCode::UnknownType,
            format!("type \"{ty}\" is not accepted from a bridge"),
            Some(ty),
        ));
    }
    let (ps, pe) = spans
        .payload
        .ok_or_else(|| invalid(ty, "payload is required".into()))?;
    let p = &b[ps..pe];
    if p.first() != Some(&b'{') {
        return Err(invalid(ty, "payload must be an object".into()));
    }
    let msg = match ty {
        "register" => {
            let r: Register = from_payload(ty, p)?;
            if r.token.is_empty() || r.token.chars().count() > 4096 {
                return Err(invalid(
                    ty,
                    "token must be a string of 1..=4096 characters".into(),
                ));
            }
            check_id("bridgeId", &r.bridge_id, ty)?;
            if let Some(i) = &r.instance_id {
                check_id("instanceId", i, ty)?;
            }
            if r.protocol_version == Some(0) {
                return Err(invalid(
                    ty,
                    "protocolVersion must be an integer >= 1".into(),
                ));
            }
            if let Some(c) = &r.capabilities {
                if c.len() > MAX_CAPABILITIES
                    || c.iter()
                        .any(|s| s.is_empty() || s.chars().count() > MAX_CAPABILITY_CHARS)
                {
                    return Err(invalid(ty, format!("capabilities: at most {MAX_CAPABILITIES} strings of 1..={MAX_CAPABILITY_CHARS} characters")));
                }
            }
            Inbound::Register(r)
        }
        "join" => {
            let j: Join = from_payload(ty, p)?;
            check_id("sessionId", &j.session_id, ty)?;
            check_id("userId", &j.user_id, ty)?;
            check_ids("channels", &j.channels, 0, MAX_CHANNELS, ty)?;
            Inbound::Join(j)
        }
        "leave" => {
            let l: Leave = from_payload(ty, p)?;
            check_id("sessionId", &l.session_id, ty)?;
            if let Some(c) = &l.channels {
                check_ids("channels", c, 1, MAX_CHANNELS, ty)?;
            }
            Inbound::Leave(l)
        }
        "bulk_leave" => {
            let l: BulkLeave = from_payload(ty, p)?;
            check_ids("sessionIds", &l.session_ids, 1, MAX_BULK, ty)?;
            Inbound::BulkLeave(l)
        }
        "metadata" => {
            let m: Metadata = from_payload(ty, p)?;
            check_id("sessionId", &m.session_id, ty)?;
            Inbound::Metadata(m)
        }
        "broadcast" => {
            let m: Broadcast = from_payload(ty, p)?;
            check_id("channel", &m.channel, ty)?;
            if let Some(ns) = &m.ns {
                check_id("ns", ns, ty)?;
            }
            if let Some(e) = &m.except_session_ids {
                check_ids("exceptSessionIds", e, 0, MAX_EXCEPT, ty)?;
            }
            Inbound::Broadcast(m)
        }
        "direct" => {
            let m: Direct = from_payload(ty, p)?;
            check_id("userId", &m.user_id, ty)?;
            if let Some(ns) = &m.ns {
                check_id("ns", ns, ty)?;
            }
            Inbound::Direct(m)
        }
        "disconnect" => {
            let m: Disconnect = from_payload(ty, p)?;
            check_id("sessionId", &m.session_id, ty)?;
            if m.reason
                .as_ref()
                .is_some_and(|r| r.len() > MAX_REASON_BYTES)
            {
                return Err(invalid(
                    ty,
                    format!("reason must be at most {MAX_REASON_BYTES} UTF-8 bytes"),
                ));
            }
            Inbound::Disconnect(m)
        }
        "heartbeat" => Inbound::Heartbeat(from_payload(ty, p)?),
        _ => {
            let m: Sync = from_payload(ty, p)?;
            if let Some(r) = &m.request_id {
                if r.is_empty() || r.chars().count() > MAX_REQUEST_ID_CHARS {
                    return Err(invalid(
                        ty,
                        format!(
                            "requestId must be a string of 1..={MAX_REQUEST_ID_CHARS} characters"
                        ),
                    ));
                }
            }
            if let Some(c) = &m.channels {
                check_ids("channels", c, 1, MAX_CHANNELS, ty)?;
            }
            Inbound::Sync(m)
        }
    };
    Ok(Parsed {
        msg,
        payload: (ps, pe),
    })
}

/// Wall clock in ms since the Unix epoch (register_ok.acceptedAt, heartbeat.ts).
pub fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `{"type":<ty>,"payload":<payload>}` around already-serialised payload bytes (mega-codec writes
/// the envelope once; a broadcast to N bridges shares the bytes).
pub fn frame(ty: &str, payload: &[u8]) -> Vec<u8> {
    // Hub types are valid codec types and payloads are never empty, so this cannot fail.
    encode_frame(ty, None, None, payload).unwrap_or_default()
}

pub fn frame_value(ty: &str, payload: &Value) -> Vec<u8> {
    frame(
        ty,
        &serde_json::to_vec(payload).unwrap_or_else(|_| b"{}".to_vec()),
    )
}

pub fn error_frame(e: &ProtoError) -> Vec<u8> {
    let mut p = serde_json::json!({ "code": e.code.as_str(), "message": e.message });
    if let Some(t) = &e.ty {
        p["type"] = Value::String(t.clone());
    }
    frame_value("error", &p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(b: &str) -> &'static str {
        parse_inbound(b.as_bytes()).unwrap_err().code.as_str()
    }

    #[test]
    fn parses_and_keeps_the_payload_span() {
        let f = r#"{"type":"broadcast","payload":{"channel":"room","message":{"a":[1]}}}"#;
        let p = parse_inbound(f.as_bytes()).unwrap();
        assert_eq!(
            &f[p.payload.0..p.payload.1],
            r#"{"channel":"room","message":{"a":[1]}}"#
        );
        assert!(matches!(p.msg, Inbound::Broadcast(ref b) if b.channel == "room"));
        let out = frame("broadcast", &f.as_bytes()[p.payload.0..p.payload.1]);
        assert_eq!(out, f.as_bytes());
    }

    #[test]
    fn rejects_garbage_with_codes() {
        assert_eq!(code("nope"), "hub.malformed");
        assert_eq!(
            code(r#"{"type":"join","payload":{},"x":1}"#),
            "hub.malformed"
        );
        assert_eq!(
            code(r#"{"type":"join","id":"1","payload":{}}"#),
            "hub.malformed"
        );
        assert_eq!(code(r#"{"type":"Join","payload":{}}"#), "hub.malformed");
        assert_eq!(code(r#"{"type":"error","payload":{}}"#), "hub.unknown_type");
        assert_eq!(code(r#"{"type":"chat","payload":{}}"#), "hub.unknown_type");
        assert_eq!(code(r#"{"type":"join"}"#), "hub.invalid_payload");
        assert_eq!(
            code(r#"{"type":"join","payload":[]}"#),
            "hub.invalid_payload"
        );
        assert_eq!(
            code(r#"{"type":"join","payload":{"sessionId":"s","userId":"u","channels":null}}"#),
            "hub.invalid_payload"
        );
        assert_eq!(
            code(r#"{"type":"leave","payload":{"sessionId":"s","channels":null}}"#),
            "hub.invalid_payload"
        );
        assert_eq!(
            code(
                r#"{"type":"register","payload":{"token":"t","bridgeId":"b","protocolVersion":0}}"#
            ),
            "hub.invalid_payload"
        );
        assert_eq!(
            code(
                r#"{"type":"register","payload":{"token":"t","bridgeId":"b","protocolVersion":1.5}}"#
            ),
            "hub.invalid_payload"
        );
        assert_eq!(
            code(r#"{"type":"broadcast","payload":{"channel":"c"}}"#),
            "hub.invalid_payload"
        );
        let long = "x".repeat(257);
        assert_eq!(
            code(&format!(
                r#"{{"type":"direct","payload":{{"userId":"{long}","message":1}}}}"#
            )),
            "hub.invalid_payload"
        );
        assert!(parse_inbound(
            format!(
                r#"{{"type":"direct","payload":{{"userId":"{}","message":null}}}}"#,
                "é".repeat(256)
            )
            .as_bytes()
        )
        .is_ok());
    }
}

/**
 * The NATS messages of ws-cluster: the codec's binary server frame (FORMAT.md §2), one per event.
 * `origin` is the sender's instance id (echo suppression), `target` the channel, user or session id.
 * Broadcast and direct payloads are the envelope bytes as built once by ws-presence, so a receiving
 * instance frames them without re-serialising.
 */
import type { Codec, PresenceEvent } from '@mega/kernel';
import { MegaError } from '@mega/kernel';

export const Kind = {
  broadcast: 1,
  direct: 2,
  join: 3,
  leave: 4,
  metadata: 5,
  heartbeat: 6,
  disconnect: 7,
  /** A new (or reconnected) instance asks every other one for an immediate heartbeat. */
  hello: 8,
  /** Graceful stop: drop every roster entry of the sender now. */
  bye: 9,
} as const;

/** One roster member as carried in join events and heartbeats. */
export interface WireMember {
  ns: string;
  sessionId: string;
  userId: string;
  channels: string[];
  metadata?: Record<string, unknown>;
}

export type ClusterMessage =
  | { kind: 'broadcast'; origin: string; ns: string; channel?: string; except?: string[]; envelope: Buffer }
  | { kind: 'direct'; origin: string; ns?: string; userId: string; envelope: Buffer }
  | { kind: 'join'; origin: string; member: WireMember }
  | { kind: 'leave'; origin: string; ns: string; sessionId: string }
  | { kind: 'metadata'; origin: string; ns: string; sessionId: string; metadata: Record<string, unknown> }
  | { kind: 'heartbeat'; origin: string; members: WireMember[]; complete: boolean }
  | { kind: 'disconnect'; origin: string; sessionId: string; mode: 'kick' | 'requeue'; reason?: string }
  | { kind: 'hello'; origin: string }
  | { kind: 'bye'; origin: string };

const EMPTY = Buffer.alloc(0);
const json = (v: unknown) => Buffer.from(JSON.stringify(v), 'utf8');

function malformed(message: string, cause?: unknown): MegaError {
  return new MegaError('ws_cluster.malformed', message, cause === undefined ? {} : { cause });
}

/** Encodes a local presence event for NATS; undefined for events that are not fanned out. */
export function encodeEvent(codec: Codec, origin: string, ev: PresenceEvent): Buffer | undefined {
  switch (ev.kind) {
    case 'broadcast': {
      const envelope = typeof ev.frame === 'string' ? Buffer.from(ev.frame, 'utf8') : ev.frame;
      const except = ev.exceptSessionIds?.length ? json(ev.exceptSessionIds) : undefined;
      // With exceptions: u32 length of the JSON id list, the list, then the envelope.
      let payload = envelope;
      if (except) {
        const head = Buffer.allocUnsafe(4);
        head.writeUInt32BE(except.length, 0);
        payload = Buffer.concat([head, except, envelope]);
      }
      return codec.encodeServerFrame({
        kind: Kind.broadcast,
        type: except ? 'ws.broadcast.except' : 'ws.broadcast',
        ns: ev.ns,
        target: ev.channel ?? '',
        origin,
        payload,
      });
    }
    case 'direct': {
      const envelope = typeof ev.frame === 'string' ? Buffer.from(ev.frame, 'utf8') : ev.frame;
      return codec.encodeServerFrame({ kind: Kind.direct, type: 'ws.direct', ns: ev.ns, target: ev.userId, origin, payload: envelope });
    }
    case 'join':
      return codec.encodeServerFrame({
        kind: Kind.join,
        type: 'ws.join',
        ns: ev.ns,
        target: ev.sessionId,
        origin,
        payload: json({ userId: ev.userId ?? '', channels: ev.channels, ...(ev.metadata ? { metadata: ev.metadata } : {}) }),
      });
    case 'leave':
      return codec.encodeServerFrame({ kind: Kind.leave, type: 'ws.leave', ns: ev.ns, target: ev.sessionId, origin, payload: EMPTY });
    case 'metadata':
      return codec.encodeServerFrame({
        kind: Kind.metadata,
        type: 'ws.metadata',
        ns: ev.ns,
        target: ev.sessionId,
        origin,
        payload: json(ev.metadata),
      });
    case 'disconnect':
      return codec.encodeServerFrame({
        kind: Kind.disconnect,
        type: 'ws.disconnect',
        ns: ev.ns,
        target: ev.sessionId,
        origin,
        payload: json({ mode: ev.mode, ...(ev.reason !== undefined ? { reason: ev.reason } : {}) }),
      });
  }
}

export function encodeControl(codec: Codec, origin: string, kind: 'hello' | 'bye'): Buffer {
  return codec.encodeServerFrame({ kind: Kind[kind], type: `ws.${kind}`, origin, payload: EMPTY });
}

/** Heartbeats in parts of at most `maxBytes` of member JSON each (NATS caps a message at 1 MiB). */
export function encodeHeartbeats(codec: Codec, origin: string, members: readonly WireMember[], maxBytes = 256 * 1024): Buffer[] {
  const parts: string[] = [];
  let part: string[] = [];
  let size = 0;
  const flush = () => {
    parts.push(`[${part.join(',')}]`);
    part = [];
    size = 0;
  };
  for (const m of members) {
    const s = JSON.stringify([m.ns, m.sessionId, m.userId, m.channels, m.metadata ?? null]);
    if (size > 0 && size + s.length > maxBytes) flush();
    part.push(s);
    size += s.length + 1;
  }
  if (part.length > 0 || parts.length === 0) flush();
  // A single part is the sender's complete list (members it omits are gone); parts only add.
  const type = parts.length === 1 ? 'ws.heartbeat' : 'ws.heartbeat.part';
  return parts.map((p) => codec.encodeServerFrame({ kind: Kind.heartbeat, type, origin, payload: Buffer.from(p, 'utf8') }));
}

function parseJson(bytes: Buffer, what: string): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch (error) {
    throw malformed(`${what}: payload is not JSON`, error);
  }
}

const isStr = (v: unknown): v is string => typeof v === 'string' && v.length > 0;
const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isStrList = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');

function member(ns: unknown, sessionId: unknown, userId: unknown, channels: unknown, metadata: unknown): WireMember {
  if (!isStr(ns) || !isStr(sessionId) || typeof userId !== 'string' || !isStrList(channels))
    throw malformed('member: ns, sessionId, userId and channels are required');
  if (metadata !== null && metadata !== undefined && !isObj(metadata)) throw malformed('member: metadata must be an object');
  return { ns, sessionId, userId, channels, ...(isObj(metadata) ? { metadata } : {}) };
}

/** Decodes one NATS message; anything unexpected is a `ws_cluster.malformed` (or `codec.malformed`) error. */
export function decodeMessage(codec: Codec, bytes: Uint8Array): ClusterMessage {
  const h = codec.decodeServerFrame(bytes);
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const payload = buf.subarray(h.payloadOffset, h.payloadOffset + h.payloadLength);
  const origin = h.origin;
  if (!origin) throw malformed('frame without origin');
  switch (h.kind) {
    case Kind.broadcast: {
      if (!h.ns) throw malformed('broadcast without ns');
      let envelope = payload;
      let except: string[] | undefined;
      if (h.type === 'ws.broadcast.except') {
        if (payload.length < 4) throw malformed('broadcast: truncated exception list');
        const n = payload.readUInt32BE(0);
        if (4 + n > payload.length) throw malformed('broadcast: truncated exception list');
        const list = parseJson(payload.subarray(4, 4 + n), 'broadcast');
        if (!isStrList(list)) throw malformed('broadcast: exception list must be strings');
        except = list;
        envelope = payload.subarray(4 + n);
      } else if (h.type !== 'ws.broadcast') throw malformed(`broadcast with type ${h.type}`);
      return {
        kind: 'broadcast',
        origin,
        ns: h.ns,
        envelope,
        ...(h.target ? { channel: h.target } : {}),
        ...(except ? { except } : {}),
      };
    }
    case Kind.direct:
      if (!h.target) throw malformed('direct without user');
      return { kind: 'direct', origin, userId: h.target, envelope: payload, ...(h.ns ? { ns: h.ns } : {}) };
    case Kind.join: {
      const p = parseJson(payload, 'join');
      if (!isObj(p)) throw malformed('join: payload must be an object');
      return { kind: 'join', origin, member: member(h.ns, h.target, p.userId, p.channels, p.metadata) };
    }
    case Kind.leave:
      if (!h.ns || !h.target) throw malformed('leave without ns or session');
      return { kind: 'leave', origin, ns: h.ns, sessionId: h.target };
    case Kind.metadata: {
      const p = parseJson(payload, 'metadata');
      if (!h.ns || !h.target || !isObj(p)) throw malformed('metadata needs ns, session and an object');
      return { kind: 'metadata', origin, ns: h.ns, sessionId: h.target, metadata: p };
    }
    case Kind.heartbeat: {
      const p = parseJson(payload, 'heartbeat');
      if (!Array.isArray(p)) throw malformed('heartbeat: payload must be a list');
      return {
        kind: 'heartbeat',
        origin,
        complete: h.type === 'ws.heartbeat',
        members: p.map((m: unknown) => {
          if (!Array.isArray(m)) throw malformed('heartbeat: each member is a list');
          return member(m[0], m[1], m[2], m[3], m[4]);
        }),
      };
    }
    case Kind.disconnect: {
      const p = parseJson(payload, 'disconnect');
      if (!h.target || !isObj(p) || (p.mode !== 'kick' && p.mode !== 'requeue')) throw malformed('disconnect needs a session and a mode');
      return {
        kind: 'disconnect',
        origin,
        sessionId: h.target,
        mode: p.mode,
        ...(typeof p.reason === 'string' ? { reason: p.reason } : {}),
      };
    }
    case Kind.hello:
      return { kind: 'hello', origin };
    case Kind.bye:
      return { kind: 'bye', origin };
    default:
      throw malformed(`unknown kind ${h.kind}`);
  }
}

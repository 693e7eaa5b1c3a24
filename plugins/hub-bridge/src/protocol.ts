/**
 * Hub protocol v1 frames (sidecar/protocol): encoders for what a bridge sends and a checking
 * decoder for what the hub sends. Broadcast/direct messages are spliced in as the envelope JSON
 * bytes ws-presence already built, so a broadcast is serialised once.
 */
import { MegaError } from '@mega/kernel';

export const PROTOCOL_VERSION = 1;

export interface HubSession {
  sessionId: string;
  userId: string;
  channels: string[];
  metadata?: Record<string, unknown>;
}

export type FromHub =
  | {
      type: 'register_ok';
      payload: {
        hubId: string;
        bridgeId: string;
        protocolVersion: number;
        heartbeatMs: number;
        maxFrameBytes: number;
        capabilities: string[];
        /** `admin`: the token may also disconnect/move other bridges' sessions (absent from older hubs = bridge). */
        role?: 'bridge' | 'admin';
      };
    }
  | { type: 'broadcast'; payload: { channel: string; message: unknown; ns?: string; exceptSessionIds?: string[] } }
  | { type: 'direct'; payload: { userId: string; message: unknown; ns?: string } }
  | { type: 'disconnect'; payload: { sessionId: string; mode: 'kick' | 'requeue'; reason?: string } }
  | { type: 'join'; payload: HubSession & { bridgeId: string } }
  | { type: 'leave'; payload: { sessionId: string; bridgeId: string; channels?: string[] } }
  | { type: 'metadata'; payload: { sessionId: string; bridgeId: string; metadata: Record<string, unknown> } }
  | { type: 'bulk_leave'; payload: { bridgeId: string; reason: string; sessionIds: string[] } }
  | { type: 'sync'; payload: { requestId?: string; done: boolean; sessions: Array<HubSession & { bridgeId: string }> } }
  | { type: 'heartbeat'; payload: { ts: number } }
  | { type: 'error'; payload: { code: string; message: string; type?: string } };

const BULK_REASONS = new Set(['left', 'closed', 'heartbeat_timeout', 'replaced', 'evicted']);
const bad = (message: string) => new MegaError('hub.malformed', message);
const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isId = (v: unknown): v is string => typeof v === 'string' && v.length > 0 && v.length <= 256;
const isIds = (v: unknown): v is string[] => Array.isArray(v) && v.every(isId);

function need(cond: boolean, type: string, what: string): void {
  if (!cond) throw bad(`${type}: ${what}`);
}

function session(p: Record<string, unknown>, type: string): void {
  need(isId(p.sessionId) && isId(p.userId) && isId(p.bridgeId), type, 'sessionId, userId and bridgeId are required');
  need(isIds(p.channels), type, 'channels must be a list of ids');
  need(p.metadata === undefined || isObj(p.metadata), type, 'metadata must be an object');
}

/** Parses and checks one hub frame (text). Unknown types and bad shapes are `hub.malformed`. */
export function decodeFromHub(text: string): FromHub {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw bad('frame is not JSON');
  }
  if (!isObj(v) || typeof v.type !== 'string' || !isObj(v.payload)) throw bad('frame must be { type, payload: {...} }');
  const p = v.payload;
  const t = v.type;
  switch (t) {
    case 'register_ok':
      need(
        typeof p.hubId === 'string' &&
          isId(p.bridgeId) &&
          Number.isInteger(p.protocolVersion) &&
          Number.isInteger(p.heartbeatMs) &&
          (p.heartbeatMs as number) > 0 &&
          Number.isInteger(p.maxFrameBytes) &&
          Array.isArray(p.capabilities),
        t,
        'hubId, bridgeId, protocolVersion, heartbeatMs, maxFrameBytes and capabilities are required',
      );
      need(p.role === undefined || p.role === 'bridge' || p.role === 'admin', t, 'role must be bridge or admin');
      break;
    case 'broadcast':
      need(isId(p.channel) && 'message' in p, t, 'channel and message are required');
      need(p.ns === undefined || isId(p.ns), t, 'ns must be an id');
      need(p.exceptSessionIds === undefined || isIds(p.exceptSessionIds), t, 'exceptSessionIds must be ids');
      break;
    case 'direct':
      need(isId(p.userId) && 'message' in p, t, 'userId and message are required');
      need(p.ns === undefined || isId(p.ns), t, 'ns must be an id');
      break;
    case 'disconnect':
      need(isId(p.sessionId) && (p.mode === 'kick' || p.mode === 'requeue'), t, 'sessionId and mode (kick|requeue) are required');
      need(p.reason === undefined || typeof p.reason === 'string', t, 'reason must be a string');
      break;
    case 'join':
      session(p, t);
      break;
    case 'leave':
      need(isId(p.sessionId) && isId(p.bridgeId), t, 'sessionId and bridgeId are required');
      need(p.channels === undefined || isIds(p.channels), t, 'channels must be ids');
      break;
    case 'metadata':
      need(isId(p.sessionId) && isId(p.bridgeId) && isObj(p.metadata), t, 'sessionId, bridgeId and metadata are required');
      break;
    case 'bulk_leave':
      need(
        isId(p.bridgeId) && BULK_REASONS.has(p.reason as string) && isIds(p.sessionIds) && (p.sessionIds as string[]).length > 0,
        t,
        'bridgeId, a known reason and sessionIds are required',
      );
      break;
    case 'sync':
      need(typeof p.done === 'boolean' && Array.isArray(p.sessions), t, 'sessions and done are required');
      for (const s of p.sessions as unknown[]) {
        need(isObj(s), t, 'each session is an object');
        session(s as Record<string, unknown>, t);
      }
      break;
    case 'heartbeat':
      need(Number.isInteger(p.ts), t, 'ts is required');
      break;
    case 'error':
      need(
        typeof p.code === 'string' && /^hub\.[a-z_]+$/.test(p.code) && typeof p.message === 'string',
        t,
        'code (hub.*) and message are required',
      );
      break;
    default:
      throw bad(`unknown frame type "${t}"`);
  }
  return v as unknown as FromHub;
}

const frame = (type: string, payload: Record<string, unknown>) => JSON.stringify({ type, payload });

export const toHub = {
  register: (o: { token: string; bridgeId: string; instanceId?: string; capabilities?: string[] }) =>
    frame('register', {
      token: o.token,
      bridgeId: o.bridgeId,
      ...(o.instanceId ? { instanceId: o.instanceId } : {}),
      protocolVersion: PROTOCOL_VERSION,
      ...(o.capabilities?.length ? { capabilities: o.capabilities } : {}),
    }),
  join: (s: HubSession) =>
    frame('join', { sessionId: s.sessionId, userId: s.userId, channels: s.channels, ...(s.metadata ? { metadata: s.metadata } : {}) }),
  leave: (sessionId: string, channels?: string[]) => frame('leave', { sessionId, ...(channels?.length ? { channels } : {}) }),
  bulkLeave: (sessionIds: string[]) => frame('bulk_leave', { sessionIds }),
  metadata: (sessionId: string, metadata: Record<string, unknown>) => frame('metadata', { sessionId, metadata }),
  disconnect: (sessionId: string, mode: 'kick' | 'requeue', reason?: string) =>
    frame('disconnect', { sessionId, mode, ...(reason !== undefined ? { reason: truncateReason(reason) } : {}) }),
  heartbeat: (ts: number) => frame('heartbeat', { ts }),
  sync: (requestId: string, channels?: string[]) => frame('sync', { requestId, ...(channels?.length ? { channels } : {}) }),
  /** `message` is JSON text (the envelope bytes), spliced in unchanged. */
  broadcast(o: { channel: string; ns?: string; exceptSessionIds?: readonly string[]; message: string }): string {
    const head = JSON.stringify({
      channel: o.channel,
      ...(o.ns ? { ns: o.ns } : {}),
      ...(o.exceptSessionIds?.length ? { exceptSessionIds: o.exceptSessionIds.slice(0, 1024) } : {}),
    });
    return `{"type":"broadcast","payload":${head.slice(0, -1)},"message":${o.message}}}`;
  },
  direct(o: { userId: string; ns?: string; message: string }): string {
    const head = JSON.stringify({ userId: o.userId, ...(o.ns ? { ns: o.ns } : {}) });
    return `{"type":"direct","payload":${head.slice(0, -1)},"message":${o.message}}}`;
  },
};

/** Close reasons are at most 123 UTF-8 bytes; cut on a character boundary. */
export function truncateReason(reason: string): string {
  if (Buffer.byteLength(reason) <= 123) return reason;
  let out = '';
  for (const ch of reason) {
    if (Buffer.byteLength(out + ch) > 123) break;
    out += ch;
  }
  return out;
}

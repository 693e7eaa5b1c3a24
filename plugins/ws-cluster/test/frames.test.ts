import type { App, PresenceEvent } from '@mega/kernel';
import { isMegaError, loadCodec } from '@mega/kernel';
import { describe, expect, it } from 'vitest';
import { decodeMessage, encodeControl, encodeEvent, encodeHeartbeats, RemoteRoster } from '../src/index.js';

const codec = loadCodec({ mode: 'ts' });
const app = { name: 'a' } as App;
const env = Buffer.from('{"type":"chat.said","ns":"/chat","payload":{"text":"hi"}}');

function roundTrip(ev: PresenceEvent) {
  const frame = encodeEvent(codec, 'inst-1', ev);
  if (!frame) throw new Error('not encoded');
  return decodeMessage(codec, frame);
}

describe('ws-cluster frames', () => {
  it('round-trips broadcasts with and without channel and exceptions, keeping the envelope bytes', () => {
    expect(roundTrip({ kind: 'broadcast', app, ns: '/chat', frame: env })).toEqual({
      kind: 'broadcast',
      origin: 'inst-1',
      ns: '/chat',
      envelope: env,
    });
    const m = roundTrip({ kind: 'broadcast', app, ns: '/chat', channel: 'room', frame: env, exceptSessionIds: ['s1', 's2'] });
    expect(m).toEqual({ kind: 'broadcast', origin: 'inst-1', ns: '/chat', channel: 'room', except: ['s1', 's2'], envelope: env });
  });

  it('round-trips direct, join, leave, metadata and disconnect', () => {
    expect(roundTrip({ kind: 'direct', app, ns: '', userId: 'u1', frame: env })).toEqual({
      kind: 'direct',
      origin: 'inst-1',
      userId: 'u1',
      envelope: env,
    });
    expect(roundTrip({ kind: 'join', app, ns: '/chat', sessionId: 's1', userId: 'u1', channels: ['x'], metadata: { n: 1 } })).toEqual({
      kind: 'join',
      origin: 'inst-1',
      member: { ns: '/chat', sessionId: 's1', userId: 'u1', channels: ['x'], metadata: { n: 1 } },
    });
    expect(roundTrip({ kind: 'leave', app, ns: '/chat', sessionId: 's1' })).toEqual({
      kind: 'leave',
      origin: 'inst-1',
      ns: '/chat',
      sessionId: 's1',
    });
    expect(roundTrip({ kind: 'metadata', app, ns: '/chat', sessionId: 's1', metadata: { a: 2 } })).toMatchObject({
      kind: 'metadata',
      metadata: { a: 2 },
    });
    expect(roundTrip({ kind: 'disconnect', app, ns: '', sessionId: 's1', mode: 'requeue', reason: 'move' })).toEqual({
      kind: 'disconnect',
      origin: 'inst-1',
      sessionId: 's1',
      mode: 'requeue',
      reason: 'move',
    });
    expect(decodeMessage(codec, encodeControl(codec, 'i', 'hello'))).toEqual({ kind: 'hello', origin: 'i' });
  });

  it('splits large heartbeats into parts; only a single part is a complete list', () => {
    const members = Array.from({ length: 50 }, (_, i) => ({ ns: '/c', sessionId: `s${i}`, userId: `u${i}`, channels: ['x'] }));
    const one = encodeHeartbeats(codec, 'i', members);
    expect(one).toHaveLength(1);
    const m = decodeMessage(codec, one[0] as Buffer);
    expect(m).toMatchObject({ kind: 'heartbeat', complete: true });
    const parts = encodeHeartbeats(codec, 'i', members, 200);
    expect(parts.length).toBeGreaterThan(5);
    const all = parts.map((p) => decodeMessage(codec, p));
    expect(all.every((p) => p.kind === 'heartbeat' && !p.complete)).toBe(true);
    expect(all.flatMap((p) => (p.kind === 'heartbeat' ? p.members.map((x) => x.sessionId) : []))).toEqual(members.map((x) => x.sessionId));
    expect(decodeMessage(codec, encodeHeartbeats(codec, 'i', [])[0] as Buffer)).toEqual({
      kind: 'heartbeat',
      origin: 'i',
      complete: true,
      members: [],
    });
  });

  it('rejects garbage with typed errors', () => {
    const bad = (bytes: Uint8Array) => {
      try {
        decodeMessage(codec, bytes);
      } catch (error) {
        expect(isMegaError(error)).toBe(true);
        return (error as { code: string }).code;
      }
      throw new Error('decoded garbage');
    };
    expect(bad(Buffer.from('not a frame'))).toBe('codec.malformed');
    expect(bad(Buffer.alloc(0))).toBe('codec.malformed');
    const frame = (kind: number, type: string, payload: string, extra: { ns?: string; target?: string; origin?: string } = {}) =>
      codec.encodeServerFrame({ kind, type, origin: 'o', ...extra, payload: Buffer.from(payload) });
    expect(bad(frame(3, 'ws.join', '{nope', { ns: '/c', target: 's' }))).toBe('ws_cluster.malformed');
    expect(bad(frame(3, 'ws.join', '{"userId":"u","channels":[1]}', { ns: '/c', target: 's' }))).toBe('ws_cluster.malformed');
    expect(bad(frame(1, 'ws.broadcast', '{}'))).toBe('ws_cluster.malformed');
    expect(bad(frame(1, 'ws.broadcast.except', '\u0000\u0000\u0000\u0009[]', { ns: '/c' }))).toBe('ws_cluster.malformed');
    expect(bad(frame(6, 'ws.heartbeat', '[["/c"]]'))).toBe('ws_cluster.malformed');
    expect(bad(frame(7, 'ws.disconnect', '{"mode":"explode"}', { target: 's' }))).toBe('ws_cluster.malformed');
    expect(bad(frame(99, 'ws.x', ''))).toBe('ws_cluster.malformed');
    expect(bad(codec.encodeServerFrame({ kind: 8, type: 'ws.hello', payload: Buffer.alloc(0) }))).toBe('ws_cluster.malformed');
  });
});

describe('RemoteRoster', () => {
  it('expires members ttl after their last refresh, filters by namespace, channel and local sessions', () => {
    let now = 1000;
    const r = new RemoteRoster(100, () => now);
    r.upsert('B', { ns: '/c', sessionId: 's1', userId: 'u1', channels: ['x'] });
    r.upsert('B', { ns: '/c', sessionId: 's2', userId: 'u2', channels: [] });
    r.upsert('C', { ns: '/d', sessionId: 's3', userId: 'u3', channels: [] });
    expect(r.list('/c', undefined, new Set()).map((e) => e.sessionId)).toEqual(['s1', 's2']);
    expect(r.list('/c', 'x', new Set()).map((e) => e.sessionId)).toEqual(['s1']);
    expect(r.list('/c', undefined, new Set(['s1'])).map((e) => e.sessionId)).toEqual(['s2']);
    now = 1050;
    r.heartbeat('B', [{ ns: '/c', sessionId: 's1', userId: 'u1', channels: ['x'] }], true);
    expect(r.list('/c', undefined, new Set()).map((e) => e.sessionId)).toEqual(['s1']);
    now = 1149;
    expect(r.list('/c', undefined, new Set())).toHaveLength(1);
    now = 1150;
    expect(r.list('/c', undefined, new Set())).toHaveLength(0);
    expect(r.sweep()).toBe(2);
  });

  it('ignores a leave from an instance that no longer holds the session; bye drops an instance', () => {
    const r = new RemoteRoster(10_000);
    r.upsert('B', { ns: '/c', sessionId: 's1', userId: 'u1', channels: [] });
    r.upsert('C', { ns: '/c', sessionId: 's1', userId: 'u1', channels: [] });
    r.remove('B', 's1');
    expect(r.size).toBe(1);
    r.setMetadata('C', 's1', { a: 1 });
    expect(r.list('/c', undefined, new Set())[0]?.metadata).toEqual({ a: 1 });
    r.dropOrigin('C');
    expect(r.size).toBe(0);
  });
});

/** The bridge's encoder and decoder against the protocol's JSON Schemas and vectors (sidecar/protocol). */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMegaError } from '@mega/kernel';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { describe, expect, it } from 'vitest';
import { decodeFromHub, toHub, truncateReason } from '../src/index.js';

const PROTOCOL = fileURLToPath(new URL('../../../sidecar/protocol/', import.meta.url));
type Vector = { name: string; direction: 'toHub' | 'fromHub'; frame?: { type: string; payload: Record<string, any> }; raw?: string };
const vectors = JSON.parse(readFileSync(join(PROTOCOL, 'vectors/messages.json'), 'utf8')) as { valid: Vector[]; invalid: Vector[] };

const ajv = new Ajv2020({ strict: false, allErrors: true });
const schemaFiles = (dir: string): string[] =>
  readdirSync(join(PROTOCOL, dir), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? schemaFiles(join(dir, e.name)) : e.name.endsWith('.json') ? [join(dir, e.name)] : [],
  );
for (const f of schemaFiles('schemas')) ajv.addSchema(JSON.parse(readFileSync(join(PROTOCOL, f), 'utf8')));
const validToHub = ajv.getSchema('https://schemas.mega.invalid/hub/v1/to-hub.json');
const validFromHub = ajv.getSchema('https://schemas.mega.invalid/hub/v1/from-hub.json');
if (!validToHub || !validFromHub) throw new Error('protocol schemas not found');

const toHubOk = (text: string) => {
  const ok = validToHub(JSON.parse(text));
  if (!ok) throw new Error(`${text} fails to-hub.json: ${JSON.stringify(validToHub.errors)}`);
};

/** Re-encodes a valid toHub vector through the bridge's encoder. */
function reencode(f: { type: string; payload: Record<string, any> }): string | undefined {
  const p = f.payload;
  switch (f.type) {
    case 'join':
      return toHub.join(p as never);
    case 'leave':
      return toHub.leave(p.sessionId, p.channels);
    case 'bulk_leave':
      return toHub.bulkLeave(p.sessionIds);
    case 'metadata':
      return toHub.metadata(p.sessionId, p.metadata);
    case 'broadcast':
      return toHub.broadcast({ channel: p.channel, ns: p.ns, exceptSessionIds: p.exceptSessionIds, message: JSON.stringify(p.message) });
    case 'direct':
      return toHub.direct({ userId: p.userId, ns: p.ns, message: JSON.stringify(p.message) });
    case 'disconnect':
      return toHub.disconnect(p.sessionId, p.mode, p.reason);
    case 'sync':
      return toHub.sync(p.requestId, p.channels);
    default:
      return undefined;
  }
}

describe('hub protocol v1: bridge side', () => {
  it('decodes every valid hub frame of the vectors, and the schema agrees', () => {
    const fromHub = vectors.valid.filter((v) => v.direction === 'fromHub');
    expect(fromHub.length).toBeGreaterThan(5);
    for (const v of fromHub) {
      expect(validFromHub(v.frame), v.name).toBe(true);
      expect(decodeFromHub(JSON.stringify(v.frame)), v.name).toEqual(v.frame);
    }
  });

  it('refuses every invalid hub frame of the vectors with hub.malformed', () => {
    const bad = vectors.invalid.filter((v) => v.direction === 'fromHub');
    expect(bad.length).toBeGreaterThan(3);
    for (const v of bad) {
      const text = v.raw ?? JSON.stringify(v.frame);
      let code: string | undefined;
      try {
        decodeFromHub(text);
      } catch (error) {
        code = isMegaError(error) ? error.code : 'not-a-mega-error';
      }
      expect(code, v.name).toBe('hub.malformed');
    }
  });

  it('re-encodes the valid bridge frames of the vectors to equal, schema-valid JSON', () => {
    let n = 0;
    for (const v of vectors.valid.filter((x) => x.direction === 'toHub' && x.frame)) {
      const frame = v.frame as { type: string; payload: Record<string, any> };
      const out = reencode(frame);
      if (out === undefined) continue;
      toHubOk(out);
      expect(JSON.parse(out), v.name).toEqual(frame);
      n++;
    }
    expect(n).toBeGreaterThan(10);
  });

  it('builds schema-valid register, heartbeat and spliced broadcast/direct frames', () => {
    toHubOk(toHub.register({ token: 't', bridgeId: 'b', instanceId: 'i', capabilities: ['deflate'] }));
    expect(JSON.parse(toHub.register({ token: 't', bridgeId: 'b' })).payload).toEqual({ token: 't', bridgeId: 'b', protocolVersion: 1 });
    toHubOk(toHub.heartbeat(Date.now()));
    const envelope = '{"type":"chat.said","ns":"/chat","payload":{"text":"é \\" }"}}';
    const b = toHub.broadcast({ channel: '/chat', ns: '/chat', exceptSessionIds: ['s1'], message: envelope });
    toHubOk(b);
    expect(JSON.parse(b).payload.message).toEqual(JSON.parse(envelope));
    toHubOk(toHub.direct({ userId: 'u', message: envelope }));
    const long = 'é'.repeat(100);
    const cut = truncateReason(long);
    expect(Buffer.byteLength(cut)).toBeLessThanOrEqual(123);
    expect(long.startsWith(cut)).toBe(true);
    toHubOk(toHub.disconnect('s', 'kick', long));
  });

  it('refuses garbage from the hub with hub.malformed', () => {
    for (const text of [
      '',
      'nope',
      '[]',
      '{"type":"broadcast"}',
      '{"type":"broadcast","payload":[]}',
      '{"type":5,"payload":{}}',
      '{"type":"direct","payload":{"userId":""}}',
      '{"type":"sync","payload":{"done":true,"sessions":[{}]}}',
    ]) {
      expect(() => decodeFromHub(text), text).toThrowError(expect.objectContaining({ code: 'hub.malformed' }));
    }
  });
});

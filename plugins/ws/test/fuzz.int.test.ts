/**
 * 100,000 random frames against a real server: every frame gets exactly the documented answer, in
 * order, the connection stays open, memory stays bounded; then random bytes on raw sockets only ever
 * end in a protocol close code, and the server still serves.
 */

import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Kernel } from '@mega/kernel';
import { bootProject } from '@mega/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mulberry32 } from '../../../scripts/test/wire.js';
import { Client, project, RawClient } from './support.js';

const SEED = Number(process.env.MEGA_FUZZ_SEED ?? Date.now() % 2 ** 31);
const FRAMES = 100_000;

const CHANNEL = `
export class Fuzz {
  ['fuzz.echo'](sock: any, msg: any) { sock.send({ type: 'fuzz.ok', id: msg.id ?? null, payload: { n: msg.payload.n } }); }
}
`;
const ROUTES = `
import { Fuzz } from '../channel.js';
export default (router: any) => {
  router.ws('/fuzz', Fuzz, {
    maxPayload: 64 * 1024,
    schemas: { 'fuzz.echo': { type: 'object', required: ['n'], properties: { n: { type: 'integer' }, s: { type: 'string', maxLength: 64 } } } },
  });
};
`;

let kernel: Kernel;
let url: (p: string) => string;
let port: number;
beforeAll(async () => {
  const b = await bootProject(project({ 'channel.ts': CHANNEL, 'routes/ws.ts': ROUTES }));
  kernel = b.kernel;
  url = (p) => b.url(p, 'ws');
  port = b.port;
});
afterAll(() => kernel?.stop());

function heapAfterGc(): number {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
  return process.memoryUsage().heapUsed;
}

type Case = [frame: string | Buffer, expected: string];

function generator(random: () => number) {
  const int = (n: number) => Math.floor(random() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)] as T;
  const chars = 'abcxyz019 _-"\\/\u00e9\u4e2d\ud83d\ude00\n\t{}[],:';
  const str = (max: number) => {
    let s = '';
    for (let i = int(max); i > 0; i--) s += pick([...chars]);
    return s;
  };
  const value = (depth: number): unknown => {
    const k = int(depth > 3 ? 4 : 7);
    if (k === 0) return int(1e6) - 5e5;
    if (k === 1) return str(12);
    if (k === 2) return pick([true, false, null, 1.5e300, -0.25]);
    if (k === 3) return random() < 0.5 ? [] : {};
    if (k === 4) return Array.from({ length: int(4) }, () => value(depth + 1));
    return Object.fromEntries(Array.from({ length: int(4) }, () => [str(6), value(depth + 1)]));
  };
  return (i: number): Case => {
    const id = random() < 0.7 ? `f${i}` : undefined;
    const env = (type: string, payload: unknown) => JSON.stringify(id === undefined ? { type, payload } : { type, id, payload });
    switch (int(12)) {
      case 0:
      case 1:
      case 2:
        return [env('fuzz.echo', { n: i, s: str(20) }), 'fuzz.ok'];
      case 3:
        return [env('fuzz.echo', pick([{ n: str(5) }, { s: 'no n' }, value(0), { n: 1, s: 'x'.repeat(65) }, []])), 'ws.schema'];
      case 4:
        return [env(`zz.${pick(['a', 'b', 'c'])}${int(1000)}`, value(0)), 'ws.unknown_type'];
      case 5: {
        // Cut anywhere before the closing brace: never a complete object.
        const full = env('fuzz.echo', value(0));
        return [full.slice(0, int(full.length - 1)), 'ws.invalid_envelope'];
      }
      case 6:
        return [
          JSON.stringify({ type: 'fuzz.echo', payload: { n: 1 }, [pick(['extra', 'Type', 'data', 'ID'])]: value(2) }),
          'ws.invalid_envelope',
        ];
      case 7:
        return [
          JSON.stringify({ type: pick(['Fuzz.Echo', 'fuzz..echo', '.x', 'x y', '', 'a'.repeat(200), 5, null]), payload: {} }),
          'ws.invalid_envelope',
        ];
      case 8:
        return [
          pick(['null', '[]', '"text"', '42', 'true', '{}', ' ', '{"payload":{}}']) + (random() < 0.5 ? '' : ' '),
          'ws.invalid_envelope',
        ];
      case 9:
        return [`${pick(['x', '#', '<', ']'])}${str(30)}`, 'ws.invalid_envelope'];
      case 10:
        return [`{"type":"fuzz.echo","payload":${'['.repeat(65 + int(10))}${']'.repeat(65)}}`, 'ws.invalid_envelope'];
      default: {
        const b = Buffer.alloc(int(40));
        for (let k = 0; k < b.length; k++) b[k] = int(256);
        return [b, 'ws.invalid_envelope'];
      }
    }
  };
}

describe(`ws fuzz (seed ${SEED})`, () => {
  it(`answers ${FRAMES.toLocaleString('en')} random frames exactly as documented and keeps memory bounded`, async () => {
    const next = generator(mulberry32(SEED));
    const c = await Client.open(url('/fuzz'));
    const heapBefore = heapAfterGc();
    const tally = new Map<string, number>();
    const BATCH = 2000;
    for (let start = 0; start < FRAMES; start += BATCH) {
      const expected: string[] = [];
      const arrived = new Promise<Array<Record<string, any>>>((done) => {
        const got: Array<Record<string, any>> = [];
        const onMessage = (data: Buffer) => {
          got.push(JSON.parse(data.toString()));
          if (got.length === BATCH) {
            c.ws.off('message', onMessage);
            done(got);
          }
        };
        c.ws.on('message', onMessage);
      });
      for (let i = start; i < start + BATCH; i++) {
        const [frame, code] = next(i);
        expected.push(code);
        c.ws.send(frame, { binary: Buffer.isBuffer(frame) });
      }
      const got = await Promise.race([
        arrived,
        new Promise<never>((_, fail) =>
          setTimeout(
            () =>
              fail(
                new Error(
                  `batch at ${start}: answers stopped (seed ${SEED}); last: ${JSON.stringify(c.messages.slice(-3))}, state ${c.ws.readyState}`,
                ),
              ),
            10_000,
          ),
        ),
      ]);
      c.messages.length = 0;
      const codes = got.map((m) => (m.type === 'error' ? m.payload.code : m.type));
      for (let k = 0; k < BATCH; k++) {
        if (codes[k] !== expected[k])
          throw new Error(`frame ${start + k}: expected ${expected[k]}, got ${JSON.stringify(got[k])} (seed ${SEED})`);
        tally.set(expected[k] as string, (tally.get(expected[k] as string) ?? 0) + 1);
      }
    }
    expect(c.ws.readyState).toBe(c.ws.OPEN);
    expect([...tally.values()].reduce((a, b) => a + b, 0)).toBe(FRAMES);
    for (const code of ['fuzz.ok', 'ws.schema', 'ws.unknown_type', 'ws.invalid_envelope'])
      expect(tally.get(code)).toBeGreaterThan(FRAMES / 20);
    const growth = heapAfterGc() - heapBefore;
    expect(growth).toBeLessThan(32 * 1024 * 1024);
    await c.close();
  }, 60_000);

  it('ends random bytes on raw sockets with a protocol close code (or waits for more), and keeps serving', async () => {
    const random = mulberry32(SEED ^ 0x5eed);
    const seen = new Map<number, number>();
    for (let i = 0; i < 300; i++) {
      const raw = await RawClient.open(port, '/fuzz');
      const junk = Buffer.alloc(1 + Math.floor(random() * 64));
      for (let k = 0; k < junk.length; k++) junk[k] = Math.floor(random() * 256);
      raw.socket.write(junk);
      const code = await raw.closeCode(300).catch(() => 0); // 0: an incomplete frame, the server waits
      seen.set(code, (seen.get(code) ?? 0) + 1);
      raw.socket.destroy();
    }
    for (const code of seen.keys()) expect([0, 1000, 1002, 1005, 1007, 1009]).toContain(code);
    expect(seen.get(1002)).toBeGreaterThan(100);
    const c = await Client.open(url('/fuzz'));
    c.send({ type: 'fuzz.echo', id: 'after', payload: { n: 1 } });
    expect(await c.ofType('fuzz.ok')).toEqual({ type: 'fuzz.ok', id: 'after', payload: { n: 1 } });
    await c.close();
    await new Promise((r) => setTimeout(r, 100));
    expect(kernel.use('ws').size).toBe(0);
  }, 60_000);
});

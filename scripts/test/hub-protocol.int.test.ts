/**
 * The hub protocol's single definition checks itself: the JSON Schemas accept every valid vector
 * and reject every invalid one, and the real mega-hub binary plays every exchange script over
 * real sockets, each frame it sends validated against the hub → bridge schema.
 */
import { describe, expect, it } from 'vitest';
import { type Frame, loadJson, protocolValidators, replayScript, type Script, startHub } from './hub-harness.js';

interface Case {
  name: string;
  direction: 'toHub' | 'fromHub';
  frame?: unknown;
  raw?: string;
  error?: string;
  schemaValid?: boolean;
}
const messages = loadJson<{ valid: Case[]; invalid: Case[] }>('vectors/messages.json');
const exchanges = loadJson<{ hub: { tokens: string[]; adminTokens: string[] }; scripts: Script[] }>('vectors/exchanges.json');
const { toHub, fromHub } = protocolValidators();

function parse(c: Case): { ok: true; value: unknown } | { ok: false } {
  if (c.raw === undefined) return { ok: true, value: c.frame };
  try {
    return { ok: true, value: JSON.parse(c.raw) };
  } catch {
    return { ok: false };
  }
}

describe('hub protocol schemas', () => {
  it('accept every valid vector', () => {
    expect(messages.valid.length).toBeGreaterThan(30);
    for (const c of messages.valid) {
      const v = c.direction === 'toHub' ? toHub : fromHub;
      expect(v(c.frame), `${c.name}: ${JSON.stringify(v.errors)}`).toBe(true);
    }
  });

  it('reject every invalid vector the schemas can express', () => {
    let rejected = 0;
    for (const c of messages.invalid) {
      const p = parse(c);
      if (!p.ok) continue; // not JSON at all
      const v = c.direction === 'toHub' ? toHub : fromHub;
      expect(v(p.value), c.name).toBe(c.schemaValid === true);
      if (c.schemaValid !== true) rejected++;
    }
    expect(rejected).toBeGreaterThan(35);
  });

  it('type every toHub invalid vector with a hub error code', () => {
    for (const c of messages.invalid.filter((c) => c.direction === 'toHub')) {
      expect(c.error, c.name).toMatch(/^hub\.[a-z_]+$/);
    }
  });
});

describe('mega-hub plays the exchange scripts', () => {
  const heartbeatMs = 400;
  for (const script of exchanges.scripts) {
    it(script.name, async () => {
      const hub = await startHub({
        MEGA_WSHUB_HEARTBEAT_MS: String(heartbeatMs),
        MEGA_WSHUB_TOKENS: exchanges.hub.tokens.join(','),
        MEGA_WSHUB_ADMIN_TOKENS: exchanges.hub.adminTokens.join(','),
      });
      const bad: string[] = [];
      try {
        await replayScript(
          script,
          hub.url,
          exchanges.hub.tokens,
          heartbeatMs,
          (f: Frame) => {
            if (!fromHub(f)) bad.push(`${JSON.stringify(f)}: ${JSON.stringify(fromHub.errors)}`);
          },
          exchanges.hub.adminTokens,
        );
      } finally {
        await hub.stop();
      }
      expect(bad).toEqual([]);
    });
  }
});

// Regenerates asp.json and deflate.json from node:crypto/node:zlib directly (an implementation
// independent of both codec backends), following FORMAT.md. frames.json is hand-written.
// Run: npx node crates/mega-codec/vectors/generate.mjs
import { createCipheriv, hkdfSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { constants, deflateRawSync } from 'node:zlib';

const hex = (b) => Buffer.from(b).toString('hex');
const dir = new URL('./', import.meta.url);
const save = (name, data) => writeFileSync(new URL(name, dir), `${JSON.stringify(data, null, 2)}\n`);

const deriveKey = (master, sessionId, scope) =>
  Buffer.from(hkdfSync('sha256', master, 'mega.asp.v1', Buffer.concat([Buffer.from(scope), Buffer.from([0]), Buffer.from(sessionId)]), 32));

// RFC 7692 message: raw deflate, sync flush, trailing 00 00 ff ff removed.
const deflateMsg = (data, level = 6, dictionary) => {
  const z = deflateRawSync(data, { level, finishFlush: constants.Z_SYNC_FLUSH, ...(dictionary ? { dictionary } : {}) });
  return z.subarray(0, z.length - 4);
};

function seal(key, nonce, ts, ns, plaintext, deflate = false) {
  const body = deflate ? deflateMsg(plaintext) : plaintext;
  const head = Buffer.alloc(22);
  head[0] = 1;
  head[1] = deflate ? 1 : 0;
  nonce.copy(head, 2);
  head.writeBigUInt64BE(BigInt(ts), 14);
  const aad = Buffer.concat([head.subarray(0, 2), head.subarray(14, 22), Buffer.from(ns)]);
  const c = createCipheriv('aes-256-gcm', key, nonce);
  c.setAAD(aad);
  const ct = Buffer.concat([c.update(body), c.final()]);
  return Buffer.concat([head, ct, c.getAuthTag()]);
}

const nonce = (prefix, counter) => {
  const n = Buffer.alloc(12);
  n.writeUInt32BE(prefix >>> 0, 0);
  n.writeBigUInt64BE(BigInt(counter), 4);
  return n;
};

const master = Buffer.from('mega-test-master-secret-0123456789abcdef');
const keys = [
  { master: hex(master), sessionId: 'sess-1', scope: 'ws' },
  { master: hex(master), sessionId: 'sess-1', scope: 'http' },
  { master: hex(Buffer.alloc(32, 0x42)), sessionId: '세션-🙂', scope: 'ws' },
].map((k) => ({ ...k, key: hex(deriveKey(Buffer.from(k.master, 'hex'), k.sessionId, k.scope)) }));

const key = Buffer.from(keys[0].key, 'hex');
const T = 1_700_000_000_000;
const json = Buffer.from('{"type":"chat.msg","payload":{"text":"hi"}}');
const big = Buffer.from(Array.from({ length: 200 }, (_, i) => `{"n":${i},"text":"hello"}`).join(','));
const seals = [
  { name: 'server envelope', nonce: nonce(0x80000001, 5), ts: T, ns: '/chat', plaintext: json },
  { name: 'client empty', nonce: nonce(0x12345678, 0), ts: 0, ns: '', plaintext: Buffer.alloc(0) },
  {
    name: 'unicode ns, binary body',
    nonce: nonce(0xffffffff, 2 ** 53 - 1),
    ts: 2 ** 53 - 1,
    ns: '/채팅',
    plaintext: Buffer.from([0, 1, 2, 255, 254]),
  },
  { name: 'http key, 4 KiB', key: keys[1].key, nonce: nonce(0x80000000, 1), ts: T + 1, ns: 'api/orders', plaintext: big },
].map((c) => ({
  name: c.name,
  key: c.key ?? keys[0].key,
  nonce: hex(c.nonce),
  timestamp: c.ts,
  ns: c.ns,
  plaintext: hex(c.plaintext),
  deflate: false,
  sealed: hex(seal(c.key ? Buffer.from(c.key, 'hex') : key, c.nonce, c.ts, c.ns, c.plaintext)),
}));
// Deflated frames: deflate bytes differ between zlib implementations, so these are open-only.
const opens = [
  { name: 'deflate flag', nonce: nonce(0x00000007, 9), ns: '/chat', plaintext: big },
  { name: 'deflate flag, empty', nonce: nonce(0x00000007, 10), ns: '/chat', plaintext: Buffer.alloc(0) },
].map((c) => ({
  name: c.name,
  key: keys[0].key,
  ns: c.ns,
  now: T,
  sealed: hex(seal(key, c.nonce, T, c.ns, c.plaintext, true)),
  plaintext: hex(c.plaintext),
}));
const good = Buffer.from(seals[0].sealed, 'hex');
const mutate = (f) => {
  const b = Buffer.from(good);
  f(b);
  return hex(b);
};
const rejects = [
  { name: 'tag flipped', sealed: mutate((b) => (b[b.length - 1] ^= 1)), ns: '/chat', now: T, error: 'asp.decrypt' },
  { name: 'ciphertext flipped', sealed: mutate((b) => (b[30] ^= 0x80)), ns: '/chat', now: T, error: 'asp.decrypt' },
  { name: 'other namespace', sealed: seals[0].sealed, ns: '/chat2', now: T, error: 'asp.decrypt' },
  { name: 'timestamp edited', sealed: mutate((b) => (b[21] ^= 1)), ns: '/chat', now: T, error: 'asp.decrypt' },
  { name: 'late by window+1', sealed: seals[0].sealed, ns: '/chat', now: T + 60_001, error: 'asp.drift' },
  { name: 'early by window+1', sealed: seals[0].sealed, ns: '/chat', now: T - 60_001, error: 'asp.drift' },
  { name: 'late by exactly the window', sealed: seals[0].sealed, ns: '/chat', now: T + 60_000, error: null },
  { name: 'truncated to 37 bytes', sealed: hex(good.subarray(0, 37)), ns: '/chat', now: T, error: 'codec.malformed' },
  { name: 'version 2', sealed: mutate((b) => (b[0] = 2)), ns: '/chat', now: T, error: 'codec.malformed' },
  { name: 'unknown flag', sealed: mutate((b) => (b[1] = 2)), ns: '/chat', now: T, error: 'codec.malformed' },
  { name: 'empty', sealed: '', ns: '/chat', now: T, error: 'codec.malformed' },
].map((r) => ({ ...r, key: keys[0].key }));
// A server-role opener with capacity 2: replay, reflection and the eviction floor.
const c = (counter, ts) => hex(seal(key, nonce(0x00000001, counter), ts, '', Buffer.from('m')));
const replay = {
  opener: { role: 'server', windowMs: 60_000, replayCapacity: 2 },
  key: keys[0].key,
  steps: [
    { sealed: c(0, T), now: T, error: null },
    { sealed: c(0, T), now: T, error: 'asp.replay' },
    { sealed: c(1, T + 1), now: T + 1, error: null },
    { sealed: c(2, T + 2), now: T + 2, error: null },
    { sealed: c(3, T), now: T + 2, error: 'asp.replay', note: 'at or below the floor left by evicting counter 0' },
    {
      sealed: hex(seal(key, nonce(0x80000001, 9), T + 3, '', Buffer.from('m'))),
      now: T + 3,
      error: 'asp.replay',
      note: 'server-sealed frame reflected back',
    },
    { sealed: c(4, T + 3), now: T + 3, error: null },
  ],
};
save('asp.json', { format: 'ASP v1, see ../FORMAT.md; hex bytes', keys, seals, opens, rejects, replay });

const msgs = ['{"type":"chat.msg","payload":{"text":"hello"}}', '{"type":"chat.msg","payload":{"text":"hello again"}}', ''];
const window = [];
const stream = msgs.map((m) => {
  const dict = window.length ? Buffer.from(window.join('')) : undefined;
  const z = deflateMsg(Buffer.from(m), 6, dict);
  window.push(m);
  return { compressed: hex(z), plaintext: hex(Buffer.from(m)) };
});
save('deflate.json', {
  format: 'RFC 7692 message format (raw deflate, sync flush, 00 00 ff ff stripped); produced by node:zlib',
  stateless: [
    { compressed: hex(deflateMsg(Buffer.alloc(0))), plaintext: '' },
    { compressed: hex(deflateMsg(json, 1)), plaintext: hex(json) },
    { compressed: hex(deflateMsg(big, 9)), plaintext: hex(big) },
    {
      compressed: hex(deflateMsg(Buffer.from(Array.from({ length: 3000 }, (_, i) => i & 255)), 0)),
      plaintext: hex(Buffer.from(Array.from({ length: 3000 }, (_, i) => i & 255))),
    },
  ],
  takeover: stream,
  limits: [
    { compressed: hex(deflateMsg(Buffer.alloc(100_000))), maxOutput: 100_000, error: null },
    { compressed: hex(deflateMsg(Buffer.alloc(100_000))), maxOutput: 99_999, error: 'codec.too_large' },
    { compressed: 'ffffff', maxOutput: 1024, error: 'codec.malformed' },
  ],
});

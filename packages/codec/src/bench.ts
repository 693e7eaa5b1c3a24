/**
 * `mega bench codec [--json] [--time <ms>]`: native addon vs TS backend side by side, per operation
 * and message size, on the same inputs. Each case is warmed up, then run in batches for a fixed
 * time; the TS baseline is node:crypto/node:zlib, not pure JS.
 */
import { readFileSync } from 'node:fs';
import { type Codec, createTsCodec, loadCodec } from './index.js';

const SIZES = [64, 1024, 16 * 1024, 256 * 1024];
const KEY = Buffer.alloc(32, 0x5a);
const NS = '/chat';

interface Row {
  op: string;
  size: number;
  native?: number;
  ts: number;
}

function cpuInfo(): { model: string; aes: boolean; vaes: boolean; avx512: boolean } {
  try {
    const text = readFileSync('/proc/cpuinfo', 'utf8');
    const model = /^model name\s*:\s*(.+)$/m.exec(text)?.[1] ?? 'unknown';
    const flags = new Set((/^flags\s*:\s*(.+)$/m.exec(text)?.[1] ?? '').split(' '));
    return { model, aes: flags.has('aes'), vaes: flags.has('vaes') && flags.has('vpclmulqdq'), avx512: flags.has('avx512f') };
  } catch {
    return { model: 'unknown (no /proc/cpuinfo)', aes: false, vaes: false, avx512: false };
  }
}

/** Valid, compressible JSON of exactly `size` bytes, shaped like chat traffic. */
function payload(size: number): Buffer {
  const items: string[] = [];
  for (let i = 0, len = 24; ; i++) {
    const item = `{"user":"u${i % 97}","text":"message number ${i * 7919} in the room","ts":${1_700_000_000_000 + i}}`;
    if (len + item.length + 1 > size) break;
    items.push(item);
    len += item.length + 1;
  }
  const head = `{"items":[${items.join(',')}],"pad":"`;
  return Buffer.from(`${head}${'x'.repeat(size - head.length - 2)}"}`);
}

/** ops/s: warm up, then run growing batches until `ms` has passed. */
function measure(fn: (i: number) => number, ms: number): number {
  let sink = 0;
  const run = (budgetNs: bigint) => {
    let n = 0;
    let batch = 1;
    const start = process.hrtime.bigint();
    for (;;) {
      for (let i = 0; i < batch; i++) sink += fn(n + i);
      n += batch;
      const elapsed = process.hrtime.bigint() - start;
      if (elapsed >= budgetNs) return (n * 1e9) / Number(elapsed);
      if (batch < 1 << 16) batch *= 2;
    }
  };
  run(BigInt(Math.round(ms * 0.2 * 1e6)));
  const rate = run(BigInt(Math.round(ms * 1e6)));
  if (sink === -1) console.log(sink); // keeps results observable
  return rate;
}

/** One benchmark body per operation; `open` cycles through a pool of distinct frames. */
function cases(c: Codec, size: number): Record<string, (i: number) => number> {
  const data = payload(size);
  const now = () => 1_700_000_000_000;
  const sealer = c.createSealer(KEY, { role: 'client', now });
  const poolSize = Math.floor(Math.max(16, Math.min(20_000, (64 << 20) / (size + 64))));
  const maker = createTsCodec().createSealer(KEY, { role: 'client', now });
  const pool = Array.from({ length: poolSize }, () => maker.seal(data, NS));
  let opener = c.createOpener(KEY, { now, replayCapacity: poolSize + 1 });
  let next = 0;
  const compressed = c.deflate(data);
  const frame = c.encodeFrame('chat.msg', NS, data, null);
  const server = c.encodeServerFrame({ kind: 1, type: 'chat.msg', ns: NS, target: 'room-1', origin: 'node-a', payload: data });
  const deflater = c.createDeflater();
  // Context takeover: 64 distinct messages inflated in order; a new inflater restarts each lap.
  const stream = Array.from({ length: 64 }, (_, k) => payload(size + k));
  const tsDeflater = createTsCodec().createDeflater();
  const streamZ = stream.map((m) => tsDeflater.deflate(m));
  let lap = c.createInflater();
  let pos = 0;
  return {
    seal: () => sealer.seal(data, NS).length,
    open: () => {
      if (next === poolSize) {
        next = 0;
        opener = c.createOpener(KEY, { now, replayCapacity: poolSize + 1 });
      }
      return opener.open(pool[next++] as Buffer, NS).length;
    },
    deflate: () => c.deflate(data).length,
    inflate: () => c.inflate(compressed).length,
    'deflate ctx': (i) => deflater.deflate(stream[i % 64] as Buffer).length,
    'inflate ctx': () => {
      if (pos === 64) {
        pos = 0;
        lap = c.createInflater();
      }
      return lap.inflate(streamZ[pos++] as Buffer).length;
    },
    'frame build': () => c.encodeFrame('chat.msg', NS, data, null).length,
    'frame check': () => c.validateFrame(frame).payloadLength,
    'srv encode': () =>
      c.encodeServerFrame({ kind: 1, type: 'chat.msg', ns: NS, target: 'room-1', origin: 'node-a', payload: data }).length,
    'srv decode': () => c.decodeServerFrame(server).payloadLength,
  };
}

const fmt = (n: number) => (n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : n.toFixed(0));
const sizeName = (s: number) => (s >= 1024 ? `${s / 1024} KiB` : `${s} B`);

export async function benchCodec(argv: string[]): Promise<number> {
  const json = argv.includes('--json');
  const t = argv.indexOf('--time');
  const ms = t >= 0 ? Number(argv[t + 1]) : 150;
  if (!Number.isFinite(ms) || ms <= 0 || argv.some((a, i) => a.startsWith('--') && a !== '--json' && !(a === '--time' && i === t))) {
    console.error('usage: mega bench codec [--json] [--time <ms per measurement, default 150>]');
    return 2;
  }
  const ts = createTsCodec();
  let native: Codec | undefined;
  let nativeError = '';
  try {
    native = loadCodec({ mode: 'native', routing: false });
  } catch (err) {
    nativeError = err instanceof Error ? err.message : String(err);
  }
  const cpu = cpuInfo();
  const rows: Row[] = [];
  for (const size of SIZES) {
    const tsCases = cases(ts, size);
    const nativeCases = native ? cases(native, size) : undefined;
    for (const op of Object.keys(tsCases)) {
      // Two alternating rounds, best of each: background load on a small machine hits both sides alike.
      const tsFn = tsCases[op] as (i: number) => number;
      const nativeFn = nativeCases?.[op];
      const row: Row = { op, size, ts: 0 };
      for (let round = 0; round < 2; round++) {
        row.ts = Math.max(row.ts, measure(tsFn, ms));
        if (nativeFn) row.native = Math.max(row.native ?? 0, measure(nativeFn, ms));
      }
      rows.push(row);
    }
  }
  const aesPath = cpu.vaes ? 'VAES+VPCLMULQDQ (AVX2)' : cpu.aes ? 'AES-NI+PCLMULQDQ' : 'no AES instructions (software)';
  const env = {
    cpu: cpu.model,
    aesNi: cpu.aes,
    vaes: cpu.vaes,
    nativeAesPath: `ring: ${aesPath}`,
    tsAesPath: `OpenSSL ${process.versions.openssl}: ${cpu.avx512 && cpu.vaes ? 'VAES (AVX-512)' : cpu.aes ? 'AES-NI+PCLMULQDQ (AVX)' : 'software'}`,
    node: process.version,
    native: native ? 'loaded' : `unavailable: ${nativeError}`,
  };
  const ratio = (r: Row) => (r.native === undefined ? undefined : r.native / r.ts);
  const at1k = rows.filter((r) => r.size === 1024 && (r.op === 'seal' || r.op === 'open')).map(ratio);
  const aspAll = rows.filter((r) => r.op === 'seal' || r.op === 'open').map(ratio);
  const goals = native
    ? { sealOpen4xAt1KiB: at1k.every((x) => (x ?? 0) >= 4), sealOpen1xEverySize: aspAll.every((x) => (x ?? 0) >= 1) }
    : undefined;
  if (json) {
    console.log(JSON.stringify({ env, msPerCase: ms, rows: rows.map((r) => ({ ...r, ratio: ratio(r) })), goals }, null, 2));
    return 0;
  }
  console.log(`CPU: ${env.cpu}  AES-NI: ${cpu.aes ? 'yes' : 'no'}  VAES: ${cpu.vaes ? 'yes' : 'no'}  Node ${env.node}`);
  console.log(`native AES-GCM: ${env.nativeAesPath}; TS AES-GCM: ${env.tsAesPath}; native addon: ${env.native}`);
  const head = ['op', 'size', 'native ops/s', 'native MB/s', 'ts ops/s', 'ts MB/s', 'native/ts'];
  const lines = rows.map((r) => [
    r.op,
    sizeName(r.size),
    r.native === undefined ? '-' : fmt(r.native),
    r.native === undefined ? '-' : ((r.native * r.size) / 1e6).toFixed(1),
    fmt(r.ts),
    ((r.ts * r.size) / 1e6).toFixed(1),
    r.native === undefined ? '-' : `${(r.native / r.ts).toFixed(2)}x`,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] as string).length)));
  for (const l of [head, ...lines])
    console.log(l.map((c, i) => (i < 2 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  '));
  console.log(
    'native column = addon only; loadCodec() routes frame build, srv encode/decode and inflate >= 64 KiB input to TS (MEGA_CODEC_ROUTING=0 disables)',
  );
  if (goals)
    console.log(
      `goals: seal/open >= 4x at 1 KiB: ${goals.sealOpen4xAt1KiB ? 'met' : 'NOT met'}; >= 1x at every size: ${goals.sealOpen1xEverySize ? 'met' : 'NOT met'}`,
    );
  return 0;
}

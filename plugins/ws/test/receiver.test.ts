/** The frame parser on its own: any chunking gives the same result; violations map to close codes. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { wsFrame } from '../../../scripts/test/wire.js';
import { negotiateProtocol, parseExtensions } from '../src/handshake.js';
import { FrameReader, type FrameSink } from '../src/receiver.js';

type Event = [kind: string, ...rest: unknown[]];

function sink(events: Event[]): FrameSink {
  return {
    onMessage: (binary, data, compressed) => events.push(['message', binary, data.toString('latin1'), compressed]),
    onPing: (d) => events.push(['ping', d.toString('latin1')]),
    onPong: (d) => events.push(['pong', d.toString('latin1')]),
    onCloseFrame: (code, reason) => events.push(['close', code, reason.toString()]),
    onViolation: (code, reason) => events.push(['violation', code, reason]),
  };
}

/** The reader unmasks in place (it owns socket chunks), so each run gets its own copy. */
function feed(input: Buffer, cuts: number[], max = 1 << 20, rsv1 = true): Event[] {
  const bytes = Buffer.from(input);
  const events: Event[] = [];
  const reader = new FrameReader(sink(events), max, rsv1);
  let at = 0;
  for (const cut of [...cuts.filter((c) => c > 0 && c < bytes.length)].sort((a, b) => a - b)) {
    reader.push(bytes.subarray(at, cut));
    at = cut;
  }
  reader.push(bytes.subarray(at));
  return events;
}

describe('FrameReader', () => {
  const stream = Buffer.concat([
    wsFrame(1, Buffer.from('{"type":"a.b"}')),
    wsFrame(9, Buffer.from('ping!')),
    wsFrame(1, Buffer.from('frag'), { fin: false, rsv: 4 }),
    wsFrame(10, Buffer.from('pong in the middle')),
    wsFrame(0, Buffer.from('mented'), { fin: false }),
    wsFrame(0, Buffer.alloc(0)),
    wsFrame(2, Buffer.alloc(70_000, 7)),
    wsFrame(1, Buffer.alloc(300, 0x61)),
    wsFrame(8, Buffer.from([0x03, 0xe8, 0x6f, 0x6b])),
    wsFrame(1, Buffer.from('after close: ignored')),
  ]);
  const expected: Event[] = [
    ['message', false, '{"type":"a.b"}', false],
    ['ping', 'ping!'],
    ['pong', 'pong in the middle'],
    ['message', false, 'fragmented', true],
    ['message', true, Buffer.alloc(70_000, 7).toString('latin1'), false],
    ['message', false, 'a'.repeat(300), false],
    ['close', 1000, 'ok'],
  ];

  it('parses the same events whatever the chunk boundaries (property)', () => {
    expect(feed(stream, [])).toEqual(expected);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: stream.length - 1 }), { maxLength: 40 }), (cuts) => {
        expect(feed(stream, cuts)).toEqual(expected);
      }),
      { numRuns: 300 },
    );
  });

  it('parses byte by byte', () => {
    expect(
      feed(
        stream,
        Array.from({ length: stream.length }, (_, i) => i),
      ),
    ).toEqual(expected);
  });

  it('maps violations to close codes and stops', () => {
    const cases: Array<[string, Buffer, number, number?]> = [
      ['unmasked', Buffer.from([0x81, 0x01, 0x61]), 1002],
      ['reserved opcode', wsFrame(3, Buffer.from('x')), 1002],
      ['reserved control opcode', wsFrame(0xb, Buffer.from('x')), 1002],
      ['rsv1 without extension', wsFrame(1, Buffer.from('x'), { rsv: 4 }), 1002],
      ['rsv1 on control', wsFrame(9, Buffer.from('x'), { rsv: 4 }), 1002],
      ['oversize single', wsFrame(1, Buffer.alloc(101)), 1009, 100],
      ['oversize fragments', Buffer.concat([wsFrame(1, Buffer.alloc(60), { fin: false }), wsFrame(0, Buffer.alloc(60))]), 1009, 100],
      ['64-bit length over 2^53', Buffer.from([0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), 1009],
      ['64-bit length with the top bit set', Buffer.from([0x82, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), 1002],
      ['close code 1005 on the wire', wsFrame(8, Buffer.from([0x03, 0xed])), 1002],
      ['close code 2999', wsFrame(8, Buffer.from([0x0b, 0xb7])), 1002],
      ['binary inside a text message', Buffer.concat([wsFrame(1, Buffer.from('a'), { fin: false }), wsFrame(2, Buffer.from('b'))]), 1002],
    ];
    for (const [name, bytes, code, max] of cases) {
      const events = feed(bytes, [], max ?? 1 << 20, name !== 'rsv1 without extension');
      expect(events.at(-1)?.slice(0, 2), name).toEqual(['violation', code]);
      expect(events.filter((e) => e[0] === 'violation').length, name).toBe(1);
    }
  });

  it('A7: a 64-bit length with the most significant bit set is a protocol error (1002), even when it is small otherwise', () => {
    for (const low of [0, 5]) {
      const head = Buffer.from([0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, low]);
      expect(feed(head, [])).toEqual([['violation', 1002, '64-bit payload length with the most significant bit set']]);
    }
  });

  it('A7: invalid UTF-8 fails in the fragment or chunk that carries it (1007), before the message ends', () => {
    const valid = Buffer.from('\u03ba\u1f79\u03c3\u03bc\u03b5', 'utf8');
    const bad = Buffer.from([0xf4, 0x90, 0x80, 0x80]); // U+110000: past the last code point
    // Fragments: the second one is rejected at once, the third is never needed.
    const reader = (events: Event[]) => new FrameReader(sink(events), 1 << 20, false);
    let events: Event[] = [];
    let r = reader(events);
    r.push(wsFrame(1, valid, { fin: false }));
    expect(events).toEqual([]);
    r.push(wsFrame(0, bad, { fin: false }));
    expect(events).toEqual([['violation', 1007, 'text message is not valid UTF-8']]);
    // Chunks of one frame: the chunk with the bad bytes is enough (the frame is not complete yet).
    const frame = wsFrame(1, Buffer.concat([valid, bad, Buffer.from('edited')]));
    const head = frame.length - 6 - bad.length - valid.length;
    events = [];
    r = reader(events);
    r.push(Buffer.from(frame.subarray(0, head + valid.length)));
    expect(events).toEqual([]);
    r.push(Buffer.from(frame.subarray(head + valid.length, head + valid.length + 2)));
    expect(events).toEqual([['violation', 1007, 'text message is not valid UTF-8']]);
    // A sequence cut between fragments is held back when it can still become valid.
    events = [];
    r = reader(events);
    const euro = Buffer.from('\u20ac', 'utf8');
    r.push(wsFrame(1, euro.subarray(0, 1), { fin: false }));
    r.push(wsFrame(0, euro.subarray(1, 2), { fin: false }));
    r.push(wsFrame(0, euro.subarray(2), { fin: true }));
    expect(events).toEqual([['message', false, euro.toString('latin1'), false]]);
    // ...and fails at the end when it never completes.
    events = [];
    r = reader(events);
    r.push(wsFrame(1, euro.subarray(0, 2), { fin: true }));
    expect(events[0]?.slice(0, 2)).toEqual(['violation', 1007]);
  });

  it('A6: a message in many fragments costs its bytes (one buffer), and one fragment past maxFragments closes with 1009', () => {
    const parts = Array.from({ length: 5000 }, (_, i) => wsFrame(i === 0 ? 2 : 0, Buffer.from([i & 0xff]), { fin: i === 4999 }));
    const events: Event[] = [];
    const r = new FrameReader(sink(events), { maxPayload: 1 << 20, rsv1Allowed: false, maxFragments: 5000 });
    r.push(Buffer.concat(parts));
    expect(events).toHaveLength(1);
    expect(Buffer.from(events[0]?.[2] as string, 'latin1')).toEqual(Buffer.from(Array.from({ length: 5000 }, (_, i) => i & 0xff)));
    const over: Event[] = [];
    const r2 = new FrameReader(sink(over), { maxPayload: 1 << 20, rsv1Allowed: false, maxFragments: 4999 });
    r2.push(Buffer.concat(parts));
    expect(over).toEqual([['violation', 1009, 'message exceeds 4999 fragments']]);
  });

  it('never throws on random bytes (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), fc.array(fc.integer({ min: 1, max: 511 }), { maxLength: 8 }), (bytes, cuts) => {
        const events = feed(Buffer.from(bytes), cuts, 4096);
        for (const e of events) expect(['message', 'ping', 'pong', 'close', 'violation']).toContain(e[0]);
        expect(events.filter((e) => e[0] === 'violation' || e[0] === 'close').length).toBeLessThanOrEqual(1);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('handshake header parsers (bad input)', () => {
  it('negotiates mega.v<N> or refuses clearly', () => {
    expect(negotiateProtocol(undefined)).toEqual({ version: 1 });
    expect(negotiateProtocol('')).toEqual({ version: 1 });
    expect(negotiateProtocol(' , ')).toEqual({ version: 1 });
    expect(negotiateProtocol('mega.v1')).toEqual({ version: 1, protocol: 'mega.v1' });
    expect(negotiateProtocol(['x, mega.v1', 'mega.v2'], [1, 2])).toEqual({ version: 2, protocol: 'mega.v2' });
    for (const bad of ['mega.v0', 'mega.v01', 'MEGA.V1', 'mega.v1x', 'mega.v99999', 'v1', 'x'.repeat(5000)]) {
      expect(() => negotiateProtocol(bad), bad).toThrow(expect.objectContaining({ code: 'ws.protocol_unsupported', status: 400 }));
    }
  });
  it('parses extension offers with quoted values and keeps duplicates visible', () => {
    expect(parseExtensions('permessage-deflate; client_max_window_bits="10"; x, foo')).toEqual([
      {
        name: 'permessage-deflate',
        params: [
          ['client_max_window_bits', '10'],
          ['x', true],
        ],
      },
      { name: 'foo', params: [] },
    ]);
    expect(parseExtensions(' a ; b = c ')).toEqual([{ name: 'a', params: [['b', 'c']] }]);
    expect(parseExtensions(undefined)).toEqual([]);
  });
});

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
      ['64-bit length over 2^53', Buffer.from([0x82, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), 1009],
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

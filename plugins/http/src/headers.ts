/**
 * The `headers` phase: constant response headers (helmet's set, ...) chosen by content type,
 * validated once and written as one pre-rendered block.
 *
 * Why: set one by one (`reply.header` in an onSend hook), five constant headers cost about 1 µs per
 * response — Fastify lower-cases and stores each, then Node validates each name and value again
 * (two regular expressions) and appends it to the head. Rendered once per content type and handed
 * to Node's head writer in one piece, they cost about 0.1 µs (bench:http, variant c).
 *
 * How: the response's `_storeHeader(statusLine, headers)` — the one place Node assembles a response
 * head, for every response (routes, errors, 404s, files, inject) — gets the block appended to the
 * status line. It is an internal of Node (stable since Node 0.x); `headerBlocksWork()` checks at boot
 * that it still behaves, else the sets are applied with `reply.header` as before.
 */
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';

// node:http through require: an ESM import reads every export of it, and its lazy `WebSocket` getter
// then loads undici (~20 ms of every cold start).
const http = createRequire(import.meta.url)('node:http') as typeof import('node:http');

/** Header pairs for a response of this content type (undefined: none). Pure: called once per type. */
export type HeaderSet = (contentType: string | undefined) => ReadonlyArray<readonly [string, string]> | undefined;

type Headers = OutgoingHttpHeaders | Record<string, [string, unknown]> | unknown[] | null | undefined;
type StoreHeader = (this: ServerResponse, firstLine: string, headers: Headers) => void;
interface NodeInternals {
  _storeHeader: StoreHeader;
  _header?: string | null;
}

const nodeStore = (http.ServerResponse.prototype as unknown as NodeInternals)._storeHeader;

interface Block {
  /** `name: value\r\n` lines. */
  text: string;
  /** Lower-case names: a response's own header of one of these names gives way to the set's. */
  names: ReadonlySet<string>;
  pairs: ReadonlyArray<readonly [string, string]>;
}

/** Distinct content types remembered per app; past that, blocks are rendered per response. */
const CACHE_LIMIT = 64;

/** One app's header sets, rendered per content type. */
export class HeaderBlocks {
  readonly #sets: readonly HeaderSet[];
  readonly #cache = new Map<string | undefined, Block | null>();
  /** The `_storeHeader` a response of this app gets (one function per app, no allocation per response). */
  readonly store: StoreHeader;

  constructor(sets: readonly HeaderSet[]) {
    this.#sets = sets;
    const blocks = this;
    this.store = function storeWithBlock(this: ServerResponse, firstLine: string, headers: Headers): void {
      const block = blocks.block(contentType(headers));
      if (block) nodeStore.call(this, firstLine + block.text, withoutNames(headers, block.names));
      else nodeStore.call(this, firstLine, headers);
    };
  }

  /** The block for a content type (rendered and validated on first use). */
  block(type: string | undefined): Block | undefined {
    let block = this.#cache.get(type);
    if (block === undefined) {
      block = this.#render(type);
      if (this.#cache.size < CACHE_LIMIT) this.#cache.set(type, block);
    }
    return block ?? undefined;
  }

  #render(type: string | undefined): Block | null {
    const byName = new Map<string, readonly [string, string]>();
    for (const set of this.#sets) {
      for (const pair of set(type) ?? []) {
        http.validateHeaderName(pair[0]);
        http.validateHeaderValue(pair[0], pair[1]);
        // A later set (a later plugin) overrides an earlier one's header of the same name.
        byName.set(pair[0].toLowerCase(), pair);
      }
    }
    if (!byName.size) return null;
    const pairs = [...byName.values()];
    return { text: pairs.map(([k, v]) => `${k}: ${v}\r\n`).join(''), names: new Set(byName.keys()), pairs };
  }
}

function contentType(headers: Headers): string | undefined {
  if (!headers || Array.isArray(headers)) return arrayContentType(headers);
  const value = (headers as Record<string, unknown>)['content-type'];
  // Fastify's headers hold values; Node's own map (res.setHeader) holds [name, value].
  if (typeof value === 'string') return value;
  return Array.isArray(value) ? String(value[1]) : undefined;
}

function arrayContentType(headers: unknown[] | null | undefined): string | undefined {
  if (!headers) return undefined;
  const flat = headers.length > 0 && !Array.isArray(headers[0]);
  for (let i = 0; i < headers.length; i += flat ? 2 : 1) {
    const [name, value] = flat ? [headers[i], headers[i + 1]] : (headers[i] as unknown[]);
    if (typeof name === 'string' && name.toLowerCase() === 'content-type') return String(value);
  }
  return undefined;
}

/** The response's headers without those the block sets (the set's value wins, as `reply.header` did). */
function withoutNames(headers: Headers, names: ReadonlySet<string>): Headers {
  if (!headers) return headers;
  if (Array.isArray(headers)) {
    const flat = headers.length > 0 && !Array.isArray(headers[0]);
    if (!flat) return headers.filter((pair) => !names.has(String((pair as unknown[])[0]).toLowerCase()));
    const out: unknown[] = [];
    for (let i = 0; i < headers.length; i += 2) {
      if (!names.has(String(headers[i]).toLowerCase())) out.push(headers[i], headers[i + 1]);
    }
    return out;
  }
  // Both object forms are keyed by the lower-case name; a response has few headers.
  for (const key in headers) if (names.has(key)) delete (headers as Record<string, unknown>)[key];
  return headers;
}

/** Hands `blocks` the response's head: the block goes out with it. */
export function attachBlock(res: ServerResponse, blocks: HeaderBlocks): void {
  (res as unknown as NodeInternals)._storeHeader = blocks.store;
}

let works: boolean | undefined;

/** Does this Node assemble response heads through `_storeHeader(statusLine, headers)`? Checked once. */
export function headerBlocksWork(): boolean {
  if (works !== undefined) return works;
  try {
    const req = { method: 'GET', httpVersionMajor: 1, httpVersionMinor: 1, headers: {} } as IncomingMessage;
    const res = new http.ServerResponse(req);
    const probe = new HeaderBlocks([() => [['x-mega-probe', '1']]]);
    attachBlock(res, probe);
    res.writeHead(200, { 'content-type': 'text/plain', 'x-mega-probe': '0' });
    const head = (res as unknown as NodeInternals)._header;
    works = typeof head === 'string' && head.includes('\r\nx-mega-probe: 1\r\n') && !head.includes('x-mega-probe: 0');
  } catch {
    works = false;
  }
  return works;
}

/**
 * The opening handshake (RFC 6455 §4.2): request checks, the accept key, `mega.v<N>` subprotocol
 * negotiation (SPEC §5) and the `Sec-WebSocket-Extensions` grammar (RFC 7230 tokens and quoted
 * strings) that permessage-deflate negotiation reads. Every refusal is a `HandshakeError` with an
 * HTTP status and a dotted code, answered before the upgrade.
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { MegaError } from '@mega/kernel';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const KEY_RE = /^[A-Za-z0-9+/]{22}==$/;
const TOKEN_RE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Envelope versions this server speaks; the client's highest shared one wins. */
export const SUPPORTED_VERSIONS: readonly number[] = Object.freeze([1]);

export class HandshakeError extends MegaError {
  constructor(code: string, message: string, status: number, headers?: Record<string, string>) {
    super(code, message, { status, ...(headers ? { details: { headers } } : {}) });
  }
}

export function acceptKey(key: string): string {
  return createHash('sha1')
    .update(key + GUID)
    .digest('base64');
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(', ') : v;
}

/** Checks the request is a well-formed version-13 upgrade; returns the client key. */
export function checkUpgrade(req: IncomingMessage): string {
  if (req.method !== 'GET') throw new HandshakeError('ws.bad_handshake', 'WebSocket upgrade must use GET', 405);
  // RFC 6455 §4.2.1: the opening handshake is an HTTP/1.1 (or later) request.
  if (req.httpVersionMajor < 1 || (req.httpVersionMajor === 1 && req.httpVersionMinor < 1)) {
    throw new HandshakeError('ws.bad_handshake', `WebSocket upgrade requires HTTP/1.1 or later (got HTTP/${req.httpVersion})`, 400);
  }
  if (header(req, 'upgrade')?.toLowerCase() !== 'websocket') {
    throw new HandshakeError('ws.bad_handshake', 'Upgrade header must be "websocket"', 400);
  }
  const connection = header(req, 'connection') ?? '';
  if (!connection.split(',').some((t) => t.trim().toLowerCase() === 'upgrade')) {
    throw new HandshakeError('ws.bad_handshake', 'Connection header must contain "upgrade"', 400);
  }
  const version = header(req, 'sec-websocket-version');
  if (version !== '13') {
    throw new HandshakeError('ws.bad_version', 'only WebSocket version 13 is supported', 426, { 'Sec-WebSocket-Version': '13' });
  }
  const key = header(req, 'sec-websocket-key')?.trim();
  if (!key || !KEY_RE.test(key) || Buffer.from(key, 'base64').length !== 16) {
    throw new HandshakeError('ws.bad_handshake', 'Sec-WebSocket-Key must be 16 bytes, base64-encoded', 400);
  }
  return key;
}

/**
 * `mega.v<N>` negotiation: no header means v1 (no protocol echoed); otherwise the highest version
 * both sides speak, echoed back. Offering only unknown protocols is refused with 400.
 */
export function negotiateProtocol(
  offered: string | string[] | undefined,
  supported: readonly number[] = SUPPORTED_VERSIONS,
): { version: number; protocol?: string } {
  if (offered === undefined) return { version: 1 };
  const list = (Array.isArray(offered) ? offered.join(',') : offered)
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (list.length === 0) return { version: 1 };
  let best = 0;
  let protocol: string | undefined;
  for (const p of list) {
    const m = /^mega\.v([1-9][0-9]{0,3})$/.exec(p);
    const v = m ? Number(m[1]) : 0;
    if (v > best && supported.includes(v)) {
      best = v;
      protocol = p;
    }
  }
  if (!protocol) {
    throw new HandshakeError(
      'ws.protocol_unsupported',
      `none of the offered subprotocols (${list.join(', ').slice(0, 200)}) is supported; offer ${supported.map((v) => `mega.v${v}`).join(', ')}`,
      400,
    );
  }
  return { version: best, protocol };
}

export interface ExtensionOffer {
  name: string;
  /** Parameter name -> values in order (a bare parameter is `true`); duplicates stay visible. */
  params: Array<[string, string | true]>;
}

/**
 * Parses `Sec-WebSocket-Extensions` (RFC 6455 §9.1): `ext; p; q=v, ext2`. Values may be tokens
 * or quoted strings. Malformed input throws `ws.bad_extensions` (400).
 */
export function parseExtensions(value: string | undefined): ExtensionOffer[] {
  if (value === undefined || value.trim() === '') return [];
  if (value.length > 4096) throw new HandshakeError('ws.bad_extensions', 'Sec-WebSocket-Extensions is too long', 400);
  const out: ExtensionOffer[] = [];
  let i = 0;
  const n = value.length;
  const bad = (why: string) => new HandshakeError('ws.bad_extensions', `malformed Sec-WebSocket-Extensions (${why})`, 400);
  const skipWs = () => {
    while (i < n && (value[i] === ' ' || value[i] === '\t')) i++;
  };
  const token = (): string => {
    const start = i;
    while (i < n && /[!#$%&'*+\-.^_`|~0-9A-Za-z]/.test(value[i] as string)) i++;
    if (i === start) throw bad(`expected a token at ${start}`);
    return value.slice(start, i);
  };
  for (;;) {
    skipWs();
    const offer: ExtensionOffer = { name: token().toLowerCase(), params: [] };
    skipWs();
    while (value[i] === ';') {
      i++;
      skipWs();
      const name = token().toLowerCase();
      skipWs();
      let v: string | true = true;
      if (value[i] === '=') {
        i++;
        skipWs();
        if (value[i] === '"') {
          i++;
          let s = '';
          while (i < n && value[i] !== '"') {
            if (value[i] === '\\') i++;
            if (i >= n) throw bad('unterminated quoted string');
            s += value[i];
            i++;
          }
          if (value[i] !== '"') throw bad('unterminated quoted string');
          i++;
          // RFC 6455 §9.1: a quoted value must still be a token once unquoted.
          if (!TOKEN_RE.test(s)) throw bad('quoted value is not a token');
          v = s;
        } else v = token();
        skipWs();
      }
      offer.params.push([name, v]);
    }
    out.push(offer);
    if (i >= n) break;
    if (value[i] !== ',') throw bad(`unexpected "${value[i]}" at ${i}`);
    i++;
    if (out.length > 32) throw bad('too many offers');
  }
  return out;
}

/** The raw HTTP response written for a refused upgrade (the socket is not yet a WebSocket). */
export function httpError(status: number, code: string, message: string, headers: Record<string, string> = {}): string {
  const body = JSON.stringify({ error: { code, message } });
  const reason = STATUS_TEXT[status] ?? 'Error';
  const extra = Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  return `HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`;
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  426: 'Upgrade Required',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

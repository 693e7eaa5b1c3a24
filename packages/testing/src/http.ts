/** HTTP requests against a booted server: real loopback requests through node:http, answers parsed for assertions. */
import type { IncomingHttpHeaders } from 'node:http';
import { request } from 'node:http';
import type { Loose } from './loose.js';

export interface InjectInit {
  method?: string;
  headers?: Record<string, string>;
  /** Raw body. */
  body?: string | Buffer;
  /** A JSON body: serialised, with `content-type: application/json` unless `headers` set one. */
  json?: unknown;
  /** The Host header (virtual-host routing). */
  host?: string;
  /** Source address on the loopback range (127.0.0.2, ...): a different client IP. */
  localAddress?: string;
  /** Server address (default 127.0.0.1). */
  hostname?: string;
  /** Rejects when no answer arrives in time (default 10 s). */
  timeoutMs?: number;
}

/**
 * A response. Mega answers JSON as an envelope, `{ data }` or `{ error: { code, message, details } }`;
 * `data`, `error` and `code` lift those out. `T` types `data` for a test that wants it typed.
 */
export interface InjectResponse<T = Loose> {
  status: number;
  headers: IncomingHttpHeaders;
  /** The body as text (UTF-8). */
  text: string;
  /** The body as bytes. */
  body: Buffer;
  /** The parsed body when the response is JSON. */
  json: Loose;
  /** `json.data` of a success envelope. */
  data: T;
  /** `json.error` of an error envelope. */
  error: { code: string; message: string; details?: Loose } | undefined;
  /** `json.error.code`. */
  code: string | undefined;
}

/**
 * One request to `127.0.0.1:<port><path>`, on a fresh connection. node:http rather than fetch: fetch
 * refuses to set Host and normalises paths, which virtual-host and path-traversal tests need.
 */
export function inject<T = Loose>(port: number, path: string, init: InjectInit = {}): Promise<InjectResponse<T>> {
  const headers: Record<string, string> = { ...init.headers };
  let body = init.body;
  if (init.json !== undefined) {
    body = JSON.stringify(init.json);
    if (!Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) headers['content-type'] = 'application/json';
  }
  if (init.host) headers.host = init.host;
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: init.hostname ?? '127.0.0.1',
        port,
        path,
        method: init.method ?? (body === undefined ? 'GET' : 'POST'),
        headers,
        agent: false,
        timeout: init.timeoutMs ?? 10_000,
        ...(init.localAddress ? { localAddress: init.localAddress } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const buffer = Buffer.concat(chunks);
          const text = buffer.toString('utf8');
          let json: Loose;
          if (res.headers['content-type']?.includes('json') && text) {
            try {
              json = JSON.parse(text);
            } catch {
              json = undefined;
            }
          }
          const error = json && typeof json === 'object' ? json.error : undefined;
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            text,
            body: buffer,
            json,
            data: json && typeof json === 'object' ? json.data : undefined,
            error,
            code: typeof error?.code === 'string' ? error.code : undefined,
          });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${init.method ?? 'GET'} ${path}: no answer within ${init.timeoutMs ?? 10_000} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

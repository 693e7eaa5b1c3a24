/** Test helpers shared by the HTTP-facing plugins: throwaway projects, a booted kernel, raw HTTP calls, captured logs. */
import type { IncomingHttpHeaders } from 'node:http';
import { request } from 'node:http';
import { Writable } from 'node:stream';
import type { Kernel, PluginDefinition } from '@mega/kernel';
import { createLogger, loadKernel } from '@mega/kernel';
import { pino } from 'pino';
import type { HttpServer } from '../../plugins/http/src/index.js';
import { writeProject } from './project.js';

/** Writes a project; `config` is the body of mega.config.ts's default export (a TS object literal). */
export function project(
  files: Record<string, string>,
  config = "{ plugins: ['@mega/http'], server: { port: 0, host: '127.0.0.1' } }",
): string {
  return writeProject({ 'mega.config.ts': `export default ${config};\n`, ...files }, 'mega-http-');
}

export interface Response {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  json: Record<string, unknown> | undefined;
  /** `error.code` of an error envelope. */
  code: string | undefined;
  /** `json.data` / `json.error`, loosely typed for assertions. */
  data: any;
  error: any;
}

export interface CallInit {
  method?: string;
  body?: string | Buffer;
  headers?: Record<string, string>;
  host?: string;
  /** Source address on the loopback range (127.0.0.2, ...): a different client IP. */
  localAddress?: string;
}

/** node:http rather than fetch: fetch refuses to set Host and normalises paths, which vhost and traversal tests need. */
export function call(port: number, path: string, init: CallInit = {}): Promise<Response> {
  return new Promise((done, fail) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path,
        method: init.method ?? 'GET',
        headers: { ...init.headers, ...(init.host ? { host: init.host } : {}) },
        agent: false,
        ...(init.localAddress ? { localAddress: init.localAddress } : {}),
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => {
          let json: Record<string, unknown> | undefined;
          if (res.headers['content-type']?.includes('json') && text) json = JSON.parse(text) as Record<string, unknown>;
          const code = (json?.error as { code?: string } | undefined)?.code;
          done({ status: res.statusCode ?? 0, headers: res.headers, text, json, code, data: json?.data, error: json?.error });
        });
      },
    );
    req.on('error', fail);
    req.end(init.body);
  });
}

/** A logger whose JSON lines land in `lines`. */
export function captureLogger(level = 'info') {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line.trim()) lines.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  return { logger: pino({ level }, stream), lines };
}

export interface Booted {
  kernel: Kernel;
  http: HttpServer;
  dir: string;
  call: (path: string, init?: CallInit) => Promise<Response>;
}

const running: Kernel[] = [];

/** Stops every kernel booted by {@link boot} (call from afterEach). */
export async function stopAll(): Promise<void> {
  for (const k of running.splice(0)) await k.stop();
}

export async function boot(
  files: Record<string, string>,
  options: { config?: string; env?: string; extra?: PluginDefinition; logger?: ReturnType<typeof createLogger> } = {},
): Promise<Booted> {
  const dir = project(files, options.config);
  const kernel = await loadKernel({
    dir,
    logger: options.logger ?? createLogger({ level: 'silent' }),
    ...(options.env ? { env: options.env } : { env: 'test' }),
  });
  if (options.extra) (kernel as unknown as { plugins: PluginDefinition[] }).plugins.push(options.extra);
  running.push(kernel);
  await kernel.start();
  const http = kernel.use<HttpServer>('http');
  return { kernel, http, dir, call: (path, init) => call(http.port, path, init) };
}

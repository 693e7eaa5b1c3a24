/**
 * Issue 11 findings B17 (bad input is a 4xx in the envelope), B18 (vhost: absolute-form targets, two
 * Host headers) and B19 (responses that carry secrets are `no-store`). Raw-socket requests where
 * fetch/undici or node:http would normalise what the attacker sent.
 */
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { type BootProjectOptions, bootProject, inject, stopAll, writeProject } from '@mega/testing';
import { afterEach, describe, expect, it } from 'vitest';

afterEach(stopAll);

const boot = (
  files: Record<string, string>,
  { config = "{ plugins: ['@mega/http'] }", ...options }: BootProjectOptions & { config?: string } = {},
) => bootProject(writeProject({ 'mega.config.ts': `export default ${config};\n`, ...files }, { prefix: 'mega-http-b-' }), options);

/** Sends `raw` as is on a fresh TCP connection; resolves with the status and the body of the answer. */
function rawRequest(port: number, raw: string): Promise<{ status: number; headers: string; body: string; json: any }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('no answer within 5 s'));
    }, 5000);
    socket.on('data', (c) => chunks.push(c));
    socket.on('error', reject);
    socket.on('close', () => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString('utf8');
      const split = text.indexOf('\r\n\r\n');
      const head = text.slice(0, split);
      let body = text.slice(split + 4);
      if (/transfer-encoding: chunked/i.test(head)) {
        let out = '';
        for (let rest = body; ; ) {
          const nl = rest.indexOf('\r\n');
          const n = Number.parseInt(rest.slice(0, nl), 16);
          if (!n) break;
          out += rest.slice(nl + 2, nl + 2 + n);
          rest = rest.slice(nl + 2 + n + 2);
        }
        body = out;
      }
      let json: unknown;
      try {
        json = JSON.parse(body);
      } catch {
        json = undefined;
      }
      resolve({ status: Number(head.split(' ')[1]), headers: head, body, json });
    });
    socket.end(raw);
  });
}

const APP = { 'apps/web/app.config.ts': 'export default {};' };

describe('B17: bad input is a 4xx in the envelope', () => {
  const ECHO = {
    ...APP,
    'apps/web/routes/r.ts': `export default (r: any) => {
  r.http.post('/echo', async (req: any) => ({ echo: req.body }));
  r.http.post('/greet', async (req: any) => 'hi ' + req.body.name, {
    schema: { body: { type: 'object', required: ['name'], properties: { name: { type: 'string' } } } },
  });
  r.http.get('/ping', async () => 'pong');
};`,
  };
  const json = (body: string) => ({ method: 'POST', body, headers: { 'content-type': 'application/json' } });

  it('B17: JSON nested 10,000 deep is refused at parse with 400 http.too_deep (limit configurable)', async () => {
    const first = await boot(ECHO);
    const { inject } = first;
    const deep = `${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}`;
    const res = await inject('/echo', json(deep));
    expect([res.status, res.code]).toEqual([400, 'http.too_deep']);
    const arrays = await inject('/echo', json(`${'['.repeat(10_000)}${']'.repeat(10_000)}`));
    expect([arrays.status, arrays.code]).toEqual([400, 'http.too_deep']);
    // Brackets inside strings are data, not depth.
    const text = await inject('/echo', json(JSON.stringify({ s: '{['.repeat(5000) })));
    expect([text.status, (text.data as any).echo.s.length]).toEqual([200, 10_000]);
    expect((await inject('/ping')).text).toBe('pong');
    await first.stop(); // app names are unique per process

    const strict = await boot(ECHO, { config: "{ plugins: ['@mega/http'], http: { maxJsonDepth: 3 } }" });
    expect((await strict.inject('/echo', json('{"a":{"b":{"c":1}}}'))).status).toBe(200);
    const four = await strict.inject('/echo', json('{"a":{"b":{"c":[1]}}}'));
    expect([four.status, four.code]).toEqual([400, 'http.too_deep']);
  });

  it('B17: a handler that string-concatenates a field gets 400 from its schema, not a 500', async () => {
    const { inject } = await boot(ECHO);
    const res = await inject('/greet', json('{"name":{"toString":null}}'));
    expect([res.status, res.code]).toEqual([400, 'validation.failed']);
    expect((await inject('/greet', json('{"name":"ann"}'))).text).toBe('hi ann');
  });

  it('B17: apps/simple /echo answers a multipart body with a plain representation (no circular JSON)', async () => {
    const app = await bootProject(fileURLToPath(new URL('../../../apps/simple', import.meta.url)));
    const boundary = 'XmegaB17';
    const body =
      `--${boundary}\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n` +
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\nContent-Type: text/plain\r\n\r\nabcdef\r\n` +
      `--${boundary}--\r\n`;
    const res = await app.inject('/echo', {
      method: 'POST',
      body,
      headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
    });
    expect(res.status).toBe(200);
    expect(res.data).toEqual({
      echo: {
        note: { type: 'field', fieldname: 'note', value: 'hello', mimetype: 'text/plain', encoding: '7bit' },
        file: { type: 'file', fieldname: 'file', filename: 'a.txt', mimetype: 'text/plain', encoding: '7bit', size: 6 },
      },
    });
    const deep = await app.inject('/echo', json(`${'['.repeat(10_000)}${']'.repeat(10_000)}`));
    expect([deep.status, deep.code]).toEqual([400, 'http.too_deep']);
  });

  it('B17: Fastify-level errors (GET /% -> FST_ERR_BAD_URL, a garbage request) answer in the Mega envelope', async () => {
    const { port, inject } = await boot(ECHO);
    const bad = await rawRequest(port, 'GET /% HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(bad.status).toBe(400);
    expect(bad.json).toEqual({ error: { code: 'http.bad_url', message: expect.any(String) } });
    const garbage = await rawRequest(port, 'GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n');
    expect(garbage.status).toBe(400);
    expect(garbage.json).toEqual({ error: { code: 'http.bad_request', message: expect.any(String) } });
    expect((await inject('/ping')).text).toBe('pong');
  });

  it('B17: __proto__ in a JSON body is refused with 400 http.invalid_json', async () => {
    const { inject } = await boot(ECHO);
    const res = await inject('/echo', json('{"a":1,"__proto__":{"admin":true}}'));
    expect([res.status, res.code]).toEqual([400, 'http.invalid_json']);
    const ctor = await inject('/echo', json('{"constructor":{"prototype":{"admin":true}}}'));
    expect([ctor.status, ctor.code]).toEqual([400, 'http.invalid_json']);
  });
});

describe('B18: vhost routing follows RFC 9112', () => {
  const VHOST = {
    'apps/admin/app.config.ts': `export default { hosts: ['admin.localhost'] };`,
    'apps/admin/routes/r.ts': `export default (r: any) => { r.http.get('/x', async (_q: any, _p: any, ctx: any) => ({ app: ctx.app.name, host: _q.headers.host, url: _q.url })); };`,
    'apps/web/app.config.ts': `export default { hosts: ['web.localhost'] };`,
    'apps/web/routes/r.ts': `export default (r: any) => { r.http.get('/x', async (_q: any, _p: any, ctx: any) => ({ app: ctx.app.name, host: _q.headers.host, url: _q.url })); };`,
  };

  it("B18: an absolute-form target is routed by the target's authority, not the Host header", async () => {
    const { port } = await boot(VHOST);
    const res = await rawRequest(port, 'GET http://admin.localhost/x?q=1 HTTP/1.1\r\nHost: web.localhost\r\nConnection: close\r\n\r\n');
    expect([res.status, res.json]).toEqual([200, { data: { app: 'admin', host: 'admin.localhost', url: '/x?q=1' } }]);
    const plain = await rawRequest(port, 'GET /x HTTP/1.1\r\nHost: web.localhost\r\nConnection: close\r\n\r\n');
    expect(plain.json).toEqual({ data: { app: 'web', host: 'web.localhost', url: '/x' } });
    const withPort = await rawRequest(
      port,
      'GET https://ADMIN.localhost:8443/x HTTP/1.1\r\nHost: web.localhost\r\nConnection: close\r\n\r\n',
    );
    expect((withPort.json as any).data.app).toBe('admin');
    const bogus = await rawRequest(port, 'GET ftp://admin.localhost/x HTTP/1.1\r\nHost: web.localhost\r\nConnection: close\r\n\r\n');
    expect(bogus.status).toBe(400);
    expect((bogus.json as any).error.code).toBe('http.bad_url');
  });

  it('B18: two Host headers are refused with 400 http.duplicate_host in the envelope', async () => {
    const { port } = await boot(VHOST);
    const res = await rawRequest(port, 'GET /x HTTP/1.1\r\nHost: web.localhost\r\nHost: admin.localhost\r\nConnection: close\r\n\r\n');
    expect(res.status).toBe(400);
    expect(res.json).toEqual({ error: { code: 'http.duplicate_host', message: expect.any(String) } });
    const same = await rawRequest(port, 'GET /x HTTP/1.1\r\nHost: web.localhost\r\nhost: web.localhost\r\nConnection: close\r\n\r\n');
    expect(same.status).toBe(400);
  });
});

describe('B19: responses that carry secrets are not stored by caches', () => {
  it('B19: route option noStore and the noStore(reply) helper send Cache-Control: no-store', async () => {
    const { port } = await boot({
      ...APP,
      'apps/web/routes/r.ts': `import { noStore } from '@mega/http';
export default (r: any) => {
  r.http.get('/key', async () => ({ key: 'k' }), { noStore: true });
  r.http.get('/key-fails', async () => { throw new Error('x'); }, { noStore: true });
  r.http.get('/helper', async (_q: any, reply: any) => { noStore(reply); return { key: 'k' }; });
  r.http.get('/public', async () => ({ hello: 1 }));
};`,
    });
    expect((await inject(port, '/key')).headers['cache-control']).toBe('no-store');
    expect((await inject(port, '/key-fails')).headers['cache-control']).toBe('no-store');
    expect((await inject(port, '/helper')).headers['cache-control']).toBe('no-store');
    expect((await inject(port, '/public')).headers['cache-control']).toBeUndefined();
  });
});

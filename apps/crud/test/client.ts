/** A cookie-keeping client of the crud app's JSON API and its encrypted chat, for the tests. */
import { type InjectInit, type InjectResponse, inject } from '@mega/testing';
import WebSocket from 'ws';
import { AspClient } from '../../../plugins/asp/src/client.js';

export interface Api {
  cookie: string;
  call(method: string, path: string, json?: unknown, headers?: Record<string, string>): Promise<InjectResponse>;
}

/** A client whose session cookie follows Set-Cookie answers. */
export function client(port: number): Api {
  const jar = new Map<string, string>();
  const api: Api = {
    get cookie() {
      return [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
    },
    async call(method, path, json, headers = {}) {
      const init: InjectInit = { method, headers: { ...headers, ...(jar.size ? { cookie: api.cookie } : {}) } };
      if (json !== undefined) init.json = json;
      const res = await inject(port, path, init);
      for (const c of ([] as string[]).concat(res.headers['set-cookie'] ?? [])) {
        const [pair] = c.split(';');
        const at = (pair as string).indexOf('=');
        const name = (pair as string).slice(0, at);
        const value = (pair as string).slice(at + 1);
        if (/expires=Thu, 01 Jan 1970/i.test(c) || value === '') jar.delete(name);
        else jar.set(name, value);
      }
      return res;
    },
  };
  return api;
}

export interface Chat {
  ws: WebSocket;
  /** The next message of `type` (earlier ones of other types stay queued); rejects after `timeoutMs`. */
  next(type: string, timeoutMs?: number): Promise<Record<string, any>>;
  send(m: unknown): Promise<void>;
  closed: Promise<{ code: number; reason: string }>;
}

/** Opens /ws/chat with the session's cookie and ASP key; every frame both ways is sealed. */
export async function openChat(port: number, cookie: string, key: string): Promise<Chat> {
  const asp = await AspClient.create(key);
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws/chat`, ['mega.v1'], { headers: { cookie } });
  const inbox: Array<Record<string, any>> = [];
  let wake: (() => void) | undefined;
  let chain = Promise.resolve();
  ws.on('message', (data) => {
    chain = chain.then(async () => {
      const frame = data.toString();
      if (!frame.startsWith('E:')) throw new Error(`a plain frame on an encrypted namespace: ${frame.slice(0, 80)}`);
      inbox.push(JSON.parse(await asp.openFrame(frame, '/ws/chat')));
      wake?.();
    });
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })),
  );
  await new Promise((ok, fail) => {
    ws.once('open', ok);
    ws.once('unexpected-response', (_q, r) => fail(new Error(`HTTP ${r.statusCode}`)));
  });
  const next = async (type: string, timeoutMs = 10_000) => {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const i = inbox.findIndex((m) => m.type === type);
      if (i !== -1) return inbox.splice(i, 1)[0] as Record<string, any>;
      const left = end - Date.now();
      if (left <= 0)
        throw new Error(`no ${type} message within ${timeoutMs} ms (inbox: ${inbox.map((m) => m.type).join(', ') || 'empty'})`);
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, left);
      });
    }
  };
  return { ws, next, closed, send: async (m) => ws.send(await asp.sealFrame(JSON.stringify(m), '/ws/chat')) };
}

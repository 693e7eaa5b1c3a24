/**
 * A stand-in HTTP + WebSocket server plugin for the kit's own tests: the kit must work with no
 * Mega plugin but the project's own, so these tests do not load @mega/http or @mega/ws.
 */
import { createServer } from 'node:http';
import { definePlugin } from '@mega/kernel';
import { WebSocketServer } from 'ws';

export const fakeServer = definePlugin({
  name: 'fake-server',
  version: '1.0.0',
  setup(api) {
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const send = (status: number, body: unknown) => {
          res.writeHead(status, { 'content-type': 'application/json', 'x-seen-host': req.headers.host ?? '' });
          res.end(JSON.stringify(body));
        };
        if (req.url === '/ok') send(200, { data: { ok: true, method: req.method } });
        else if (req.url === '/echo')
          send(200, { data: JSON.parse(Buffer.concat(chunks).toString() || 'null'), type: req.headers['content-type'] });
        else if (req.url === '/text') {
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.end('plain');
        } else send(404, { error: { code: 'route.not_found', message: `no ${req.url}` } });
      });
    });
    const wss = new WebSocketServer({ noServer: true, handleProtocols: (offered) => [...offered][0] ?? false });
    server.on('upgrade', (req, socket, head) => {
      if (req.url === '/ws/denied') {
        socket.end(
          'HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{"error":{"code":"ws.origin_denied","message":"no"}}',
        );
        return;
      }
      wss.handleUpgrade(req, socket, head, (ws) => {
        ws.send(
          JSON.stringify({ type: 'hello', payload: { origin: req.headers.origin ?? null, auth: req.headers.authorization ?? null } }),
        );
        ws.on('message', (data, isBinary) => {
          if (isBinary) return ws.send(data, { binary: true });
          const m = JSON.parse(data.toString()) as { type: string; id?: string; payload?: unknown };
          if (m.type === 'bye') return ws.close(4001, 'bye now');
          if (m.type === 'big') return ws.send(JSON.stringify({ type: 'big', payload: 'x'.repeat(70_000) }));
          if (m.type === 'split') {
            ws.send('{"type":"sp', { fin: false });
            return ws.send('lit"}', { fin: true });
          }
          if (m.type === 'raw') return ws.send('not json');
          ws.send(JSON.stringify({ type: `${m.type}.reply`, ...(m.id ? { id: m.id } : {}), payload: m.payload }));
        });
      });
    });
    api.tap('boot', async (kernel) => {
      await new Promise<void>((resolve) => server.listen(kernel.server.port, kernel.server.host, resolve));
      const port = (server.address() as { port: number }).port;
      api.provide('http', { port });
      api.log.info({ port }, 'fake server listening');
    });
    api.onShutdown(async () => {
      for (const c of wss.clients) c.terminate();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      api.log.info('fake server closed');
    });
  },
});

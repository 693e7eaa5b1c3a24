/**
 * The Node servers `npm run bench:realtime` compares Mega with, each run in its own process:
 *
 *   node servers.ts ws <port>                 a minimal fan-out server on the `ws` package
 *   node servers.ts sio <port> [redis-url]    Socket.IO 4.8 (websocket transport only), with the
 *                                             Redis adapter when a URL is given (2-node rows)
 *
 * Both speak the same little protocol through their own framing: a subscriber names its channel in
 * the query (`?ch=room`) and is told `joined` once it is in; a publisher sends `{ ch, data }` and the
 * server sends `data` to every subscriber of `ch`, serialised once, compression off.
 */
import { createServer } from 'node:http';

const [kind, portArg, redisUrl] = process.argv.slice(2);
const port = Number(portArg);

function ready(): void {
  process.stdout.write(`listening ${port}\n`);
}

async function wsServer(): Promise<void> {
  const { WebSocketServer } = await import('ws');
  type Ws = InstanceType<typeof import('ws').WebSocket>;
  const rooms = new Map<string, Set<Ws>>();
  const wss = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: false }, ready);
  wss.on('connection', (ws, req) => {
    const ch = new URL(req.url ?? '/', 'http://x').searchParams.get('ch');
    if (ch) {
      const members = rooms.get(ch) ?? new Set<Ws>();
      rooms.set(ch, members);
      members.add(ws);
      ws.on('close', () => members.delete(ws));
      ws.send('{"type":"joined"}');
    }
    ws.on('message', (raw) => {
      const m = JSON.parse(String(raw)) as { ch: string; data: unknown };
      const room = rooms.get(m.ch);
      if (!room) return;
      // The loop as usually written: serialise once, send the string to each.
      const text = JSON.stringify({ ch: m.ch, data: m.data });
      for (const c of room) c.send(text);
    });
  });
}

async function sioServer(): Promise<void> {
  const { Server } = await import('socket.io');
  const http = createServer();
  const io = new Server(http, { transports: ['websocket'], perMessageDeflate: false, httpCompression: false, serveClient: false });
  if (redisUrl) {
    const { createAdapter } = await import('@socket.io/redis-adapter');
    const { Redis } = await import('ioredis');
    const pub = new Redis(redisUrl);
    const sub = pub.duplicate();
    io.adapter(createAdapter(pub, sub, { key: `bench-rt-${process.env.BENCH_RT_KEY ?? 'x'}` }));
  }
  io.on('connection', (socket) => {
    const ch = socket.handshake.query.ch;
    if (typeof ch === 'string') {
      socket.join(ch);
      socket.emit('joined');
    }
    socket.on('pub', (m: { ch: string; data: unknown }) => {
      io.to(m.ch).emit('m', m.data);
    });
  });
  http.listen(port, '127.0.0.1', ready);
}

process.on('SIGTERM', () => process.exit(0));
if (kind === 'ws') await wsServer();
else if (kind === 'sio') await sioServer();
else {
  console.error(`unknown server kind ${kind}`);
  process.exit(2);
}

/**
 * /ws/chat: an encrypted namespace (ASP seals and opens every frame; this channel sees plain
 * envelopes). One instance per connection. Who is online comes from ctx.presence; the last 30
 * messages of the last day from the history (Redis when configured, memory otherwise).
 */
import { randomUUID } from 'node:crypto';
import type { MegaContext } from '@mega/kernel';
import type { WsConnection, WsMessage } from '@mega/ws';
import { historyOf } from '../lib/history.js';

const CHANNEL = 'chat';

export interface ChatAuth {
  userId: string;
  userName: string;
  sessionId: string;
}

/** One name per user, even with several tabs open, sorted. */
function members(ctx: MegaContext): string[] {
  const names = new Set<string>();
  for (const m of ctx.presence.list(CHANNEL)) names.add(String(m.metadata?.userName ?? m.userId));
  return [...names].sort();
}

export class ChatChannel {
  async onConnect(sock: WsConnection, ctx: MegaContext): Promise<void> {
    const { userId, userName, sessionId } = ctx.auth as ChatAuth;
    // The presence id is opaque (made from the HTTP session, which it never reveals); logging out
    // closes this socket with 1008.
    const presenceId = ctx.presence.join({ userId, httpSessionId: sessionId, channels: [CHANNEL], metadata: { userName } });
    let items: Awaited<ReturnType<ReturnType<typeof historyOf>['recent']>> = [];
    try {
      items = await historyOf(ctx.app).recent();
    } catch (error) {
      // No replay is better than no chat: the room still works while the history store is down.
      ctx.log.warn({ err: { message: (error as Error).message } }, 'chat history unavailable; connecting without replay');
    }
    const online = members(ctx);
    sock.send({ type: 'chat.history', payload: { me: { userId, userName }, items, online: online.length, members: online } });
    ctx.presence.broadcast({
      channel: CHANNEL,
      message: { type: 'chat.presence', payload: { event: 'join', userName, online: online.length, members: online } },
      exceptSessionIds: [presenceId],
    });
  }

  async 'chat.send'(sock: WsConnection, msg: WsMessage<{ text: string }>, ctx: MegaContext): Promise<void> {
    const text = String(msg.payload?.text ?? '').trim();
    if (!text) return;
    const { userId, userName } = ctx.auth as ChatAuth;
    const entry = { id: randomUUID(), userId, userName, text, ts: Date.now() };
    try {
      await historyOf(ctx.app).add(entry);
    } catch (error) {
      // The message still reaches everyone online; only its replay is lost.
      ctx.log.warn({ err: { message: (error as Error).message } }, 'chat history append failed');
    }
    // The sender gets its own message back through the broadcast: one rendering path, no duplicates.
    ctx.presence.broadcast({ channel: CHANNEL, message: { type: 'chat.msg', payload: entry } });
    if (msg.id) sock.send({ type: 'chat.sent', id: msg.id, payload: { id: entry.id } });
  }

  onDisconnect(_sock: WsConnection, ctx: MegaContext): void {
    const { userName } = ctx.auth as ChatAuth;
    // The leaving connection is already off the roster: `members` is the list after it left.
    const online = members(ctx);
    ctx.presence.broadcast({
      channel: CHANNEL,
      message: { type: 'chat.presence', payload: { event: 'leave', userName, online: online.length, members: online } },
    });
  }
}

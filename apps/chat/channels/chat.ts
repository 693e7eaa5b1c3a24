/**
 * /ws/chat: an encrypted namespace (ASP seals and opens every frame; this channel sees plain
 * envelopes). One instance per connection. Presence comes from ctx.presence; history from the store.
 */
import type { MegaContext } from '@mega/kernel';
import type { WsConnection, WsMessage } from '@mega/ws';
import { HISTORY, storeOf } from '../lib/store.js';

const CHANNEL = 'chat';

interface ChatAuth {
  userId: string;
  userName: string;
  sessionId: string;
}

/** Who is online: one name per user, even with several tabs open. */
function members(ctx: MegaContext): string[] {
  const names = new Set<string>();
  for (const m of ctx.presence.list(CHANNEL)) names.add(String(m.metadata?.userName ?? m.userId));
  return [...names].sort();
}

export class ChatChannel {
  async onConnect(sock: WsConnection, ctx: MegaContext): Promise<void> {
    const { userId, userName, sessionId } = ctx.auth as ChatAuth;
    // One presence entry per connection (two tabs of one login are two entries). Its id is opaque,
    // made by presence from the HTTP session, which it never reveals: rosters travel to other
    // instances and hub bridges. Logging out (ctx.session.destroy()) closes this socket with 1008.
    const presenceId = ctx.presence.join({ userId, httpSessionId: sessionId, channels: [CHANNEL], metadata: { userName } });
    const items = await storeOf(ctx.app).lastMessages(HISTORY);
    const online = members(ctx);
    sock.send({ type: 'chat.history', payload: { me: { userId, userName }, items, members: online } });
    ctx.presence.broadcast({
      channel: CHANNEL,
      message: { type: 'chat.presence', payload: { event: 'join', userName, members: online } },
      exceptSessionIds: [presenceId],
    });
  }

  async 'chat.send'(sock: WsConnection, msg: WsMessage<{ text: string }>, ctx: MegaContext): Promise<void> {
    const text = String(msg.payload?.text ?? '').trim();
    if (!text) return;
    const { userId, userName } = ctx.auth as ChatAuth;
    const entry = await storeOf(ctx.app).addMessage({ userId, userName, text, ts: Date.now() });
    ctx.presence.broadcast({ channel: CHANNEL, message: { type: 'chat.message', payload: entry } });
    if (msg.id) sock.send({ type: 'chat.sent', id: msg.id, payload: { id: entry.id } });
  }

  onDisconnect(_sock: WsConnection, ctx: MegaContext): void {
    const { userName } = ctx.auth as ChatAuth;
    // The leaving connection is already off the roster, so `members` is the list after it left.
    ctx.presence.broadcast({
      channel: CHANNEL,
      message: { type: 'chat.presence', payload: { event: 'leave', userName, members: members(ctx) } },
    });
  }
}

/**
 * Users and the chat history. Through the database plugin when the app has one (`app.db`), else in
 * memory. Tables are created on first use; only the last HISTORY messages are ever read back.
 */
import type { App } from '@mega/kernel';

export const HISTORY = 30;

export interface User {
  id: string;
  name: string;
  passwordHash: string;
}

export interface ChatMessage {
  id: string;
  userId: string;
  userName: string;
  text: string;
  ts: number;
}

export interface ChatStore {
  readonly kind: 'database' | 'memory';
  createUser(name: string, passwordHash: string): Promise<User | undefined>;
  findUser(name: string): Promise<User | undefined>;
  addMessage(m: Omit<ChatMessage, 'id'>): Promise<ChatMessage>;
  lastMessages(n?: number): Promise<ChatMessage[]>;
}

interface Queryable {
  query<R>(sql: string, params?: readonly unknown[]): Promise<{ rows: R[] }>;
  exec(sql: string): Promise<void>;
}

class DbStore implements ChatStore {
  readonly kind = 'database';
  #ready: Promise<void> | undefined;
  constructor(private readonly db: Queryable) {}
  #init(): Promise<void> {
    this.#ready ??= this.db.exec(`
      create table if not exists chat_users (
        id bigserial primary key, name text not null unique, password_hash text not null, created_at timestamptz not null default now()
      );
      create table if not exists chat_messages (
        id bigserial primary key, user_id text not null, user_name text not null, text text not null, ts bigint not null
      );`);
    return this.#ready;
  }
  async createUser(name: string, passwordHash: string): Promise<User | undefined> {
    await this.#init();
    const { rows } = await this.db.query<{ id: string }>(
      'insert into chat_users (name, password_hash) values ($1, $2) on conflict (name) do nothing returning id',
      [name, passwordHash],
    );
    return rows[0] ? { id: String(rows[0].id), name, passwordHash } : undefined;
  }
  async findUser(name: string): Promise<User | undefined> {
    await this.#init();
    const { rows } = await this.db.query<{ id: string; name: string; password_hash: string }>(
      'select id, name, password_hash from chat_users where name = $1',
      [name],
    );
    const r = rows[0];
    return r ? { id: String(r.id), name: r.name, passwordHash: r.password_hash } : undefined;
  }
  async addMessage(m: Omit<ChatMessage, 'id'>): Promise<ChatMessage> {
    await this.#init();
    const { rows } = await this.db.query<{ id: string }>(
      'insert into chat_messages (user_id, user_name, text, ts) values ($1, $2, $3, $4) returning id',
      [m.userId, m.userName, m.text, m.ts],
    );
    return { ...m, id: String(rows[0]?.id) };
  }
  async lastMessages(n = HISTORY): Promise<ChatMessage[]> {
    await this.#init();
    const { rows } = await this.db.query<{ id: string; user_id: string; user_name: string; text: string; ts: string }>(
      'select id, user_id, user_name, text, ts from chat_messages order by id desc limit $1',
      [n],
    );
    return rows.reverse().map((r) => ({ id: String(r.id), userId: r.user_id, userName: r.user_name, text: r.text, ts: Number(r.ts) }));
  }
}

class MemoryStore implements ChatStore {
  readonly kind = 'memory';
  #users = new Map<string, User>();
  #messages: ChatMessage[] = [];
  #seq = 0;
  async createUser(name: string, passwordHash: string): Promise<User | undefined> {
    if (this.#users.has(name)) return undefined;
    const user = { id: String(++this.#seq), name, passwordHash };
    this.#users.set(name, user);
    return user;
  }
  async findUser(name: string): Promise<User | undefined> {
    return this.#users.get(name);
  }
  async addMessage(m: Omit<ChatMessage, 'id'>): Promise<ChatMessage> {
    const msg = { ...m, id: String(++this.#seq) };
    this.#messages.push(msg);
    if (this.#messages.length > HISTORY) this.#messages.splice(0, this.#messages.length - HISTORY);
    return msg;
  }
  async lastMessages(n = HISTORY): Promise<ChatMessage[]> {
    return this.#messages.slice(-n);
  }
}

const stores = new WeakMap<App, ChatStore>();

/** The app's store: its database when @mega/db-postgres is loaded, else memory. */
export function storeOf(app: App): ChatStore {
  let s = stores.get(app);
  if (!s) {
    const db = (app as unknown as { db?: () => Queryable }).db;
    s = typeof db === 'function' ? new DbStore(db.call(app)) : new MemoryStore();
    stores.set(app, s);
  }
  return s;
}

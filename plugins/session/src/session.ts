/** The per-request session object behind `ctx.session`: nothing is read until a method is called. */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Logger } from '@mega/kernel';
import { parseCookie, stringifySetCookie } from 'cookie';
import type { FastifyReply } from 'fastify';
import type { SessionData, SessionStore } from './stores.js';
import { SESSION_ID } from './stores.js';

export interface CookieOptions {
  path: string;
  domain?: string;
  httpOnly: boolean;
  sameSite: 'lax' | 'strict' | 'none';
  secure: boolean;
}

export interface SessionRuntime {
  store: SessionStore;
  cookieName: string;
  secret: string;
  ttlMs: number;
  /** Re-save a session read in the second half of its lifetime, so active users stay signed in. */
  rolling: boolean;
  cookie: CookieOptions;
}

export function signId(secret: string, id: string): string {
  return `${id}.${createHmac('sha256', secret).update(id).digest('base64url')}`;
}

/** The session id of a signed cookie value, or undefined when it is malformed or its signature is wrong. */
export function unsignId(secret: string, value: string): string | undefined {
  const dot = value.lastIndexOf('.');
  if (dot <= 0) return undefined;
  const id = value.slice(0, dot);
  if (!SESSION_ID.test(id)) return undefined;
  const expected = Buffer.from(signId(secret, id));
  const given = Buffer.from(value);
  return expected.length === given.length && timingSafeEqual(expected, given) ? id : undefined;
}

export const newSessionId = (): string => randomBytes(32).toString('base64url');

export class Session {
  #id: string | undefined;
  #data: SessionData = {};
  #loaded: Promise<void> | undefined;

  constructor(
    private readonly runtime: SessionRuntime,
    private readonly cookieHeader: string | undefined,
    private readonly reply: FastifyReply | undefined,
    private readonly log: Logger,
  ) {}

  /** The current session id (after a read or write), undefined for an anonymous visitor. */
  get id(): string | undefined {
    return this.#id;
  }

  #load(): Promise<void> {
    this.#loaded ??= (async () => {
      const value = this.cookieHeader ? parseCookie(this.cookieHeader)[this.runtime.cookieName] : undefined;
      if (value === undefined) return;
      const id = unsignId(this.runtime.secret, value);
      if (id === undefined) {
        this.log.info({ reason: 'session.invalid_cookie' }, 'session: ignoring a session cookie with a bad signature');
        return;
      }
      const stored = await this.runtime.store.get(id);
      if (stored === undefined) return;
      this.#id = id;
      this.#data = stored.data;
      // Rolling without a write per request: only a read past half the lifetime extends it.
      if (this.runtime.rolling && stored.expiresAt - Date.now() < this.runtime.ttlMs / 2) await this.#save();
    })();
    return this.#loaded;
  }

  async get<T = unknown>(key: string): Promise<T | undefined> {
    await this.#load();
    return this.#data[key] as T | undefined;
  }

  async all(): Promise<Readonly<SessionData>> {
    await this.#load();
    return { ...this.#data };
  }

  /** Sets one key (or several with an object) and saves the session at once. */
  async set(key: string | SessionData, value?: unknown): Promise<void> {
    await this.#load();
    if (typeof key === 'string') {
      if (value === undefined) delete this.#data[key];
      else this.#data[key] = value;
    } else Object.assign(this.#data, key);
    await this.#save();
  }

  async delete(key: string): Promise<void> {
    await this.set(key, undefined);
  }

  /** Deletes the session from the store and clears the cookie. */
  async destroy(): Promise<void> {
    await this.#load();
    if (this.#id) await this.runtime.store.destroy(this.#id);
    this.#id = undefined;
    this.#data = {};
    this.#cookie('', 0);
  }

  /**
   * A new id for the same data (call it on login and privilege changes: it prevents session
   * fixation); `keepData: false` starts empty.
   */
  async regenerate(options: { keepData?: boolean } = {}): Promise<string> {
    await this.#load();
    const old = this.#id;
    if (options.keepData === false) this.#data = {};
    this.#id = newSessionId();
    await this.runtime.store.set(this.#id, this.#data, this.runtime.ttlMs);
    if (old) await this.runtime.store.destroy(old);
    this.#cookie(signId(this.runtime.secret, this.#id), this.runtime.ttlMs);
    return this.#id;
  }

  async #save(): Promise<void> {
    this.#id ??= newSessionId();
    await this.runtime.store.set(this.#id, this.#data, this.runtime.ttlMs);
    // Re-sent on every write: the cookie's expiry rolls with the store's.
    this.#cookie(signId(this.runtime.secret, this.#id), this.runtime.ttlMs);
  }

  #cookie(value: string, ttlMs: number): void {
    if (!this.reply || this.reply.sent) return;
    const { cookie } = this.runtime;
    this.reply.header(
      'set-cookie',
      stringifySetCookie({
        name: this.runtime.cookieName,
        value,
        path: cookie.path,
        httpOnly: cookie.httpOnly,
        sameSite: cookie.sameSite,
        secure: cookie.secure,
        maxAge: Math.floor(ttlMs / 1000),
        ...(cookie.domain ? { domain: cookie.domain } : {}),
      }),
    );
  }
}

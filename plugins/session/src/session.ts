/** The per-request session object behind `ctx.session`: nothing is read until a method is called. */
import { createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
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
  /** The cookie-signing key derived from the app's secret (`sessionCookieKey`), never the secret itself. */
  key: Buffer;
  ttlMs: number;
  /** Re-save a session read in the second half of its lifetime, so active users stay signed in. */
  rolling: boolean;
  cookie: CookieOptions;
  /** Called once a session is destroyed (`sessions.onDestroy` listeners: presence closes its sockets). */
  ended(id: string): Promise<void>;
}

/**
 * The label of the cookie-signing key. Every keyed use of a secret derives its own key with HKDF and
 * a label of its own (CSRF, ASP, ...), so one secret shared by several plugins (MEGA_SECRET) never
 * signs two kinds of values with the same key (issue 11, B9: a CSRF token was a valid session cookie).
 */
export const SESSION_COOKIE_LABEL = 'mega.session.cookie.v1';

/** HKDF-SHA256(secret, salt "mega", info SESSION_COOKIE_LABEL), 32 bytes: the key of `signId`. */
export function sessionCookieKey(secret: string): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, 'mega', SESSION_COOKIE_LABEL, 32));
}

const keyOf = (secret: string | Buffer): Buffer => (typeof secret === 'string' ? sessionCookieKey(secret) : secret);

/** `<id>.<HMAC-SHA256(key, id)>`; a string is the app's secret (its cookie key is derived), a Buffer the derived key. */
export function signId(secret: string | Buffer, id: string): string {
  return `${id}.${createHmac('sha256', keyOf(secret)).update(id).digest('base64url')}`;
}

/** The session id of a signed cookie value, or undefined when it is malformed or its signature is wrong. */
export function unsignId(secret: string | Buffer, value: string): string | undefined {
  const dot = value.lastIndexOf('.');
  if (dot <= 0) return undefined;
  const id = value.slice(0, dot);
  if (!SESSION_ID.test(id)) return undefined;
  const expected = Buffer.from(signId(keyOf(secret), id));
  const given = Buffer.from(value);
  return expected.length === given.length && timingSafeEqual(expected, given) ? id : undefined;
}

export const newSessionId = (): string => randomBytes(32).toString('base64url');

/** What `ctx.session` offers (an interface, so copies of this package's types merge into one `MegaContext`). */
export interface SessionApi {
  readonly id: string | undefined;
  presentedId(): string | undefined;
  get<T = unknown>(key: string): Promise<T | undefined>;
  all(): Promise<Readonly<SessionData>>;
  set(key: string | SessionData, value?: unknown): Promise<void>;
  delete(key: string): Promise<void>;
  destroy(): Promise<void>;
  regenerate(options?: { keepData?: boolean }): Promise<string>;
}

export class Session implements SessionApi {
  #id: string | undefined;
  #data: SessionData = {};
  #loaded: Promise<void> | undefined;
  /** The id the visitor's next request presents: null until known (cookie not parsed yet). */
  #presented: string | undefined | null = null;

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

  /**
   * The session id the visitor's next request will present, without reading the store: the id of
   * the request's cookie when its signature holds (and this request did not replace or clear it),
   * the new id after a write or `regenerate()`, undefined after `destroy()` or without a cookie.
   * CSRF tokens bind to it (@mega/security).
   */
  presentedId(): string | undefined {
    if (this.#presented === null) this.#presented = this.#cookieId();
    return this.#presented;
  }

  #cookieId(): string | undefined {
    const value = this.cookieHeader ? parseCookie(this.cookieHeader)[this.runtime.cookieName] : undefined;
    return value === undefined ? undefined : unsignId(this.runtime.key, value);
  }

  #load(): Promise<void> {
    this.#loaded ??= (async () => {
      const value = this.cookieHeader ? parseCookie(this.cookieHeader)[this.runtime.cookieName] : undefined;
      if (value === undefined) return;
      const id = unsignId(this.runtime.key, value);
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

  /**
   * Deletes the session from the store, clears the cookie, and ends what the session opened: with
   * @mega/ws-presence, every WebSocket joined under this session closes with 1008 on every instance.
   */
  async destroy(): Promise<void> {
    await this.#load();
    const id = this.#id;
    if (id) await this.runtime.store.destroy(id);
    this.#id = undefined;
    this.#data = {};
    this.#presented = undefined;
    this.#cookie('', 0);
    if (id) await this.runtime.ended(id);
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
    this.#presented = this.#id;
    this.#cookie(signId(this.runtime.key, this.#id), this.runtime.ttlMs);
    return this.#id;
  }

  async #save(): Promise<void> {
    this.#id ??= newSessionId();
    await this.runtime.store.set(this.#id, this.#data, this.runtime.ttlMs);
    // Re-sent on every write: the cookie's expiry rolls with the store's.
    this.#presented = this.#id;
    this.#cookie(signId(this.runtime.key, this.#id), this.runtime.ttlMs);
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

/**
 * Per-session ASP state: the derived key, a sealer and an opener (its replay cache) per scope.
 * One opener per session — not per connection — so a frame replayed on a second connection of the
 * same session is caught too. Entries live in an LRU bounded by `maxSessions`, refreshed on every
 * use; a session with live connections is pinned (`acquire` / `release`) and never evicted, however
 * many other sessions pass through, so its replay cache lives as long as its sockets do. An
 * unpinned entry goes after it went unused for the drift window (a replay older than the window
 * fails the drift check anyway), or earlier when the LRU is over `maxSessions`.
 */
import type { AspOpener, AspScope, AspSealer, Codec } from '@mega/kernel';

export interface SessionCrypto {
  readonly key: Buffer;
  readonly sealer: AspSealer;
  readonly opener: AspOpener;
}

interface Entry {
  state: SessionCrypto;
  /** Last use (ms), or when the last connection closed. */
  used: number;
  /** Live connections holding the entry. */
  live: number;
}

export class SessionKeys {
  /** Entries without live connections, least recently used first. */
  readonly #lru = new Map<string, Entry>();
  /** Entries pinned by live connections: outside the LRU, so eviction never scans them. */
  readonly #pinned = new Map<string, Entry>();

  constructor(
    private readonly codec: Codec,
    private readonly master: Buffer,
    readonly scope: AspScope,
    private readonly opts: { windowMs: number; replayCapacity: number; maxSessions: number },
  ) {}

  /** The key handed to a client for this session (derivation only, no state kept). */
  keyFor(sessionId: string): Buffer {
    return this.codec.deriveKey(this.master, sessionId, this.scope);
  }

  /** The session's state, refreshed as most recently used (HTTP requests: one call per request). */
  get(sessionId: string): SessionCrypto {
    return this.#entry(sessionId).state;
  }

  /**
   * The session's state, pinned until the matching `release`: a connection holds its session's
   * entry (and replay cache) for as long as it is open. Pins count, so several connections of one
   * session share one entry.
   */
  acquire(sessionId: string): SessionCrypto {
    const entry = this.#entry(sessionId);
    if (entry.live++ === 0) {
      this.#lru.delete(sessionId);
      this.#pinned.set(sessionId, entry);
    }
    return entry.state;
  }

  /** Ends one pin; the entry then ages from now like any other (still kept for the drift window). */
  release(sessionId: string): void {
    const entry = this.#pinned.get(sessionId);
    if (!entry) return;
    if (--entry.live > 0) return;
    const now = Date.now();
    entry.used = now;
    this.#pinned.delete(sessionId);
    this.#lru.set(sessionId, entry);
    this.#evict(now);
  }

  /** Sessions pinned by live connections. */
  get pinned(): number {
    return this.#pinned.size;
  }

  #entry(sessionId: string): Entry {
    const pinned = this.#pinned.get(sessionId);
    if (pinned) return pinned;
    const now = Date.now();
    const hit = this.#lru.get(sessionId);
    if (hit) {
      hit.used = now;
      this.#lru.delete(sessionId);
      this.#lru.set(sessionId, hit);
      return hit;
    }
    const key = this.keyFor(sessionId);
    const state: SessionCrypto = {
      key,
      sealer: this.codec.createSealer(key, { role: 'server' }),
      opener: this.codec.createOpener(key, { role: 'server', windowMs: this.opts.windowMs, replayCapacity: this.opts.replayCapacity }),
    };
    const entry: Entry = { state, used: now, live: 0 };
    this.#lru.set(sessionId, entry);
    this.#evict(now);
    return entry;
  }

  /** Sessions kept, pinned ones included. */
  get size(): number {
    return this.#lru.size + this.#pinned.size;
  }

  /**
   * Oldest first: drops unpinned entries idle past the window, then more while over `maxSessions`.
   * Pinned entries are never dropped and not counted against `maxSessions`: their memory is bounded
   * by the connections that hold them.
   */
  #evict(now: number): void {
    for (const [id, e] of this.#lru) {
      if (this.#lru.size <= this.opts.maxSessions && e.used + this.opts.windowMs >= now) break;
      this.#lru.delete(id);
    }
  }
}

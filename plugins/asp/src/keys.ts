/**
 * Per-session ASP state: the derived key, a sealer and an opener (its replay cache) per scope.
 * One opener per session — not per connection — so a frame replayed on a second connection of the
 * same session is caught too. Entries live in an LRU bounded by `maxSessions`; an entry is dropped
 * only after it went unused for the drift window, since a replay older than the window fails the
 * drift check anyway.
 */
import type { AspOpener, AspScope, AspSealer, Codec } from '@mega/kernel';

export interface SessionCrypto {
  readonly key: Buffer;
  readonly sealer: AspSealer;
  readonly opener: AspOpener;
}

export class SessionKeys {
  readonly #lru = new Map<string, { state: SessionCrypto; used: number }>();

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

  get(sessionId: string): SessionCrypto {
    const now = Date.now();
    const hit = this.#lru.get(sessionId);
    if (hit) {
      hit.used = now;
      this.#lru.delete(sessionId);
      this.#lru.set(sessionId, hit);
      return hit.state;
    }
    const key = this.keyFor(sessionId);
    const state: SessionCrypto = {
      key,
      sealer: this.codec.createSealer(key, { role: 'server' }),
      opener: this.codec.createOpener(key, { role: 'server', windowMs: this.opts.windowMs, replayCapacity: this.opts.replayCapacity }),
    };
    this.#lru.set(sessionId, { state, used: now });
    this.#evict(now);
    return state;
  }

  get size(): number {
    return this.#lru.size;
  }

  #evict(now: number): void {
    for (const [id, e] of this.#lru) {
      if (this.#lru.size <= this.opts.maxSessions && e.used + this.opts.windowMs >= now) break;
      this.#lru.delete(id);
    }
  }
}

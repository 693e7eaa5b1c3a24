/**
 * The cluster-wide roster of one app as seen by one instance: the other instances' members, each
 * with its own expiry (refreshed by every join/heartbeat that carries it). Reads filter expired
 * members lazily, so a crashed instance's members are gone exactly `ttlMs` after its last
 * heartbeat; `sweep()` only frees memory.
 */
import type { PresenceEntry } from '@mega/ws-presence';
import type { WireMember } from './frames.js';

interface Remote extends WireMember {
  origin: string;
  expires: number;
}

export class RemoteRoster {
  readonly #bySession = new Map<string, Remote>();
  readonly #ttlMs: number;
  readonly #now: () => number;

  constructor(ttlMs: number, now: () => number = Date.now) {
    this.#ttlMs = ttlMs;
    this.#now = now;
  }

  get size(): number {
    return this.#bySession.size;
  }

  upsert(origin: string, m: WireMember): void {
    this.#bySession.set(m.sessionId, { ...m, origin, expires: this.#now() + this.#ttlMs });
  }

  /** A leave counts only from the instance that holds the session (it may have moved since). */
  remove(origin: string, sessionId: string): void {
    if (this.#bySession.get(sessionId)?.origin === origin) this.#bySession.delete(sessionId);
  }

  setMetadata(origin: string, sessionId: string, metadata: Record<string, unknown>): void {
    const r = this.#bySession.get(sessionId);
    if (r && r.origin === origin) r.metadata = metadata;
  }

  /** A heartbeat is the sender's full list: members it no longer lists are dropped. */
  heartbeat(origin: string, members: readonly WireMember[], complete: boolean): void {
    const seen = new Set<string>();
    for (const m of members) {
      this.upsert(origin, m);
      seen.add(m.sessionId);
    }
    if (!complete) return;
    for (const [id, r] of this.#bySession) if (r.origin === origin && !seen.has(id)) this.#bySession.delete(id);
  }

  dropOrigin(origin: string): void {
    for (const [id, r] of this.#bySession) if (r.origin === origin) this.#bySession.delete(id);
  }

  /** Live members of `ns` (optionally one channel), minus `except` (sessions held locally). */
  list(ns: string, channel: string | undefined, except: ReadonlySet<string>): PresenceEntry[] {
    const now = this.#now();
    const out: PresenceEntry[] = [];
    for (const r of this.#bySession.values()) {
      if (r.ns !== ns || r.expires <= now || except.has(r.sessionId)) continue;
      if (channel !== undefined && !r.channels.includes(channel)) continue;
      out.push({ sessionId: r.sessionId, userId: r.userId, channels: [...r.channels], ...(r.metadata ? { metadata: r.metadata } : {}) });
    }
    return out;
  }

  sweep(): number {
    const now = this.#now();
    let n = 0;
    for (const [id, r] of this.#bySession) {
      if (r.expires <= now) {
        this.#bySession.delete(id);
        n++;
      }
    }
    return n;
  }
}

/**
 * The record of the last tick run per schedule: what makes "exactly one run per tick" hold when a
 * lagging process takes the lock after the winner already released it, and what `catchUp` reads
 * after downtime. `claim` is a compare-and-set: it succeeds for exactly one caller per tick.
 *
 * - redis (the lock's driver is redis): one hash per schedule beside the lock keys, claimed by a
 *   Lua script, so it is shared by every process and survives restarts.
 * - memory: a Map in this process (lock drivers memory and cluster): one process only, forgotten on
 *   restart (so `catchUp` has nothing to catch up from).
 */
/** The part of an ioredis client this store uses (the lock's own client: `ctx.lock.native`). */
export interface RedisLike {
  defineCommand(name: string, definition: { numberOfKeys: number; lua: string }): void;
  hgetall(key: string): Promise<Record<string, string>>;
}

export interface TickRecord {
  tick: number;
  token: number;
  at: number;
  by: string;
}

export interface TickStore {
  readonly kind: 'redis' | 'memory';
  /** Records `tick` as run when it is later than the recorded one; true for the one caller that moved it. */
  claim(schedule: string, tick: number, token: number): Promise<boolean>;
  last(schedule: string): Promise<TickRecord | undefined>;
}

export class MemoryTickStore implements TickStore {
  readonly kind = 'memory';
  readonly #ticks = new Map<string, TickRecord>();
  constructor(readonly by = `pid:${process.pid}`) {}

  async claim(schedule: string, tick: number, token: number): Promise<boolean> {
    const cur = this.#ticks.get(schedule);
    if (cur && cur.tick >= tick) return false;
    this.#ticks.set(schedule, { tick, token, at: Date.now(), by: this.by });
    return true;
  }

  async last(schedule: string): Promise<TickRecord | undefined> {
    return this.#ticks.get(schedule);
  }
}

/** KEYS[1] the schedule's hash; ARGV tick, token, at, by. 1 when this caller claimed the tick. */
export const CLAIM_LUA = `
local cur = tonumber(redis.call('HGET', KEYS[1], 'tick') or '-1')
if cur >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'tick', ARGV[1], 'token', ARGV[2], 'at', ARGV[3], 'by', ARGV[4])
return 1`;

type ClaimClient = RedisLike & { megaSchedulerClaim(key: string, tick: string, token: string, at: string, by: string): Promise<number> };

export class RedisTickStore implements TickStore {
  readonly kind = 'redis';
  readonly #client: ClaimClient;

  /** `prefix`: e.g. `mega:scheduler:<app>:` (the client's own keyPrefix, if any, comes first). */
  constructor(
    client: RedisLike,
    readonly prefix: string,
    readonly by = `pid:${process.pid}`,
  ) {
    const c = client as ClaimClient;
    if (typeof c.megaSchedulerClaim !== 'function') c.defineCommand('megaSchedulerClaim', { numberOfKeys: 1, lua: CLAIM_LUA });
    this.#client = c;
  }

  async claim(schedule: string, tick: number, token: number): Promise<boolean> {
    return (await this.#client.megaSchedulerClaim(this.prefix + schedule, String(tick), String(token), String(Date.now()), this.by)) === 1;
  }

  async last(schedule: string): Promise<TickRecord | undefined> {
    const h = await this.#client.hgetall(this.prefix + schedule);
    if (h.tick === undefined) return undefined;
    return { tick: Number(h.tick), token: Number(h.token ?? 0), at: Number(h.at ?? 0), by: h.by ?? '' };
  }
}

/**
 * Core NATS (`@nats-io/transport-node` v3), one connection per `services.buses` alias. The client
 * reconnects forever and re-subscribes on its own; messages published while disconnected wait in
 * its buffer (up to its limit) and are otherwise lost: at-most-once.
 */
import type { Logger } from '@mega/kernel';
import { MegaError, redactUrl, UnavailableError } from '@mega/kernel';
import type { Msg, NatsConnection, NodeConnectionOptions } from '@nats-io/transport-node';
import { connect, NoRespondersError, RequestError, TimeoutError } from '@nats-io/transport-node';
import { hasWildcard } from '../subjects.js';
import type { Deliver, Transport } from '../transport.js';
import { noResponders, timeoutError } from './memory.js';

export interface NatsDeclaration {
  driver: 'nats';
  /** `nats://host:port`, several separated by commas. */
  url: string;
  optional?: boolean;
  /** Boot connect timeout. Default 5000. */
  connectTimeoutMs?: number;
  /** Extra connection options, passed through. */
  options?: Partial<NodeConnectionOptions>;
}

export class NatsTransport implements Transport {
  readonly driver = 'nats' as const;
  readonly alias: string;
  readonly url: string;
  readonly #decl: NatsDeclaration;
  readonly #log: Logger;
  #nc: NatsConnection | undefined;
  #pending: Promise<NatsConnection> | undefined;
  #early: Array<(nc: NatsConnection) => void> = [];

  constructor(alias: string, decl: NatsDeclaration, log: Logger) {
    this.alias = alias;
    this.#decl = decl;
    this.url = redactUrl(decl.url) as string;
    this.#log = log;
  }

  get native(): NatsConnection {
    return this.#conn();
  }

  /** `background`: keep trying until the server answers (optional aliases); operations fail meanwhile. */
  connect(background = false): Promise<void> {
    if (this.#nc) return Promise.resolve();
    this.#pending ??= connect({
      waitOnFirstConnect: background,
      servers: this.#decl.url.split(',').map((s) => s.trim()),
      name: `mega:${this.alias}`,
      timeout: this.#decl.connectTimeoutMs ?? 5000,
      reconnect: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      ...this.#decl.options,
    }).then((nc) => {
      this.#nc = nc;
      this.#watch(nc);
      for (const attach of this.#early.splice(0)) attach(nc);
      return nc;
    });
    return this.#pending.then(
      () => undefined,
      (error: unknown) => {
        this.#pending = undefined;
        throw new UnavailableError('bus.unavailable', `bus "${this.alias}" cannot connect to ${this.url}: ${(error as Error).message}`, {
          details: { alias: this.alias, url: this.url, driver: 'nats' },
          cause: error,
        });
      },
    );
  }

  publish(subject: string, data: string): void {
    this.#conn().publish(subject, data);
  }

  /** Before the connection is up (route files load before the bus boots) the subscription waits for it. */
  subscribe(subject: string, deliver: Deliver): () => void {
    if (this.#nc) return this.#subscribe(this.#nc, subject, deliver);
    let off: (() => void) | undefined;
    let cancelled = false;
    this.#early.push((nc) => {
      if (!cancelled) off = this.#subscribe(nc, subject, deliver);
    });
    return () => {
      cancelled = true;
      off?.();
    };
  }

  #subscribe(nc: NatsConnection, subject: string, deliver: Deliver): () => void {
    // Msg.subject and Msg.reply decode bytes on every read: an exact subscription knows its subject,
    // and whether a reply is wanted is read from the parsed header when the client exposes it.
    const exact = !hasWildcard(subject);
    const sub = nc.subscribe(subject, {
      callback: (error, msg) => {
        if (error) {
          this.#log.error({ err: error, subject }, `bus "${this.alias}": subscription "${subject}" failed`);
          return;
        }
        deliver(msg.string(), exact ? subject : msg.subject, wantsReply(msg) ? (reply) => msg.respond(reply) : undefined);
      },
    });
    return () => sub.unsubscribe();
  }

  async request(subject: string, data: string, timeoutMs: number): Promise<string> {
    try {
      const reply = await this.#conn().request(subject, data, { timeout: timeoutMs });
      return reply.string();
    } catch (error) {
      if (error instanceof TimeoutError) throw timeoutError(subject, timeoutMs);
      if (error instanceof NoRespondersError || (error instanceof RequestError && error.isNoResponders())) throw noResponders(subject);
      if (error instanceof MegaError) throw error;
      throw new UnavailableError('bus.unavailable', `bus "${this.alias}" request "${subject}" failed: ${(error as Error).message}`, {
        details: { alias: this.alias, subject },
        cause: error,
      });
    }
  }

  /** Readiness: a server round trip. */
  async check(): Promise<void> {
    try {
      await this.#conn().flush();
    } catch (error) {
      throw new UnavailableError('bus.unavailable', `bus "${this.alias}" (${this.url}) is unavailable: ${(error as Error).message}`, {
        details: { alias: this.alias, url: this.url },
        cause: error,
      });
    }
  }

  async close(): Promise<void> {
    const nc = this.#nc;
    this.#nc = undefined;
    if (nc && !nc.isClosed()) await nc.drain().catch(() => nc.close());
  }

  /** nats.js statistics (messages and bytes in/out). */
  natsStats(): { inMsgs: number; outMsgs: number; inBytes: number; outBytes: number } | undefined {
    return this.#nc?.stats();
  }

  #conn(): NatsConnection {
    if (!this.#nc) {
      throw new UnavailableError('bus.unavailable', `bus "${this.alias}" is not connected to ${this.url}`, {
        details: { alias: this.alias, url: this.url },
      });
    }
    return this.#nc;
  }

  #watch(nc: NatsConnection): void {
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === 'disconnect') this.#log.warn({ alias: this.alias }, `bus "${this.alias}" lost ${this.url}; reconnecting`);
        else if (s.type === 'reconnect') this.#log.info({ alias: this.alias }, `bus "${this.alias}" reconnected to ${this.url}`);
      }
    })().catch(() => undefined);
  }
}

/** `msg.reply !== ''` without decoding the reply subject (nats.js keeps the raw header in `_msg`). */
function wantsReply(msg: Msg): boolean {
  const raw = (msg as unknown as { _msg?: { reply?: Uint8Array } })._msg;
  return raw ? raw.reply !== undefined && raw.reply.length > 0 : msg.reply !== '';
}

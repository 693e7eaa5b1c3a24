/**
 * Middleware chains. Chains are composed once per route at registration; an empty chain is
 * `undefined` so the request path skips it. Middleware may be sync or async: a sync chain never
 * allocates a promise.
 */
import { Readable } from 'node:stream';
import type { MegaContext } from '@mega/kernel';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Middleware } from './router.js';

type Done = (error?: Error) => void;

const isPromise = (value: unknown): value is PromiseLike<unknown> =>
  value !== null && typeof value === 'object' && typeof (value as { then?: unknown }).then === 'function';

/**
 * Runs `chain` in order as a callback-style Fastify hook body: calls `done()` when every step
 * passed, `done(error)` when one threw, and nothing when one sent the reply (Fastify's contract for
 * answering from a hook).
 */
export function runChain(chain: readonly Middleware[], req: FastifyRequest, reply: FastifyReply, ctx: MegaContext, done: Done): void {
  runFrom(chain, 0, req, reply, ctx, done);
}

/** `runChain` from step `from`: a plain loop while steps are synchronous (no closure per request). */
function runFrom(chain: readonly Middleware[], from: number, req: FastifyRequest, reply: FastifyReply, ctx: MegaContext, done: Done): void {
  for (let i = from; i < chain.length; i++) {
    let result: unknown;
    try {
      result = (chain[i] as Middleware)(req, reply, ctx);
    } catch (error) {
      done(error as Error);
      return;
    }
    if (isPromise(result)) {
      result.then(
        () => (reply.sent ? undefined : runFrom(chain, i + 1, req, reply, ctx, done)),
        (error: unknown) => done(error as Error),
      );
      return;
    }
    if (reply.sent) return;
  }
  done();
}

/** Async form for code already inside a promise: resolves `false` when a step sent the reply. */
export async function runSteps(chain: readonly Middleware[], req: FastifyRequest, reply: FastifyReply, ctx: MegaContext): Promise<boolean> {
  for (const mw of chain) {
    const result = mw(req, reply, ctx);
    if (isPromise(result)) await result;
    if (reply.sent) return false;
  }
  return true;
}

/** Marks an object as already enveloped (`{ data }` is then sent as is). */
export const ENVELOPED = Symbol.for('mega.http.enveloped');

/** `{ data }` once: raw bodies (buffers, streams, strings) and already-enveloped objects pass through. */
export function envelope(result: unknown, reply: FastifyReply): unknown {
  if (reply.sent || result === reply) return reply;
  if (result === undefined) return reply.code(204).send();
  if (result === null) return { data: null };
  if (typeof result !== 'object') return typeof result === 'string' ? result : { data: result };
  // Plain objects and arrays (what controllers return) skip the raw-body checks.
  const proto = Object.getPrototypeOf(result);
  if (proto !== Object.prototype && proto !== Array.prototype && proto !== null) {
    if (Buffer.isBuffer(result) || result instanceof Readable || result instanceof Uint8Array) return result;
  }
  if ((result as Record<symbol, unknown>)[ENVELOPED] === true) return result;
  if ('data' in result) {
    let only = true;
    for (const key in result) {
      if (key !== 'data' && key !== 'meta') {
        only = false;
        break;
      }
    }
    if (only) return result;
  }
  return { data: result };
}

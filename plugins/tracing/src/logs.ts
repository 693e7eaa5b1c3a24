/**
 * Log correlation: every line a kernel's logger (and each of its children: plugin, app, request
 * loggers) writes inside a traced context carries `trace_id` and `span_id`. pino reads its `mixin`
 * from the logger through the prototype chain on every write, and `pino.symbols` is its documented
 * integration point, so setting it on the kernel's root logger reaches the children made before.
 */
import type { Logger } from '@mega/kernel';
import { context, trace } from '@opentelemetry/api';
import { symbols } from 'pino';

type Mixin = (mergeObject: object, level: number, logger: unknown) => object;

/** A fresh object per line: pino assigns the line's own fields into it. */
function traceFields(): object {
  const span = trace.getSpan(context.active());
  if (!span) return {};
  const c = span.spanContext();
  return { trace_id: c.traceId, span_id: c.spanId };
}

/** Adds the fields to `log` (after a mixin it already had); returns the undo. */
export function correlateLogs(log: Logger): () => void {
  const target = log as unknown as Record<symbol, Mixin | undefined>;
  const key = symbols.mixinSym;
  const own = Object.hasOwn(target, key);
  const previous = target[key];
  target[key] = previous ? (obj, level, logger) => Object.assign(previous(obj, level, logger), traceFields()) : traceFields;
  return () => {
    if (own) target[key] = previous;
    else delete target[key];
  };
}

/**
 * Outgoing `fetch` (and any undici request): a client span per request and `traceparent` on it,
 * from undici's diagnostics channels, which Node's own fetch publishes. Nothing is patched. The
 * subscription is process-wide (channels are), so it picks the kernel whose span is active when the
 * request starts; requests made outside a traced context get neither span nor header.
 */
import diagnostics from 'node:diagnostics_channel';
import type { Attributes, Span } from '@opentelemetry/api';
import { context, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { isTracingSuppressed } from '@opentelemetry/core';
import { carrierOf, failSpan, ownerOf } from './tracer.js';

/** The part of undici's request object the channels hand out. */
interface UndiciRequest {
  origin: string | URL;
  method: string;
  path: string;
  addHeader(name: string, value: string): unknown;
}

const spans = new WeakMap<object, Span>();

const onCreate = (message: unknown): void => {
  const active = context.active();
  const parent = trace.getSpan(active);
  if (!parent || isTracingSuppressed(active)) return;
  const request = (message as { request: UndiciRequest }).request;
  const owner = ownerOf(parent);
  if (!owner) {
    // A trace sampled out (or another SDK's span): pass its context on, so the callee follows the decision.
    const carrier = carrierOf(active);
    for (const key in carrier) request.addHeader(key, carrier[key] as string);
    return;
  }
  const origin = String(request.origin);
  const q = request.path.indexOf('?');
  let host: URL | undefined;
  try {
    host = new URL(origin);
  } catch {
    host = undefined;
  }
  const attributes: Attributes = {
    'http.request.method': request.method,
    // No query string: it may carry tokens.
    'url.full': `${host ? host.origin : origin}${q === -1 ? request.path : request.path.slice(0, q)}`,
  };
  if (host) {
    attributes['server.address'] = host.hostname;
    attributes['server.port'] = Number(host.port) || (host.protocol === 'https:' ? 443 : 80);
  }
  const span = owner.recorded(request.method, SpanKind.CLIENT, attributes, parent.spanContext());
  spans.set(request, span);
  const carrier = carrierOf(owner.activate(active, span));
  for (const key in carrier) request.addHeader(key, carrier[key] as string);
};

const onHeaders = (message: unknown): void => {
  const { request, response } = message as { request: object; response: { statusCode: number } };
  const span = spans.get(request);
  if (!span) return;
  span.setAttribute('http.response.status_code', response.statusCode);
  if (response.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
};

const onDone = (message: unknown): void => {
  const { request } = message as { request: object };
  const span = spans.get(request);
  if (!span) return;
  spans.delete(request);
  span.end();
};

const onError = (message: unknown): void => {
  const { request, error } = message as { request: object; error: unknown };
  const span = spans.get(request);
  if (!span) return;
  spans.delete(request);
  failSpan(span, error);
  span.end();
};

const CHANNELS: Array<[string, (message: unknown) => void]> = [
  ['undici:request:create', onCreate],
  ['undici:request:headers', onHeaders],
  ['undici:request:trailers', onDone],
  ['undici:request:error', onError],
];

let users = 0;

/** Subscribes while at least one kernel traces fetch; returns the unsubscribe. */
export function traceFetch(): () => void {
  if (users++ === 0) for (const [name, fn] of CHANNELS) diagnostics.subscribe(name, fn);
  let active = true;
  return () => {
    if (!active) return;
    active = false;
    if (--users === 0) for (const [name, fn] of CHANNELS) diagnostics.unsubscribe(name, fn);
  };
}

/**
 * HTTP server instruments: `mega_http_requests_total` and `mega_http_request_duration_seconds` by
 * app, method, route pattern (`__unmatched__` for requests no route matched: a path never becomes a
 * label, so scanners cannot blow up the series count) and status class.
 *
 * Two hooks on the root Fastify instance, added at boot before any route is frozen, so every route
 * (and the not-found handler) runs them: `onRequest` notes the start time, `onSend` records the
 * response. Not `onResponse`: any `onResponse` hook makes Fastify attach and remove two listeners on
 * every response (~0.35 µs a request, most of this plugin's cost, measured with `--cpu-prof`). A
 * response whose body is a stream is recorded when it finishes (one `finish` listener for that
 * response only); any other is recorded when Fastify hands it to Node, so the duration leaves out the
 * socket write. Per request: two property reads to find the route's series (cached on the route's
 * config object under a symbol at its first request), two clock reads and a few array writes.
 */
import type { Attributes } from '@opentelemetry/api';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Descriptor, FastProducer } from './fast.js';
import { HistogramSeries } from './fast.js';

export const UNMATCHED = '__unmatched__';
const CLASSES = ['other', '1xx', '2xx', '3xx', '4xx', '5xx'] as const;
const SERIES = Symbol('mega.metrics.series');
/** The request's start (`performance.now()`), a decorated field so requests keep one shape. */
const STARTED = 'megaMetricsStart';
type Started = FastifyRequest & { [STARTED]: number };

/** A body Fastify pipes (a stream): recorded when it finishes, not when it starts. */
function isStream(payload: unknown): boolean {
  return payload !== null && typeof payload === 'object' && typeof (payload as { pipe?: unknown }).pipe === 'function';
}

const REQUESTS: Descriptor = {
  name: 'mega_http_requests',
  description: 'HTTP requests answered, by app, method, route pattern and status class',
  unit: '',
};
const DURATION: Descriptor = {
  name: 'mega_http_request_duration_seconds',
  description:
    'Time from receiving the request to handing the response to Node (to its end for streamed bodies), by app, method, route pattern and status class',
  unit: 's',
};

/** The series of one route (app, method, pattern), one per status class, made on first use. */
class RouteSeries {
  readonly byClass: Array<HistogramSeries | undefined> = [undefined, undefined, undefined, undefined, undefined, undefined];
  constructor(
    readonly base: Attributes,
    readonly boundsMs: readonly number[],
    readonly all: HistogramSeries[],
  ) {}

  /** Records one response; the histogram keeps milliseconds, exported as seconds. */
  record(status: number, ms: number): void {
    const cls = status >= 100 && status < 600 ? (status / 100) | 0 : 0;
    let series = this.byClass[cls];
    if (series === undefined) {
      series = new HistogramSeries({ ...this.base, status_class: CLASSES[cls] }, this.boundsMs);
      this.byClass[cls] = series;
      this.all.push(series);
    }
    series.record(ms);
  }
}

interface RouteConfig {
  url?: string;
  method?: string;
  mega?: { app?: string };
  [SERIES]?: RouteSeries;
}

export function instrumentHttp(fastify: FastifyInstance, producer: FastProducer, bucketsSeconds: readonly number[]): void {
  const boundsMs = bucketsSeconds.map((s) => s * 1000);
  const all: HistogramSeries[] = [];
  const unmatched = new Map<string, RouteSeries>();
  // By app/method/pattern: the cache when a route's config object cannot carry the symbol.
  const byKey = new Map<string, RouteSeries>();
  const unmatchedOf = (method: string): RouteSeries => {
    let s = unmatched.get(method);
    if (!s) {
      s = new RouteSeries({ method, route: UNMATCHED }, boundsMs, all);
      unmatched.set(method, s);
    }
    return s;
  };

  const seriesOf = (req: FastifyRequest): RouteSeries => {
    const config = req.routeOptions.config as RouteConfig | undefined;
    const cached = config?.[SERIES];
    if (cached !== undefined) return cached;
    if (config?.url === undefined) return unmatchedOf(req.method);
    const app = config.mega?.app;
    const method = config.method ?? req.method;
    const key = `${app ?? ''} ${method} ${config.url}`;
    let series = byKey.get(key);
    if (series === undefined) {
      const base: Attributes = app === undefined ? {} : { app };
      base.method = method;
      base.route = config.url;
      series = new RouteSeries(base, boundsMs, all);
      byKey.set(key, series);
    }
    if (Object.isExtensible(config)) config[SERIES] = series;
    return series;
  };

  fastify.decorateRequest(STARTED, 0);
  fastify.addHook('onRequest', (req: FastifyRequest, _reply: FastifyReply, done: () => void) => {
    (req as Started)[STARTED] = performance.now();
    done();
  });
  fastify.addHook('onSend', (req: FastifyRequest, reply: FastifyReply, payload: unknown, done: (err: null, payload: unknown) => void) => {
    if (isStream(payload)) {
      const res = reply.raw;
      const finished = (): void => {
        res.removeListener('finish', finished);
        res.removeListener('close', finished);
        seriesOf(req).record(reply.statusCode, performance.now() - (req as Started)[STARTED]);
      };
      res.on('finish', finished);
      res.on('close', finished);
    } else seriesOf(req).record(reply.statusCode, performance.now() - (req as Started)[STARTED]);
    done(null, payload);
  });

  producer.add((batch) => {
    batch.counter(
      REQUESTS,
      all.map((s) => ({ attributes: s.attributes, value: s.count })),
    );
    batch.histogram(
      DURATION,
      all.map((s) => ({ attributes: s.attributes, boundaries: bucketsSeconds, counts: s.counts, sum: s.sum / 1000, count: s.count })),
    );
  });
}

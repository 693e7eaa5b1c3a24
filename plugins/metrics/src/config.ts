/** `metrics` in mega.config.ts: the one declaration of the plugin's config (type and defaults). */
import type { Static } from '@mega/kernel';
import { Type } from '@mega/kernel';

/** Instrument groups (`metrics.include`). */
export const INSTRUMENT_GROUPS = ['http', 'ws', 'presence', 'jobs', 'db', 'bus', 'lock', 'codec', 'process', 'gc'] as const;
export type InstrumentGroup = (typeof INSTRUMENT_GROUPS)[number];
/**
 * Every group but `gc`: Node's GC observer costs ~3% CPU on an allocation-heavy process (measured:
 * an allocation loop with and without a PerformanceObserver on 'gc', medians of 6 runs), more than
 * all the other groups together, so GC pauses are opt-in.
 */
export const DEFAULT_GROUPS: readonly InstrumentGroup[] = INSTRUMENT_GROUPS.filter((g) => g !== 'gc');

/** OpenTelemetry's advice for `http.server.request.duration`, in seconds. */
export const DEFAULT_HTTP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10];

export const MetricsGlobalConfig = Type.Object({
  metrics: Type.Object(
    {
      /** false: no instruments, no `/metrics`, no `metrics` service (other plugins then skip their metrics too). */
      enabled: Type.Boolean({ default: true }),
      /** Where the app port answers scrapes. */
      path: Type.String({ pattern: '^/', default: '/metrics' }),
      /**
       * Peers allowed to scrape: IPv4/IPv6 addresses or CIDRs (`10.0.0.0/8`, `::1`), matched against
       * the TCP peer address (never X-Forwarded-For). Unset: anyone outside production, loopback only in production.
       */
      allow: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })),
      /** Bearer token a scrape must send (`Authorization: Bearer <token>`); else MEGA_METRICS_TOKEN. */
      token: Type.Optional(Type.String({ minLength: 16 })),
      /** `service.name` of the OpenTelemetry resource (target_info); MEGA_OTEL_SERVICE_NAME wins; default: the project's package.json name, else `mega`. */
      serviceName: Type.Optional(Type.String({ minLength: 1 })),
      /** Instrument groups to record (default: all). */
      include: Type.Array(Type.Union(INSTRUMENT_GROUPS.map((g) => Type.Literal(g))), { default: [...DEFAULT_GROUPS] }),
      /** Bucket bounds (seconds) of the HTTP duration histogram. */
      httpBuckets: Type.Array(Type.Number({ exclusiveMinimum: 0 }), { minItems: 1, default: DEFAULT_HTTP_BUCKETS }),
      /** Longest a scrape waits for slow sources (job queue depth over NATS) and, in a cluster, for the other workers. */
      timeoutMs: Type.Integer({ minimum: 100, maximum: 60_000, default: 2000 }),
    },
    { additionalProperties: false, default: {} },
  ),
});

export type MetricsConfig = Static<typeof MetricsGlobalConfig>['metrics'];

/**
 * @mega/metrics: OpenTelemetry metrics served as Prometheus text on the app's own port (`/metrics`),
 * merged across workers in `mega start --workers N`. Instruments read what the other plugins already
 * count (pull); the HTTP path records into plain arrays from one Fastify hook. Disabled or not
 * installed: no hook, no route, no `metrics` service, and the SDK is never loaded.
 */
// Brings the http plugin's `http` service type into scope.
import type {} from '@mega/http';
import type { ConfigInput } from '@mega/kernel';
import { definePlugin, packageVersion } from '@mega/kernel';
import type { Meter, MeterProvider } from '@opentelemetry/api';
import { MetricsGlobalConfig } from './config.js';
import { createMetricsAggregator } from './primary.js';

export type { InstrumentGroup, MetricsConfig } from './config.js';
export { DEFAULT_GROUPS, DEFAULT_HTTP_BUCKETS, INSTRUMENT_GROUPS, MetricsGlobalConfig } from './config.js';
export type { Exposition, Family, Sample, WorkerExposition } from './merge.js';
export { formatExposition, mergeExpositions, parseExposition, retire } from './merge.js';
export type { MetricsWire } from './primary.js';
export { createMetricsAggregator, METRICS_CHANNEL } from './primary.js';
export type { Meter, MeterProvider };

/**
 * Service `metrics`: this kernel's MeterProvider. Another plugin that wants its own instruments
 * asks at boot, only when the service exists (`api.has('metrics')`), so without @mega/metrics it
 * does no metrics work at all.
 */
export interface MetricsService {
  /** The kernel's provider (never the OpenTelemetry global one: kernels in one process stay apart). */
  readonly provider: MeterProvider;
  /** A meter for an instrumentation scope (by convention the plugin's package name). */
  meter(scope: string, version?: string): Meter;
  /** This process's metrics as Prometheus text. */
  collect(): Promise<string>;
  /** What `/metrics` answers: in a cluster, every worker's series merged; else `collect()`. */
  scrape(): Promise<string>;
}

declare module '@mega/kernel' {
  /** This plugin's keys of mega.config.ts (see the README's config table). */
  interface MegaConfig {
    metrics?: ConfigInput<typeof MetricsGlobalConfig>['metrics'];
  }
  interface MegaServices {
    metrics: MetricsService;
  }
}

const version = packageVersion(new URL('../package.json', import.meta.url));

export default definePlugin({
  name: '@mega/metrics',
  version,
  kernel: '^0.2.0',
  dependsOn: ['@mega/http'],
  config: { global: MetricsGlobalConfig },
  primary: createMetricsAggregator,
  async setup(api, { metrics: config }) {
    if (!config.enabled) {
      api.log.debug('metrics: disabled (metrics.enabled: false)');
      return;
    }
    const { createMetrics } = await import('./runtime.js');
    const metrics = createMetrics(api, config, version);
    api.provide('metrics', {
      provider: metrics.provider,
      meter: metrics.meter,
      collect: metrics.collect,
      scrape: metrics.scrape,
    } satisfies MetricsService);
    // Stage 0, after @mega/http created its server: the hook is on the root instance before any
    // route is frozen (stage 900), so every route and the not-found handler run it.
    api.tap('boot', () => metrics.attach());
    api.onShutdown(() => metrics.close());
  },
  configure(project) {
    project.log('Prometheus can scrape /metrics on the app port; in production set metrics.allow or metrics.token (README: Exposure)');
  },
});

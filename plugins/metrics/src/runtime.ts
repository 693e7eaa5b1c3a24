/**
 * The running half of @mega/metrics, loaded by `setup` only when metrics are enabled (so a disabled
 * plugin, and the cluster primary, never load the OpenTelemetry SDK). One MeterProvider per kernel,
 * never the OpenTelemetry global: several kernels in one process (tests) keep separate metrics.
 * Its one reader is the Prometheus exporter used as a pull reader and serializer, without its own
 * server; scrapes reach it through the app's port.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AspService } from '@mega/asp';
import type { HttpServer } from '@mega/http';
import type { JobsService } from '@mega/jobs';
import type { PluginApi } from '@mega/kernel';
import { isMegaError, UnavailableError } from '@mega/kernel';
import type { WsServer } from '@mega/ws';
import type { PresenceService } from '@mega/ws-presence';
import type { Meter } from '@opentelemetry/api';
import { PrometheusExporter, PrometheusSerializer } from '@opentelemetry/exporter-prometheus';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ClusterLink, inCluster } from './cluster.js';
import type { InstrumentGroup, MetricsConfig } from './config.js';
import { createExposure } from './exposure.js';
import { FastProducer } from './fast.js';
import { instrumentHttp } from './http.js';
import type { MetricsService } from './index.js';
import type { ProcessInstruments } from './process.js';
import { instrumentProcess } from './process.js';
import { adapterSource, busSource, codecSource, jobsSource, lockSource, presenceSource, wsSource } from './sources.js';

/** The project's package.json name (undefined without one). */
function projectName(dir: string): string | undefined {
  try {
    const name = (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown }).name;
    return typeof name === 'string' && name ? name : undefined;
  } catch {
    return undefined;
  }
}

export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';
/** Collection problems are logged at most this often (a broken source would fail every scrape). */
const WARN_EVERY_MS = 60_000;

export interface MetricsRuntime extends MetricsService {
  /** Boot: instruments of the loaded plugins, the HTTP hook and the scrape route. */
  attach(): void;
  close(): void;
}

export function createMetrics(api: PluginApi, config: MetricsConfig, version: string): MetricsRuntime {
  const { kernel } = api;
  const include = new Set<InstrumentGroup>(config.include);
  // The same rule as @mega/tracing, so traces and metrics of one process name the same service.
  const serviceName = process.env.MEGA_OTEL_SERVICE_NAME || config.serviceName || projectName(kernel.dir) || 'mega';
  const resource = resourceFromAttributes({ 'service.name': serviceName, 'deployment.environment.name': kernel.env });
  const producer = new FastProducer(resource, { name: api.name, version }, config.timeoutMs);
  const reader = new PrometheusExporter({ preventServerStart: true, metricProducers: [producer] });
  const provider = new MeterProvider({ resource, readers: [reader] });
  // No otel_scope_* labels on every series: instrument names are namespaced (mega_*) already.
  const serializer = new PrometheusSerializer(undefined, false, undefined, false, true);
  const meter = provider.getMeter(api.name, version);
  const token = config.token ?? process.env.MEGA_METRICS_TOKEN ?? undefined;
  const exposure = createExposure({ allow: config.allow, token: token || undefined, production: kernel.env === 'production' });
  let processInstruments: ProcessInstruments | undefined;
  let warnedAt = 0;

  const collect = async (): Promise<string> => {
    const { resourceMetrics, errors } = await reader.collect({ timeoutMillis: config.timeoutMs });
    if (errors.length && Date.now() - warnedAt > WARN_EVERY_MS) {
      warnedAt = Date.now();
      api.log.warn(
        { errors: errors.map((e) => (e as Error)?.message ?? String(e)) },
        'metrics: some instruments could not be read; served without them',
      );
    }
    return serializer.serialize(resourceMetrics);
  };
  const link = inCluster() ? new ClusterLink(collect) : undefined;
  const scrape = (): Promise<string> => (link ? link.scrape(config.timeoutMs) : collect());

  const serve = async (req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
    const refusal = exposure.check(req.raw.socket?.remoteAddress, req.headers.authorization);
    if (refusal) {
      if (refusal.status === 401) reply.header('www-authenticate', 'Bearer realm="metrics"');
      return reply.code(refusal.status).send({ error: { code: refusal.code, message: refusal.message } });
    }
    let text: string;
    try {
      text = await scrape();
    } catch (error) {
      const e = isMegaError(error)
        ? error
        : new UnavailableError('metrics.collect_failed', 'metrics could not be collected', { cause: error });
      api.log.warn({ err: error, code: e.code }, `metrics: scrape failed (${e.code})`);
      return reply.code(503).send({ error: { code: e.code, message: e.message } });
    }
    return reply.header('content-type', PROMETHEUS_CONTENT_TYPE).header('cache-control', 'no-store').send(text);
  };

  return {
    provider,
    meter: (scope: string, v?: string): Meter => provider.getMeter(scope, v),
    collect,
    scrape,
    attach() {
      const http = api.use<HttpServer>('http');
      const fastify = http.fastify;
      if (include.has('http')) instrumentHttp(fastify, producer, config.httpBuckets);
      const ws = api.has('ws') ? api.use<WsServer>('ws') : undefined;
      if (ws && include.has('ws')) wsSource(ws, producer);
      if (ws && include.has('presence') && api.has('presence')) presenceSource(ws, api.use<PresenceService>('presence'), kernel, producer);
      if (include.has('jobs') && api.has('jobs')) jobsSource(api, api.use<JobsService>('jobs'), meter, producer);
      if (include.has('db')) adapterSource(api, producer);
      if (include.has('bus')) busSource(kernel, producer);
      if (include.has('lock')) lockSource(kernel, producer);
      if (include.has('codec')) codecSource(kernel, api.has('asp') ? api.use<AspService>('asp') : undefined, producer);
      if (include.has('process') || include.has('gc')) {
        processInstruments = instrumentProcess(meter, producer, { process: include.has('process'), gc: include.has('gc') });
      }
      fastify.get(config.path, serve);
      if (kernel.env === 'production' && !config.allow && !token) {
        api.log.warn(
          `metrics: ${config.path} answers loopback peers only in production; set metrics.allow (IPs/CIDRs) or metrics.token (MEGA_METRICS_TOKEN) to scrape from elsewhere`,
        );
      }
      api.log.debug({ path: config.path, exposure: exposure.summary, cluster: link !== undefined }, 'metrics: serving');
    },
    close() {
      // Scrapes still answer until @mega/http closes the server (it shuts down after this plugin).
      processInstruments?.stop();
    },
  };
}

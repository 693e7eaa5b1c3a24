/**
 * @mega/tracing: OpenTelemetry traces over OTLP/HTTP. HTTP routes and WebSocket connects/messages
 * are traced from here (kernel `route` hook, Fastify hooks on the http service); the bus, jobs,
 * databases, locks and security rejections trace themselves through the `tracing` service
 * (`MegaTracer` of @mega/adapters) when it is there; outgoing fetch through undici's diagnostics
 * channels. Log lines inside a traced context carry `trace_id` and `span_id`.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ConfigInput } from '@mega/kernel';
import { definePlugin, packageVersion } from '@mega/kernel';
import type { FastifyInstance } from 'fastify';
import { resolveConfig, TracingGlobalConfig } from './config.js';
import { traceFetch } from './fetch.js';
import type { WsServerLike } from './http.js';
import { HttpTracing } from './http.js';
import { correlateLogs } from './logs.js';
import { Tracing } from './tracer.js';

export type { MegaTracer, TraceAttributes, TraceCarrier, TraceSpan, TraceSpanKind } from '@mega/adapters';
export type { TracingConfig } from './config.js';
export { resolveConfig, TracingGlobalConfig } from './config.js';
export { SPAN_META, UNMATCHED } from './http.js';
export type { ExportStats } from './tracer.js';
export { Tracing } from './tracer.js';

const VERSION = packageVersion(new URL('../package.json', import.meta.url));

declare module '@mega/kernel' {
  /** This plugin's keys of mega.config.ts (see the README's config table). */
  interface MegaConfig {
    tracing?: ConfigInput<typeof TracingGlobalConfig>['tracing'];
  }
  interface MegaServices {
    tracing: Tracing;
  }
  interface MegaContext {
    /** Spans of your own: `ctx.tracer.span('price.compute', async (span) => ...)`; `ctx.tracer.otel` is the OpenTelemetry tracer. */
    readonly tracer: Tracing;
  }
}

/** The project's package.json name, the default `service.name`. */
function projectName(dir: string): string {
  try {
    const name = (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown }).name;
    if (typeof name === 'string' && name) return name;
  } catch {
    // No package.json: the generic name.
  }
  return 'mega';
}

export default definePlugin({
  name: '@mega/tracing',
  version: VERSION,
  kernel: '^0.2.0',
  config: { global: TracingGlobalConfig },
  setup(api, config) {
    const { kernel } = api;
    const c = resolveConfig(config.tracing, process.env, projectName(kernel.dir));
    if (!c.enabled) {
      api.log.info('tracing: off (tracing.enabled / MEGA_OTEL_ENABLED): nothing is traced');
      return;
    }
    const tracing = new Tracing({
      config: c,
      log: api.log,
      version: VERSION,
      resource: {
        'service.instance.id': kernel.instanceId,
        'deployment.environment.name': kernel.env,
        'process.pid': process.pid,
        'process.runtime.name': 'nodejs',
        'process.runtime.version': process.versions.node,
      },
    });
    // Plugins that trace themselves (`after: ['@mega/tracing']`) find it in their setup.
    api.provide('tracing', tracing);
    api.contributeCtx('tracer', () => tracing);
    const http = new HttpTracing(tracing);
    api.tap('route', (def) => http.route(def));
    // After @mega/http created its server (stage 0), before route files load (500): root hooks
    // added here apply to every route.
    api.tap(
      'boot',
      () => {
        if (api.has('http')) http.attach(api.use<{ fastify: FastifyInstance }>('http').fastify);
        if (api.has('ws')) http.watch(api.use<WsServerLike>('ws'));
      },
      { stage: 100 },
    );
    const uncorrelate = c.logs ? correlateLogs(kernel.log) : undefined;
    const untrace = c.fetch ? traceFetch() : undefined;
    // Stage 1000: after every other plugin's shutdown step (the server's close included), so the
    // last requests' and jobs' spans are in the flush.
    api.tap(
      'shutdown',
      async () => {
        untrace?.();
        try {
          await tracing.shutdown();
        } catch (error) {
          api.log.warn(
            { err: error, endpoint: tracing.target },
            `tracing: spans still queued at shutdown were dropped (${(error as Error).message})`,
          );
        } finally {
          uncorrelate?.();
        }
      },
      { stage: 1000 },
    );
    api.log.debug(
      { exporter: c.exporter, endpoint: tracing.target, serviceName: c.serviceName, samplingRatio: c.samplingRatio },
      'tracing: on',
    );
  },
  async configure(project) {
    await project.addEnv(
      'MEGA_OTEL_ENDPOINT',
      'http://localhost:4318/v1/traces',
      'OTLP/HTTP traces receiver of @mega/tracing (Jaeger, OpenTelemetry Collector); MEGA_OTEL_SAMPLING_RATIO=0.1 keeps one trace in ten',
    );
    project.log(
      'Spans go to MEGA_OTEL_ENDPOINT (.env); ctx.tracer.span(name, fn) adds your own; trace_id and span_id are in every log line',
    );
  },
});

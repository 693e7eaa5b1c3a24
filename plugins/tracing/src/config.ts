/**
 * `tracing` in mega.config.ts, and the `MEGA_OTEL_*` environment that overrides it (deployments set
 * the endpoint and sampling without touching code): environment > config file > default.
 */
import type { Static } from '@mega/kernel';
import { ConfigError, Type } from '@mega/kernel';

export const TracingGlobalConfig = Type.Object({
  tracing: Type.Object(
    {
      /** Off: the plugin provides nothing, so instrumented plugins pay nothing. `MEGA_OTEL_ENABLED`. */
      enabled: Type.Boolean({ default: true }),
      /** `service.name` of every span. Default: the project's package.json name, else `mega`. `MEGA_OTEL_SERVICE_NAME`. */
      serviceName: Type.Optional(Type.String({ minLength: 1 })),
      /** `otlp` (OTLP/HTTP JSON), `console` (one JSON line per span on stdout), `none` (spans made, not sent). `MEGA_OTEL_EXPORTER`. */
      exporter: Type.Union([Type.Literal('otlp'), Type.Literal('console'), Type.Literal('none')], { default: 'otlp' }),
      /** OTLP/HTTP traces URL. `MEGA_OTEL_ENDPOINT`, else `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, else `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`. */
      endpoint: Type.String({ minLength: 1, default: 'http://localhost:4318/v1/traces' }),
      /** Extra OTLP request headers (an ingest token). Never logged. */
      headers: Type.Record(Type.String(), Type.String(), { default: {} }),
      /** Share of new traces recorded (0..1); a sampled-in or -out parent (traceparent) is followed. `MEGA_OTEL_SAMPLING_RATIO`. */
      samplingRatio: Type.Number({ minimum: 0, maximum: 1, default: 1 }),
      /** Added to the resource (`deployment.environment.name` etc.). `MEGA_OTEL_RESOURCE_ATTRIBUTES` (`k=v,k2=v2`) adds more. */
      resourceAttributes: Type.Record(Type.String(), Type.String(), { default: {} }),
      /** Batching: spans wait at most `delayMs` and go in batches of `maxBatch`; past `maxQueue` waiting spans, new ones are dropped. */
      batch: Type.Object(
        {
          delayMs: Type.Integer({ minimum: 1, default: 1000 }),
          maxBatch: Type.Integer({ minimum: 1, default: 512 }),
          maxQueue: Type.Integer({ minimum: 1, default: 2048 }),
          /** One export request's bound. */
          exportTimeoutMs: Type.Integer({ minimum: 100, default: 5000 }),
        },
        { additionalProperties: false, default: {} },
      ),
      /** Shutdown flushes what is queued for at most this long (keep under lifecycle.shutdownTimeoutMs). */
      shutdownTimeoutMs: Type.Integer({ minimum: 1, default: 3000 }),
      /** At most one "spans dropped" warning per this interval, carrying the count since the last one. */
      warnIntervalMs: Type.Integer({ minimum: 0, default: 60_000 }),
      /** Spans of outgoing `fetch` (undici diagnostics channels), with `traceparent` added to the request. */
      fetch: Type.Boolean({ default: true }),
      /** `trace_id` and `span_id` on every log line written inside a traced context. */
      logs: Type.Boolean({ default: true }),
    },
    { additionalProperties: false, default: {} },
  ),
});
export type TracingConfig = Static<typeof TracingGlobalConfig>['tracing'];

/** The config with `MEGA_OTEL_*` applied; a malformed variable is a boot error naming it. */
export function resolveConfig(
  config: TracingConfig,
  env: NodeJS.ProcessEnv,
  fallbackName: string,
): TracingConfig & { serviceName: string } {
  const out = { ...config, resourceAttributes: { ...config.resourceAttributes } };
  const enabled = env.MEGA_OTEL_ENABLED;
  if (enabled !== undefined && enabled !== '') out.enabled = flag('MEGA_OTEL_ENABLED', enabled);
  const exporter = env.MEGA_OTEL_EXPORTER;
  if (exporter) {
    if (exporter !== 'otlp' && exporter !== 'console' && exporter !== 'none') {
      throw invalid('MEGA_OTEL_EXPORTER', `must be otlp, console or none (got "${exporter}")`);
    }
    out.exporter = exporter;
  }
  const endpoint =
    env.MEGA_OTEL_ENDPOINT ||
    env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ||
    (env.OTEL_EXPORTER_OTLP_ENDPOINT ? `${env.OTEL_EXPORTER_OTLP_ENDPOINT.replace(/\/+$/, '')}/v1/traces` : undefined);
  if (endpoint) out.endpoint = endpoint;
  if (!/^https?:\/\/[^/\s]+/.test(out.endpoint))
    throw invalid('tracing.endpoint', `must be an http(s) URL (got "${out.endpoint.slice(0, 100)}")`);
  const ratio = env.MEGA_OTEL_SAMPLING_RATIO;
  if (ratio !== undefined && ratio !== '') {
    const r = Number(ratio);
    if (!Number.isFinite(r) || r < 0 || r > 1) throw invalid('MEGA_OTEL_SAMPLING_RATIO', `must be a number from 0 to 1 (got "${ratio}")`);
    out.samplingRatio = r;
  }
  const attrs = env.MEGA_OTEL_RESOURCE_ATTRIBUTES;
  if (attrs) {
    for (const pair of attrs.split(',')) {
      if (!pair.trim()) continue;
      const at = pair.indexOf('=');
      if (at <= 0)
        throw invalid('MEGA_OTEL_RESOURCE_ATTRIBUTES', `expects key=value pairs separated by commas (got "${pair.slice(0, 100)}")`);
      out.resourceAttributes[decodeURIComponent(pair.slice(0, at).trim())] = decodeURIComponent(pair.slice(at + 1).trim());
    }
  }
  return { ...out, serviceName: env.MEGA_OTEL_SERVICE_NAME || config.serviceName || fallbackName };
}

function flag(name: string, value: string): boolean {
  if (/^(1|true|yes|on)$/i.test(value)) return true;
  if (/^(0|false|no|off)$/i.test(value)) return false;
  throw invalid(name, `must be true or false (got "${value}")`);
}

function invalid(key: string, message: string): ConfigError {
  return new ConfigError('tracing.invalid_config', `${key} ${message}`, { details: { key } });
}

/**
 * @mega/health: `/health` (liveness) and `/ready` (readiness) on the app port. Readiness runs every
 * check plugins registered with `api.health(name, check)` (the kernel's one health contract,
 * `kernel.healthChecks()`), in parallel, each bounded by `checkTimeoutMs`.
 */
// Brings the http plugin's `http` service type into scope.
import type {} from '@mega/http';
import type { ConfigInput, HealthEntry, Kernel, Static } from '@mega/kernel';
import { definePlugin, packageVersion, Type, within } from '@mega/kernel';

/** The global key `health` of mega.config.ts: the one source of its type and defaults. */
export const HealthGlobalConfig = Type.Object({
  health: Type.Object(
    {
      /** Include each check's result (and error message) in /ready answers. Off by default: it can leak internals. */
      exposeCheckDetails: Type.Boolean({ default: false }),
      /** Per-check timeout in ms. */
      checkTimeoutMs: Type.Integer({ minimum: 1, default: 5000 }),
      /** On shutdown, keep serving (with /ready at 503) this long before the server closes. */
      drainDelayMs: Type.Integer({ minimum: 0, default: 0 }),
      livenessPath: Type.String({ pattern: '^/', default: '/health' }),
      readinessPath: Type.String({ pattern: '^/', default: '/ready' }),
    },
    { additionalProperties: false, default: {} },
  ),
});

export type HealthConfig = Static<typeof HealthGlobalConfig>['health'];

export interface CheckResult {
  ok: boolean;
  /** The check's error message (failed checks). */
  error?: string;
  durationMs: number;
}

export interface ReadinessReport {
  ready: boolean;
  /** `stopping` while the kernel shuts down, `starting` before boot finished. */
  state: string;
  checks: Record<string, CheckResult>;
}

/** Service `health`: readiness as /ready computes it (its presence also tells @mega/http to leave /health to this plugin). */
export interface HealthService {
  /** The check names /ready reports (a name registered by two plugins is prefixed with the second plugin's name). */
  readonly names: string[];
  check(): Promise<ReadinessReport>;
}

declare module '@mega/kernel' {
  /** This plugin's keys of mega.config.ts (see the README's config table). */
  interface MegaConfig {
    health?: ConfigInput<typeof HealthGlobalConfig>['health'];
  }
  interface MegaServices {
    health: HealthService;
  }
}

/** Report names: a check's own name, prefixed with its plugin's when an earlier check took the name. */
function named(entries: readonly HealthEntry[]): Array<[string, HealthEntry]> {
  const seen = new Set<string>();
  return entries.map((entry) => {
    const name = seen.has(entry.name) ? `${entry.plugin}:${entry.name}` : entry.name;
    seen.add(name);
    return [name, entry];
  });
}

async function runCheck(entry: HealthEntry, timeoutMs: number): Promise<CheckResult> {
  const started = performance.now();
  const durationMs = () => Math.round(performance.now() - started);
  try {
    await within(Promise.resolve().then(entry.check), timeoutMs, () => new Error(`check timed out after ${timeoutMs} ms`));
    return { ok: true, durationMs: durationMs() };
  } catch (error) {
    return { ok: false, error: (error as Error)?.message ?? String(error), durationMs: durationMs() };
  }
}

function healthService(kernel: Kernel, timeoutMs: number): HealthService {
  return {
    get names() {
      return named(kernel.healthChecks()).map(([name]) => name);
    },
    async check() {
      const state = kernel.state;
      if (!kernel.ready) return { ready: false, state: state === 'stopping' || state === 'stopped' ? 'stopping' : 'starting', checks: {} };
      // Read on every probe: a check registered after boot is reported too.
      const results = await Promise.all(
        named(kernel.healthChecks()).map(async ([name, entry]) => [name, await runCheck(entry, timeoutMs)] as const),
      );
      return { ready: results.every(([, r]) => r.ok), state: 'running', checks: Object.fromEntries(results) };
    },
  };
}

export default definePlugin({
  name: '@mega/health',
  version: packageVersion(new URL('../package.json', import.meta.url)),
  kernel: '^0.2.0',
  dependsOn: ['@mega/http'],
  config: { global: HealthGlobalConfig },
  setup(api, { health: config }) {
    const service = healthService(api.kernel, config.checkTimeoutMs);
    // Provided during setup: @mega/http checks for a `health` service when it creates its server and
    // then leaves /health to this plugin.
    api.provide('health', service);
    api.tap('boot', () => {
      const fastify = api.use('http').fastify;
      fastify.get(config.livenessPath, async () => ({ data: { status: 'ok' } }));
      fastify.get(config.readinessPath, async (_req, reply) => {
        const report = await service.check();
        if (report.ready) return { data: { status: 'ready', ...(config.exposeCheckDetails ? { checks: report.checks } : {}) } };
        const failed = Object.entries(report.checks)
          .filter(([, r]) => !r.ok)
          .map(([name]) => name);
        return reply.code(503).send({
          error: {
            code: report.state === 'running' ? 'health.not_ready' : `health.${report.state}`,
            message: report.state === 'running' ? `${failed.length} readiness check(s) failed` : `the server is ${report.state}`,
            details: config.exposeCheckDetails
              ? { state: report.state, checks: report.checks }
              : { state: report.state, failed: failed.length },
          },
        });
      });
    });
    // Runs before @mega/http closes the server (reverse dependency order): readiness is already 503.
    api.onShutdown(async () => {
      if (config.drainDelayMs > 0) {
        api.log.info({ drainDelayMs: config.drainDelayMs }, 'health: readiness is 503, draining before the server closes');
        await new Promise((resolve) => setTimeout(resolve, config.drainDelayMs));
      }
    });
  },
});

import type { HttpServer } from '@mega/http';
import type { Kernel } from '@mega/kernel';
import { definePlugin, packageVersion } from '@mega/kernel';

export interface HealthConfig {
  /** Include each check's result (and error message) in /ready answers. Off by default: it can leak internals. */
  exposeCheckDetails?: boolean;
  /** Default per-check timeout in ms. */
  checkTimeoutMs?: number;
  /** On shutdown, keep serving (with /ready at 503) this long before the server closes. */
  drainDelayMs?: number;
  livenessPath?: string;
  readinessPath?: string;
}

export interface CheckResult {
  ok: boolean;
  [detail: string]: unknown;
}

export type HealthCheck = () => CheckResult | boolean | undefined | Promise<CheckResult | boolean | undefined>;

export interface ReadinessReport {
  ready: boolean;
  /** `stopping` while the kernel shuts down, `starting` before boot finished. */
  state: string;
  checks: Record<string, CheckResult & { durationMs: number }>;
}

declare module '@mega/kernel' {
  interface MegaServices {
    health: HealthRegistry;
  }
  interface MegaConfig {
    health?: HealthConfig;
  }
}

export const DEFAULT_CHECK_TIMEOUT_MS = 5_000;

export class HealthRegistry {
  readonly #checks = new Map<string, { fn: HealthCheck; timeoutMs: number }>();
  constructor(
    private readonly kernel: Kernel,
    private readonly defaultTimeoutMs: number,
  ) {}

  /** Adds a readiness check; `fn` resolves `{ ok }` (or a boolean), a throw or a timeout counts as failed. */
  register(name: string, fn: HealthCheck, options: { timeoutMs?: number } = {}): void {
    if (!name) throw new TypeError('health.register: name is required');
    if (typeof fn !== 'function') throw new TypeError(`health.register(${name}): fn must be a function`);
    this.#checks.set(name, { fn, timeoutMs: options.timeoutMs && options.timeoutMs > 0 ? options.timeoutMs : this.defaultTimeoutMs });
  }

  unregister(name: string): void {
    this.#checks.delete(name);
  }

  get names(): string[] {
    return [...this.#checks.keys()];
  }

  async check(): Promise<ReadinessReport> {
    const state = this.kernel.state;
    if (!this.kernel.ready)
      return { ready: false, state: state === 'stopping' || state === 'stopped' ? 'stopping' : 'starting', checks: {} };
    const entries = await Promise.all(
      [...this.#checks].map(async ([name, { fn, timeoutMs }]) => [name, await runCheck(fn, timeoutMs)] as const),
    );
    const checks = Object.fromEntries(entries);
    return { ready: entries.every(([, r]) => r.ok), state: 'running', checks };
  }
}

async function runCheck(fn: HealthCheck, timeoutMs: number): Promise<CheckResult & { durationMs: number }> {
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`check timed out after ${timeoutMs} ms`)), timeoutMs);
      timer.unref();
    });
    const raw = await Promise.race([Promise.resolve().then(fn), timeout]);
    const result: CheckResult = typeof raw === 'object' && raw !== null ? raw : { ok: raw !== false };
    return { ...result, ok: result.ok === true, durationMs: Math.round(performance.now() - started) };
  } catch (error) {
    return { ok: false, error: (error as Error)?.message ?? String(error), durationMs: Math.round(performance.now() - started) };
  } finally {
    clearTimeout(timer);
  }
}

export default definePlugin<HealthConfig>({
  name: '@mega/health',
  version: packageVersion(new URL('../package.json', import.meta.url)),
  kernel: '^0.2.0',
  dependsOn: ['@mega/http'],
  configKey: 'health',
  configScope: 'global',
  configSchema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      exposeCheckDetails: { type: 'boolean', default: false },
      checkTimeoutMs: { type: 'integer', minimum: 1, default: DEFAULT_CHECK_TIMEOUT_MS },
      drainDelayMs: { type: 'integer', minimum: 0, default: 0 },
      livenessPath: { type: 'string', pattern: '^/', default: '/health' },
      readinessPath: { type: 'string', pattern: '^/', default: '/ready' },
    },
  },
  setup(kernel: Kernel, config: HealthConfig) {
    const registry = new HealthRegistry(kernel, config.checkTimeoutMs ?? DEFAULT_CHECK_TIMEOUT_MS);
    // Provided during setup: @mega/http checks kernel.has('health') when it creates its server and
    // then leaves /health to this plugin.
    kernel.provide('health', registry, '@mega/health');
    kernel.hooks.boot.tapPromise('@mega/health', async () => {
      // Adapters (db, cache, bus, lock) publish their checks as a `health:<plugin name>` service:
      // a record of `() => Promise<void>` that rejects when the dependency is not usable.
      for (const plugin of kernel.plugins) {
        const service = `health:${plugin.name}`;
        if (!kernel.has(service)) continue;
        for (const [name, check] of Object.entries(kernel.use<Record<string, () => unknown>>(service))) {
          const id = registry.names.includes(name) ? `${plugin.name}:${name}` : name;
          registry.register(id, async () => {
            await check();
            return { ok: true };
          });
        }
      }
      const fastify = kernel.use<HttpServer>('http').fastify;
      fastify.get(config.livenessPath ?? '/health', async () => ({ data: { status: 'ok' } }));
      fastify.get(config.readinessPath ?? '/ready', async (_req, reply) => {
        const report = await registry.check();
        const details = config.exposeCheckDetails ? { state: report.state, checks: report.checks } : { state: report.state };
        if (report.ready) return { data: { status: 'ready', ...(config.exposeCheckDetails ? { checks: report.checks } : {}) } };
        const failed = Object.entries(report.checks)
          .filter(([, r]) => !r.ok)
          .map(([name]) => name);
        return reply.code(503).send({
          error: {
            code: report.state === 'running' ? 'health.not_ready' : `health.${report.state}`,
            message: report.state === 'running' ? `${failed.length} readiness check(s) failed` : `the server is ${report.state}`,
            details: config.exposeCheckDetails ? details : { state: report.state, failed: failed.length },
          },
        });
      });
    });
    // Runs before @mega/http closes the server (reverse dependency order): readiness is already 503.
    kernel.hooks.shutdown.tapPromise('@mega/health', async () => {
      const delay = config.drainDelayMs ?? 0;
      if (delay > 0) {
        kernel.log.info({ drainDelayMs: delay }, 'health: readiness is 503, draining before the server closes');
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    });
  },
});

/**
 * MegaError: every failure the framework reports carries a stable dotted code (`plugin.cycle`,
 * `asp.replay`), an HTTP status and optional details. Duplicated module instances (a plugin bundling
 * its own copy of the kernel, a test runner loading both source and dist) must still recognise each
 * other's errors, so identity is a global symbol brand, not `instanceof` alone.
 */
const BRAND = Symbol.for('mega.error');

export interface MegaErrorOptions {
  details?: unknown;
  cause?: unknown;
  status?: number;
}

/** Default HTTP status per code prefix; a subclass or an explicit option overrides it. */
const STATUS_BY_CODE: ReadonlyArray<readonly [RegExp, number]> = [
  [/^validation\./, 400],
  [/^(auth|asp)\./, 401],
  [/^forbidden|^csrf\./, 403],
  [/^(app\.not_found|app\.unknown_host|not_found)/, 404],
  [/^conflict/, 409],
  [/\.too_large$/, 413],
  [/^rate\./, 429],
  [/\.(unavailable|not_initialized)$/, 503],
  [/\.(timeout|request_timeout)$/, 504],
];

export function statusForCode(code: string): number {
  for (const [re, status] of STATUS_BY_CODE) if (re.test(code)) return status;
  return 500;
}

export class MegaError extends Error {
  readonly code: string;
  readonly status: number;
  readonly details: unknown;
  declare readonly [BRAND]: true;

  constructor(code: string, message: string, options: MegaErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.status = options.status ?? (new.target as typeof MegaError).defaultStatus ?? statusForCode(code);
    this.details = options.details;
    Object.defineProperty(this, BRAND, { value: true });
  }

  /** Subclasses fix a status for all their codes. */
  static defaultStatus: number | undefined = undefined;

  toJSON(): { code: string; message: string; details?: unknown } {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }
}

/** A MegaError subclass whose codes all answer with one HTTP status. */
const withStatus = (status: number) =>
  class extends MegaError {
    static override defaultStatus: number | undefined = status;
  };
export class ValidationError extends withStatus(400) {}
export class AuthError extends withStatus(401) {}
export class ForbiddenError extends withStatus(403) {}
export class NotFoundError extends withStatus(404) {}
export class ConflictError extends withStatus(409) {}
export class TooLargeError extends withStatus(413) {}
export class RateLimitError extends withStatus(429) {}
export class UnavailableError extends withStatus(503) {}
/** Configuration and plugin-contract failures: they stop boot, so the status only matters in tests. */
export class ConfigError extends withStatus(500) {}
export class PluginError extends withStatus(500) {
  readonly plugin: string | undefined;
  readonly hook: string | undefined;
  constructor(code: string, message: string, options: MegaErrorOptions & { plugin?: string; hook?: string } = {}) {
    super(code, message, options);
    this.plugin = options.plugin;
    this.hook = options.hook;
  }
}

export function isMegaError(value: unknown): value is MegaError {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[BRAND] === true;
}

/** Wraps anything thrown into a MegaError, keeping the original as `cause`. */
export function toMegaError(value: unknown, code = 'internal'): MegaError {
  if (isMegaError(value)) return value;
  const message = value instanceof Error ? value.message : String(value);
  return new MegaError(code, message, { cause: value });
}

/** Rejects with `error()` when `promise` has not settled within `ms` (0 or Infinity: no bound). The one timeout helper. */
export function within<T>(promise: Promise<T>, ms: number, error: () => Error): Promise<T> {
  if (!(ms > 0) || !Number.isFinite(ms)) return promise;
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(error()), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

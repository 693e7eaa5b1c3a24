/** Public API of @mega/kernel. */

export type { DbAdapter, DbRegistry, HealthCheck, LatencySnapshot, OpStatsSnapshot } from './adapters.js';
export { DB_DRIVERS, dbRegistry, OpStats, ownAliases, parseServiceUrl, pickAlias, redactUrl, within } from './adapters.js';
export type { App, AppBase, AppExtensions } from './apps.js';
export { getApp, listApps } from './apps.js';
export { subjectMatches } from './cli/primary-bus.js';
export type { CodecMode, LoadCodecOptions } from './codec/index.js';
export { CODEC_DEFAULTS, loadCodec } from './codec/index.js';
export type * from './codec/types.js';
export type { AppConfig, AppSecretSpec, LoadedApp, LoadedProject, MegaConfig, ServiceDeclaration } from './config.js';
export { defineAppConfig, defineConfig, findProjectDir, importModule, loadProject, resolveAppSecret } from './config.js';
export type { ContextContribution, MegaContext } from './context.js';
export type { MegaErrorOptions } from './errors.js';
export {
  AuthError,
  ConfigError,
  ConflictError,
  ForbiddenError,
  isMegaError,
  MegaError,
  NotFoundError,
  PluginError,
  RateLimitError,
  statusForCode,
  TooLargeError,
  toMegaError,
  UnavailableError,
  ValidationError,
} from './errors.js';
export type { HookName, JobEvent, MegaHooks, PresenceEvent, RouteDefinition, RouteOptions, ShutdownContext, WsFrame } from './hooks.js';
export type { KernelOptions, KernelState, LoadKernelOptions, MegaServices } from './kernel.js';
export { KERNEL_VERSION, Kernel, loadKernel } from './kernel.js';
export type { Logger, LoggerConfig } from './logger.js';
export { createLogger } from './logger.js';
export type { PluginDefinition, ProjectEditor } from './plugin.js';
export { definePlugin, importPlugin, isPluginDefinition, orderPlugins, packageVersion } from './plugin.js';

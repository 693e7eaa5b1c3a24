/** Public API of @mega/kernel. */
export { getApp, listApps } from './apps.js';
export type { App, AppBase, AppExtensions } from './apps.js';
export { defineAppConfig, defineConfig, findProjectDir, importModule, loadProject } from './config.js';
export type { AppConfig, LoadedApp, LoadedProject, MegaConfig, ServiceDeclaration } from './config.js';
export type { ContextContribution, MegaContext } from './context.js';
export {
  AuthError,
  ConfigError,
  ConflictError,
  ForbiddenError,
  MegaError,
  NotFoundError,
  PluginError,
  RateLimitError,
  TooLargeError,
  UnavailableError,
  ValidationError,
  isMegaError,
  statusForCode,
  toMegaError,
} from './errors.js';
export type { MegaErrorOptions } from './errors.js';
export type { HookName, JobEvent, MegaHooks, PresenceEvent, RouteDefinition, RouteOptions, ShutdownContext, WsFrame } from './hooks.js';
export { KERNEL_VERSION, Kernel, loadKernel } from './kernel.js';
export type { KernelOptions, KernelState, LoadKernelOptions, MegaServices } from './kernel.js';
export { createLogger } from './logger.js';
export type { Logger, LoggerConfig } from './logger.js';
export { definePlugin, importPlugin, isPluginDefinition, orderPlugins } from './plugin.js';
export type { PluginDefinition, ProjectEditor } from './plugin.js';

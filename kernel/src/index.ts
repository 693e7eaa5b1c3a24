/** Public API of @mega/kernel. */

export type { Codec, CodecMode, LoadCodecOptions } from '@mega/codec';
export { CODEC_DEFAULTS, loadCodec } from '@mega/codec';
export type * from '@mega/codec';
export type { Static, TObject, TSchema } from '@sinclair/typebox';
export { Type } from '@sinclair/typebox';
export type { App, AppBase, AppExtensions } from './apps.js';
export { getApp, listApps } from './apps.js';
export type { AppConfig, LoadedApp, LoadedProject, MegaConfig, ServiceDeclaration } from './config.js';
export { defineAppConfig, defineConfig, findProjectDir, importModule, loadDotEnv, loadProject } from './config.js';
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
  within,
} from './errors.js';
export type {
  HookFns,
  HookName,
  JobEvent,
  MegaHooks,
  PresenceEvent,
  RouteDefinition,
  RouteOptions,
  ShutdownContext,
  TapOptions,
  WsFrame,
} from './hooks.js';
export type { HealthEntry, KernelOptions, KernelState, LoadKernelOptions, MegaServices } from './kernel.js';
export { KERNEL_VERSION, Kernel, loadKernel, loadPlugins } from './kernel.js';
export type { Logger, LoggerConfig } from './logger.js';
export { createLogger } from './logger.js';
export type {
  AnyPlugin,
  CliCommand,
  CliIO,
  Generator,
  HealthCheck,
  PluginApi,
  PluginConfigSchemas,
  PluginDefinition,
  PrimaryHandler,
  PrimaryWorker,
  ProjectEditor,
} from './plugin.js';
export { definePlugin, importPlugin, isPluginDefinition, orderPlugins, packageVersion } from './plugin.js';
export type { SecretSpec } from './schema.js';
export { CoreAppConfig, CoreGlobalConfig, closest, Secret } from './schema.js';

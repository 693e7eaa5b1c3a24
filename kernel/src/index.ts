/** Public API of @mega/kernel. */

export type { AspOpener, AspRole, AspScope, AspSealer, Codec, CodecBackend, CodecMode, Deflater, FrameHeader, Inflater } from '@mega/codec';
export { CODEC_DEFAULTS, loadCodec } from '@mega/codec';
export type { Static, TObject, TSchema } from '@sinclair/typebox';
export type { App, AppBase, AppExtensions } from './apps.js';
export { getApp, listApps } from './apps.js';
export type { Progress, ProgressOptions, ServiceOptions } from './cli/service.js';
export { findProjectDir, formatError, runService, startProgress } from './cli/service.js';
export type { AppConfig, LoadedApp, LoadedProject, MegaConfig, ServiceDeclaration } from './config.js';
export { defineAppConfig, defineConfig, importModule, loadDotEnv, loadProject } from './config.js';
export type { ContextContribution, MegaContext } from './context.js';
export * from './errors.js';
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
export * from './logger.js';
export * from './plugin.js';
export type { CodeCache, SecretSpec } from './schema.js';
export { CoreAppConfig, CoreGlobalConfig, closest, codeCache, Secret } from './schema.js';
export { Type } from './typebox.js';

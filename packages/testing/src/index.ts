/**
 * @mega/testing: the test kit for Mega apps and plugins. Boot a project directory or a set of
 * plugins in process, send real HTTP requests, open WebSocket clients that speak the envelope,
 * wait for log lines, write throwaway projects. See README.md.
 */
export type { Booted, BootOptions, BootPluginsOptions, BootProjectOptions } from './boot.js';
export { bootPlugins, bootProject, buildPlugins, openWs, stopAll } from './boot.js';
export { exposedText } from './exposed.js';
export type { InjectInit, InjectResponse } from './http.js';
export { inject } from './http.js';
export type { LogCapture, LogLevel, LogLine, LogMatcher } from './logs.js';
export { captureLogs, LEVELS } from './logs.js';
export type { Loose } from './loose.js';
export type { WriteProjectOptions } from './project.js';
export { findNodeModules, writeProject } from './project.js';
export { waitUntil } from './wait.js';
export type { WsClose, WsMessage, WsOptions } from './ws.js';
export { WsClient, WsHandshakeError } from './ws.js';

/**
 * pino, pretty-printed in development. pino-pretty runs as an in-thread stream rather than a
 * transport worker: a worker thread adds ~40 ms to cold start and loses lines on hard exits.
 */
import { createRequire } from 'node:module';
import type { Logger as PinoLogger } from 'pino';
import { pino } from 'pino';

export type Logger = PinoLogger;

export interface LoggerConfig {
  level?: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** Pretty output; default: on when NODE_ENV is development and stdout is a terminal. */
  pretty?: boolean;
  /** Redacted paths (pino syntax). */
  redact?: string[];
}

export function createLogger(config: LoggerConfig = {}, env = process.env.NODE_ENV ?? 'development'): Logger {
  const level = config.level ?? (process.env.MEGA_LOG_LEVEL as LoggerConfig['level']) ?? (env === 'test' ? 'warn' : 'info');
  const pretty = config.pretty ?? (env === 'development' && process.stdout.isTTY === true);
  const options = {
    level,
    redact: config.redact ?? ['req.headers.cookie', 'req.headers.authorization'],
  };
  if (!pretty) return pino(options);
  const require = createRequire(import.meta.url);
  const pinoPretty = require('pino-pretty') as (opts: Record<string, unknown>) => NodeJS.WritableStream;
  return pino(options, pinoPretty({ sync: true, translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname' }));
}

/** Captured log lines: a pino logger whose JSON lines land in an array, and a wait for a matching line. */
import { Writable } from 'node:stream';
import type { Logger } from '@mega/kernel';
import { pino } from 'pino';

/** One pino line as an object: `level` (number), `msg`, `time`, plus whatever the call logged (`plugin`, `err`, ...). */
export interface LogLine {
  level: number;
  msg?: string;
  time?: number;
  plugin?: string;
  [field: string]: unknown;
}

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

/** A line filter: a predicate, or a string / RegExp matched against `msg`. */
export type LogMatcher = string | RegExp | ((line: LogLine) => boolean);

/** pino's numeric levels, for predicates such as `(l) => l.level >= LEVELS.warn`. */
export const LEVELS = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 } as const;

function toPredicate(match: LogMatcher): (line: LogLine) => boolean {
  if (typeof match === 'function') return match;
  if (typeof match === 'string') return (line) => typeof line.msg === 'string' && line.msg.includes(match);
  return (line) => typeof line.msg === 'string' && match.test(line.msg);
}

export interface LogCapture {
  /** The logger to hand to a kernel. */
  readonly logger: Logger;
  /** Every line logged so far, oldest first. */
  readonly lines: LogLine[];
  /** Lines matching `match`. */
  find(match: LogMatcher): LogLine[];
  /** The first line (already logged or still to come) matching `match`; rejects after `timeoutMs` (default 5 s). */
  waitFor(match: LogMatcher, timeoutMs?: number): Promise<LogLine>;
}

/**
 * A logger that writes nothing to the terminal and keeps every line at `level` (default `info`) and
 * above. `MEGA_TEST_LOG=1` (or a level name) also prints them to stderr, to see what a failing test logged.
 */
export function captureLogs(level: LogLevel = 'info'): LogCapture {
  const lines: LogLine[] = [];
  const waiters = new Set<{ pred: (line: LogLine) => boolean; done: (line: LogLine) => void }>();
  // MEGA_TEST_LOG=1 prints what is captured; MEGA_TEST_LOG=<level> also lowers the captured level to it.
  const echoSetting = process.env.MEGA_TEST_LOG;
  const echo = echoSetting !== undefined && echoSetting !== '' && echoSetting !== 'silent';
  const echoLevel = echo && echoSetting in LEVELS ? (echoSetting as keyof typeof LEVELS) : undefined;
  const captured = echoLevel && (level === 'silent' || LEVELS[echoLevel] < LEVELS[level]) ? echoLevel : level;
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const text of chunk.toString().split('\n')) {
        if (!text.trim()) continue;
        if (echo) process.stderr.write(`${text}\n`);
        const line = JSON.parse(text) as LogLine;
        lines.push(line);
        for (const w of waiters) {
          if (!w.pred(line)) continue;
          waiters.delete(w);
          w.done(line);
        }
      }
      callback();
    },
  });
  // pino writes to a Writable synchronously, so a line is in `lines` when the log call returns.
  const logger = pino({ level: captured }, stream);
  return {
    logger,
    lines,
    find: (match) => lines.filter(toPredicate(match)),
    waitFor(match, timeoutMs = 5000) {
      const pred = toPredicate(match);
      const found = lines.find(pred);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const waiter = {
          pred,
          done: (line: LogLine) => {
            clearTimeout(timer);
            resolve(line);
          },
        };
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          const last = lines.slice(-5).map((l) => l.msg);
          reject(new Error(`no log line matching ${String(match)} within ${timeoutMs} ms; last lines: ${JSON.stringify(last)}`));
        }, timeoutMs);
        waiters.add(waiter);
      });
    },
  };
}

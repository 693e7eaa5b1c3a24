/**
 * One progress line for long work (packing, npm install, builds): the step is announced, a line
 * with the elapsed time follows every `everyMs` while it runs, and the end says how long it took.
 * Plain lines rather than a redrawn spinner: they read the same in a terminal, a CI log and a pipe.
 */

export interface Progress {
  /** Ends the step: `<label>: done in 3.2 s` (plus `note`). */
  done(note?: string): void;
  /** Ends the step without a success line (the caller prints the failure). */
  fail(): void;
}

export interface ProgressOptions {
  /** Interval of the "still working" lines (default 10 s; 0 turns them off). */
  everyMs?: number;
  /** What a "still working" line adds after the elapsed time, e.g. what takes long. */
  hint?: string;
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;

export function startProgress(say: (line: string) => void, label: string, options: ProgressOptions = {}): Progress {
  const started = performance.now();
  const everyMs = options.everyMs ?? 10_000;
  say(`${label} ...`);
  const timer =
    everyMs > 0
      ? setInterval(
          () => say(`  ... ${label}: ${seconds(performance.now() - started)}${options.hint ? ` (${options.hint})` : ''}`),
          everyMs,
        )
      : undefined;
  // A progress line never keeps the process alive.
  timer?.unref();
  let ended = false;
  const end = () => {
    if (timer) clearInterval(timer);
    const first = !ended;
    ended = true;
    return first;
  };
  return {
    done(note) {
      if (end()) say(`${label}: done in ${seconds(performance.now() - started)}${note ? ` (${note})` : ''}`);
    },
    fail() {
      end();
    },
  };
}

import { afterEach, describe, expect, it, vi } from 'vitest';
import { startProgress } from '../src/cli/progress.js';

afterEach(() => {
  vi.useRealTimers();
});

describe('progress lines for long work', () => {
  it('announces the step, prints the elapsed time while it runs, and the total once', () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'performance'] });
    const lines: string[] = [];
    const step = startProgress((l) => lines.push(l), 'Running npm install', { hint: 'downloads' });
    expect(lines).toEqual(['Running npm install ...']);
    vi.advanceTimersByTime(25_000);
    expect(lines.slice(1)).toEqual(['  ... Running npm install: 10 s (downloads)', '  ... Running npm install: 20 s (downloads)']);
    step.done('148 packages');
    step.done();
    expect(lines.at(-1)).toBe('Running npm install: done in 25 s (148 packages)');
    expect(lines).toHaveLength(4);
    vi.advanceTimersByTime(60_000);
    expect(lines).toHaveLength(4);
  });

  it('ends quietly on failure (the caller says what failed), and can tick at another pace or not at all', () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'performance'] });
    const lines: string[] = [];
    const failed = startProgress((l) => lines.push(l), 'Packing', { everyMs: 1000 });
    vi.advanceTimersByTime(1500);
    failed.fail();
    vi.advanceTimersByTime(5000);
    expect(lines).toEqual(['Packing ...', '  ... Packing: 1.0 s']);
    const quiet: string[] = [];
    startProgress((l) => quiet.push(l), 'Quick', { everyMs: 0 }).done();
    expect(quiet).toEqual(['Quick ...', 'Quick: done in 0.0 s']);
  });
});

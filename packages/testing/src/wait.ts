/**
 * Polls `fn` until it returns something other than `undefined` or `false`, and resolves with it;
 * rejects naming `what` after `timeoutMs`. For conditions no event announces (a file written by
 * another process, a counter in Redis): assertions wait for the condition, never for a fixed time.
 */
export async function waitUntil<T>(
  fn: () => T | undefined | false | Promise<T | undefined | false>,
  options: { timeoutMs?: number; what?: string; intervalMs?: number } = {},
): Promise<T> {
  const end = Date.now() + (options.timeoutMs ?? 10_000);
  for (;;) {
    const value = await fn();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${options.what ?? 'a condition'}`);
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 10));
  }
}

/**
 * Everything a secret could leak through, as one string, for `expect(exposedText(err, logs)).not
 * .toContain(password)`: each error's message, stack, details and `cause` chain, and every log line.
 */
export function exposedText(...sources: unknown[]): string {
  const parts: string[] = [];
  const seen = new Set<unknown>();
  const visit = (value: unknown): void => {
    if (value === undefined || value === null || seen.has(value)) return;
    seen.add(value);
    if (value instanceof Error) {
      const { details } = value as Error & { details?: unknown };
      parts.push(value.message, value.stack ?? '', safeJson(details));
      visit(value.cause);
    } else if (typeof value === 'string') parts.push(value);
    else parts.push(safeJson(value));
  };
  for (const source of sources) visit(source);
  return parts.join('\n');
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value) ?? '';
  } catch {
    return String(value);
  }
}

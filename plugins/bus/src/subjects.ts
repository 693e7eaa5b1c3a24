/** NATS-style subjects: dot-separated tokens; `*` matches one token, `>` (last) one or more. */
import { MegaError } from '@mega/kernel';

const TOKEN = /^[^\s.*>]+$/;

/** Throws `bus.invalid_event` for an empty name, empty tokens, whitespace or misplaced wildcards. */
export function checkSubject(subject: string, wildcards: boolean): void {
  const tokens = subject.split('.');
  const ok =
    subject.length > 0 && tokens.every((t, i) => TOKEN.test(t) || (wildcards && (t === '*' || (t === '>' && i === tokens.length - 1))));
  if (!ok) {
    throw new MegaError(
      'bus.invalid_event',
      `invalid event name "${subject}": dot-separated words without spaces${wildcards ? '; * matches one word, > (last) the rest' : ', no wildcards'}`,
      { details: { event: subject } },
    );
  }
}

export const hasWildcard = (pattern: string): boolean => pattern.includes('*') || pattern.includes('>');

/** Does `subject` match `pattern`? Used by the memory driver and by the cluster primary's relay. */
export function matches(pattern: string, subject: string): boolean {
  if (!hasWildcard(pattern)) return pattern === subject;
  const p = pattern.split('.');
  const s = subject.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return s.length > i;
    if (i >= s.length || (p[i] !== '*' && p[i] !== s[i])) return false;
  }
  return p.length === s.length;
}

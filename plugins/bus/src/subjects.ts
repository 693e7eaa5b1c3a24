/** NATS-style subjects: dot-separated tokens; `*` matches one token, `>` (last) one or more. */
import { MegaError, subjectMatches } from '@mega/kernel';

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

/** Does `subject` match `pattern`? The kernel's matcher, the one the cluster primary relays with. */
export const matches = subjectMatches;

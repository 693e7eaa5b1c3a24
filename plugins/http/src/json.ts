/**
 * The JSON body parser of @mega/http, shared with other plugins that open bodies themselves
 * (@mega/asp's sealed JSON): one depth limit and one prototype-poisoning guard for every JSON body.
 */
import { MegaError } from '@mega/kernel';
import secureJson from 'secure-json-parse';

/** Default `http.maxJsonDepth`: deeper than any API body; far below what JSON.stringify or a recursive walk overflows on. */
export const DEFAULT_MAX_JSON_DEPTH = 64;

const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACE = 0x7d;
const CLOSE_BRACKET = 0x5d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * True when `text` nests objects/arrays deeper than `max` (brackets inside strings do not count).
 * Text no longer than `max` cannot be deeper, so short bodies skip the scan; the scan is one pass
 * of charCodeAt (~0.1 ms for 100 KB, about a fifth of JSON.parse on the same text).
 */
export function tooDeep(text: string, max: number): boolean {
  if (text.length <= max) return false;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) inString = true;
    else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (++depth > max) return true;
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) depth--;
  }
  return false;
}

/**
 * Parses a JSON body: empty or malformed text and `__proto__` / `constructor.prototype` keys are
 * 400 `http.invalid_json`, nesting deeper than `maxDepth` is 400 `http.too_deep` (checked before
 * parsing, so nothing downstream walks an unbounded structure).
 */
export function parseJson(text: string, maxDepth: number = DEFAULT_MAX_JSON_DEPTH): unknown {
  if (text.length === 0) throw new MegaError('http.invalid_json', 'the JSON body is empty', { status: 400 });
  if (tooDeep(text, maxDepth)) {
    throw new MegaError('http.too_deep', `the JSON body nests deeper than ${maxDepth} levels`, { status: 400, details: { maxDepth } });
  }
  try {
    return secureJson.parse(text, undefined, { protoAction: 'error', constructorAction: 'error' });
  } catch (error) {
    const poisoned = /forbidden prototype property/.test((error as Error).message);
    throw new MegaError(
      'http.invalid_json',
      poisoned ? 'the JSON body sets a forbidden prototype property' : 'the body is not valid JSON',
      {
        status: 400,
      },
    );
  }
}

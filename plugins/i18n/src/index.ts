/**
 * @mega/i18n: server-side translations per app from `apps/<app>/locales/server/<locale>.json`
 * (nested objects become dotted keys). `ctx.locale` is negotiated once per request: `?lang=`, then
 * the `lang` cookie, then `Accept-Language` (q-ordered; exact tag, then its language, then a sibling
 * region), then the default locale. `ctx.t(key, vars)` looks the key up in that locale, then its
 * base language, then the default locale, and finally returns the key itself; `{name}` placeholders
 * are replaced from `vars`. A numeric `vars.count` picks a plural form (`key.zero`, the locale's CLDR
 * category such as `key.one` / `key.few`, then `key.other`) before the plain key.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { ConfigInput, MegaContext, Static } from '@mega/kernel';
import { definePlugin, MegaError, packageVersion, Type } from '@mega/kernel';
import { parseCookie } from 'cookie';

/** The app key `i18n` of apps/<name>/app.config.ts: the one source of its type and defaults. */
export const I18nAppConfig = Type.Object({
  i18n: Type.Object(
    {
      defaultLocale: Type.String({ minLength: 2, default: 'en' }),
      /** Query parameter that picks a locale (`?lang=ko`); empty string turns it off. */
      queryParam: Type.String({ default: 'lang' }),
      /** Cookie that picks a locale; empty string turns it off. */
      cookieName: Type.String({ default: 'lang' }),
    },
    { additionalProperties: false, default: {} },
  ),
});

export type I18nConfig = Static<typeof I18nAppConfig>['i18n'];

export type Translate = (key: string, vars?: Record<string, unknown>) => string;

declare module '@mega/kernel' {
  /** This plugin's keys of app.config.ts (see the README's config table). */
  interface AppConfig {
    i18n?: ConfigInput<typeof I18nAppConfig>['i18n'];
  }
  interface MegaContext {
    /** The negotiated locale of this request. */
    readonly locale: string;
    /** Translates `key` in the request's locale (with fallback) and fills `{placeholders}` from vars. */
    readonly t: Translate;
  }
}

type Dictionary = Map<string, string>;

function flatten(value: unknown, prefix: string, into: Dictionary): void {
  if (value && typeof value === 'object' && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) flatten(v, prefix ? `${prefix}.${k}` : k, into);
  } else if (prefix) into.set(prefix, String(value));
}

const LANGUAGE_TAG = /^[a-z]{1,8}(?:-[a-z0-9]{1,8})*$/;
const normalize = (tag: string): string => tag.trim().replace(/_/g, '-').toLowerCase();

/** Accept-Language as tags ordered by q (stable for equal q), without `*` and q=0. */
export function parseAcceptLanguage(header: string | undefined): string[] {
  if (!header) return [];
  return header
    .split(',')
    .slice(0, 20)
    .map((part, index) => {
      const [tag = '', ...params] = part.split(';');
      const q = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
      return { tag: normalize(tag), q: q ? Number(q.slice(2)) : 1, index };
    })
    .filter((e) => LANGUAGE_TAG.test(e.tag) && e.q > 0 && Number.isFinite(e.q))
    .sort((a, b) => b.q - a.q || a.index - b.index)
    .map((e) => e.tag);
}

export class Catalog {
  readonly #dicts = new Map<string, Dictionary>();
  /** Locale tags as written in file names, keyed by normalized tag. */
  readonly #names = new Map<string, string>();
  constructor(readonly defaultLocale: string) {}

  add(locale: string, messages: unknown): void {
    const dict = new Map<string, string>();
    flatten(messages, '', dict);
    this.#dicts.set(normalize(locale), dict);
    this.#names.set(normalize(locale), locale);
  }

  get locales(): string[] {
    return [...this.#names.values()];
  }

  /** The best available locale for the candidate tags, or the default. */
  negotiate(candidates: readonly string[]): string {
    for (const tag of candidates) {
      const n = normalize(tag);
      if (this.#names.has(n)) return this.#names.get(n) as string;
      const base = n.split('-')[0] as string;
      if (this.#names.has(base)) return this.#names.get(base) as string;
      for (const [key, name] of this.#names) if (key.split('-')[0] === base) return name;
    }
    return this.defaultLocale;
  }

  translate(locale: string, key: string, vars?: Record<string, unknown>): string {
    const n = normalize(locale);
    const chain = [n, n.split('-')[0] as string, normalize(this.defaultLocale)];
    const count = vars?.count;
    let message: string | undefined;
    if (typeof count === 'number' && Number.isFinite(count)) {
      // Plural forms are sub-keys: `zero` (an explicit 0, any language), then the CLDR category of
      // the locale whose dictionary has the key (one, two, few, many), then `other`.
      for (const tag of chain) {
        const dict = this.#dicts.get(tag);
        if (!dict) continue;
        message =
          (count === 0 ? dict.get(`${key}.zero`) : undefined) ?? dict.get(`${key}.${this.#plural(tag, count)}`) ?? dict.get(`${key}.other`);
        if (message !== undefined) break;
      }
    }
    message ??=
      this.#dicts.get(chain[0] as string)?.get(key) ??
      this.#dicts.get(chain[1] as string)?.get(key) ??
      this.#dicts.get(chain[2] as string)?.get(key);
    if (message === undefined) return key;
    if (!vars) return message;
    return message.replace(/\{\{?\s*([\w.]+)\s*\}?\}/g, (all, name: string) => (name in vars ? String(vars[name]) : all));
  }

  readonly #rules = new Map<string, Intl.PluralRules>();
  #plural(tag: string, count: number): string {
    let rules = this.#rules.get(tag);
    if (!rules) {
      try {
        rules = new Intl.PluralRules(tag);
      } catch {
        rules = new Intl.PluralRules('en'); // a file name that is not a valid BCP 47 tag
      }
      this.#rules.set(tag, rules);
    }
    return rules.select(count);
  }
}

/** Loads `<dir>/*.json` into a catalog; a broken file fails boot with its name. */
export function loadCatalog(dir: string, defaultLocale: string): Catalog {
  const catalog = new Catalog(defaultLocale);
  if (!existsSync(dir)) return catalog;
  for (const file of readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()) {
    const path = join(dir, file);
    try {
      catalog.add(basename(file, '.json'), JSON.parse(readFileSync(path, 'utf8')));
    } catch (error) {
      throw new MegaError('i18n.locale_invalid', `cannot read locale file ${path}: ${(error as Error).message}`, { cause: error });
    }
  }
  return catalog;
}

export default definePlugin({
  name: '@mega/i18n',
  version: packageVersion(new URL('../package.json', import.meta.url)),
  kernel: '^0.2.0',
  config: { app: I18nAppConfig },
  setup(api) {
    const catalogs = new Map<string, { catalog: Catalog; config: I18nConfig }>();
    for (const app of api.kernel.apps) {
      const config = api.appConfig(app).i18n;
      const catalog = loadCatalog(join(app.dir, 'locales', 'server'), config.defaultLocale);
      catalogs.set(app.name, { catalog, config });
      api.log.debug({ app: app.name, locales: catalog.locales }, 'i18n: locales loaded');
    }
    // Every app has an entry (built above from kernel.apps, the only apps a ctx can belong to).
    const entryOf = (ctx: MegaContext) => catalogs.get(ctx.app.name) as { catalog: Catalog; config: I18nConfig };
    api.contributeCtx('locale', (ctx) => {
      const { catalog, config } = entryOf(ctx);
      const req = ctx.source as { headers?: Record<string, string | string[] | undefined>; query?: Record<string, unknown> } | undefined;
      const candidates: string[] = [];
      const fromQuery = config.queryParam ? req?.query?.[config.queryParam] : undefined;
      if (typeof fromQuery === 'string') candidates.push(fromQuery);
      const cookie = req?.headers?.cookie;
      if (config.cookieName && typeof cookie === 'string') {
        const fromCookie = parseCookie(cookie)[config.cookieName];
        if (fromCookie) candidates.push(fromCookie);
      }
      const accept = req?.headers?.['accept-language'];
      candidates.push(...parseAcceptLanguage(typeof accept === 'string' ? accept : undefined));
      return catalog.negotiate(candidates);
    });
    api.contributeCtx('t', (ctx): Translate => {
      const { catalog } = entryOf(ctx);
      return (key, vars) => catalog.translate(ctx.locale, key, vars);
    });
  },
});

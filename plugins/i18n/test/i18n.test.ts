import { type BootProjectOptions, bootProject, stopAll, writeProject } from '@mega/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { Catalog, parseAcceptLanguage } from '../src/index.js';

/** Writes a project whose mega.config.ts exports `config` (TS source) and boots it with the test kit. */
const boot = (
  files: Record<string, string>,
  { config = "{ plugins: ['@mega/http'] }", ...options }: BootProjectOptions & { config?: string } = {},
) => bootProject(writeProject({ 'mega.config.ts': `export default ${config};\n`, ...files }, { prefix: 'mega-http-' }), options);

afterEach(stopAll);

describe('@mega/i18n', () => {
  it('parses Accept-Language by q and order', () => {
    expect(parseAcceptLanguage('fr-CH, fr;q=0.9, en;q=0.8, de;q=0.7, *;q=0.5')).toEqual(['fr-ch', 'fr', 'en', 'de']);
    expect(parseAcceptLanguage('en;q=0, ko;q=0.4, ja')).toEqual(['ja', 'ko']);
    expect(parseAcceptLanguage(undefined)).toEqual([]);
    expect(parseAcceptLanguage(';;;,,q=x')).toEqual([]);
  });

  it('negotiates exact, base language and sibling regions, then falls back', () => {
    const c = new Catalog('en');
    c.add('en', { hi: 'Hello {name}', only: { en: 'English only' } });
    c.add('pt-BR', { hi: 'Olá {name}' });
    c.add('ko', { hi: '안녕하세요 {{ name }}' });
    expect(c.negotiate(['pt-br'])).toBe('pt-BR');
    expect(c.negotiate(['pt-PT'])).toBe('pt-BR');
    expect(c.negotiate(['ko-KR'])).toBe('ko');
    expect(c.negotiate(['xx', 'ko'])).toBe('ko');
    expect(c.negotiate(['xx'])).toBe('en');
    expect(c.translate('ko', 'hi', { name: '민수' })).toBe('안녕하세요 민수');
    expect(c.translate('ko', 'only.en')).toBe('English only');
    expect(c.translate('ko', 'missing.key')).toBe('missing.key');
    expect(c.translate('en', 'hi', {})).toBe('Hello {name}');
  });

  it('picks plural forms by the CLDR category of the locale that has the key, with zero and other', () => {
    const c = new Catalog('en');
    c.add('en', { items: { zero: 'no items', one: '{count} item', other: '{count} items' }, plain: 'just {count}' });
    c.add('pl', { files: { one: '{count} plik', few: '{count} pliki', many: '{count} plików', other: '{count} pliku' } });
    c.add('ko', { items: { other: '항목 {count}개' } });
    c.add('x-bad_tag', { items: { one: 'one', other: 'many' } });
    expect([0, 1, 2].map((count) => c.translate('en', 'items', { count }))).toEqual(['no items', '1 item', '2 items']);
    expect([1, 3, 5, 22, 1.5].map((count) => c.translate('pl', 'files', { count }))).toEqual([
      '1 plik',
      '3 pliki',
      '5 plików',
      '22 pliki',
      '1.5 pliku',
    ]);
    // Korean has only "other"; no "zero" key there, so 0 is "other" too (not the English fallback).
    expect(c.translate('ko', 'items', { count: 0 })).toBe('항목 0개');
    // A locale without the key falls back to the default locale's forms, with its rules.
    expect(c.translate('pl', 'items', { count: 1 })).toBe('1 item');
    expect(c.translate('en', 'plain', { count: 3 })).toBe('just 3');
    expect(c.translate('en', 'items', { count: Number.NaN })).toBe('items');
    expect(c.translate('en', 'items', { count: '2' })).toBe('items');
    expect(c.translate('x-bad_tag', 'items', { count: 1 })).toBe('one');
  });

  it('gives each request ctx.t and ctx.locale from ?lang, the lang cookie or Accept-Language', async () => {
    const { inject } = await boot(
      {
        'apps/web/app.config.ts': `export default { i18n: { defaultLocale: 'en' } };`,
        'apps/web/locales/server/en.json': JSON.stringify({ greet: 'Hello, {name}!' }),
        'apps/web/locales/server/ko.json': JSON.stringify({ greet: '안녕, {name}!' }),
        'apps/web/routes/r.ts': `export default (r: any) => { r.http.get('/', async (_q: any, _p: any, ctx: any) => ({ locale: ctx.locale, text: ctx.t('greet', { name: 'Mega' }) })); };`,
      },
      { config: `{ plugins: ['@mega/http', '@mega/i18n'], server: { port: 0, host: '127.0.0.1' } }` },
    );
    expect((await inject('/', { headers: { 'accept-language': 'ko-KR,ko;q=0.9' } })).json).toEqual({
      data: { locale: 'ko', text: '안녕, Mega!' },
    });
    expect((await inject('/', { headers: { 'accept-language': 'de' } })).json).toEqual({ data: { locale: 'en', text: 'Hello, Mega!' } });
    expect((await inject('/?lang=ko', { headers: { 'accept-language': 'en' } })).json?.data).toMatchObject({ locale: 'ko' });
    expect((await inject('/', { headers: { cookie: 'lang=ko', 'accept-language': 'en' } })).json?.data).toMatchObject({ locale: 'ko' });
    expect((await inject('/', { headers: { 'accept-language': 'garbage!!;q=abc, ;;, ko;q=nope' } })).json?.data).toMatchObject({
      locale: 'en',
    });
  });

  it('fails boot on a broken locale file, naming it', async () => {
    await expect(
      boot(
        { 'apps/web/app.config.ts': 'export default {};', 'apps/web/locales/server/en.json': '{ nope' },
        { config: `{ plugins: ['@mega/http', '@mega/i18n'], server: { port: 0, host: '127.0.0.1' } }` },
      ),
    ).rejects.toMatchObject({ code: 'i18n.locale_invalid', message: expect.stringContaining('en.json') });
  });
});

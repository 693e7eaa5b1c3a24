import { afterEach, describe, expect, it } from 'vitest';
import { boot, stopAll } from '../../../scripts/test/http-kernel.js';
import { Catalog, parseAcceptLanguage } from '../src/index.js';

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

  it('gives each request ctx.t and ctx.locale from ?lang, the lang cookie or Accept-Language', async () => {
    const { call } = await boot(
      {
        'apps/web/app.config.ts': `export default { i18n: { defaultLocale: 'en' } };`,
        'apps/web/locales/server/en.json': JSON.stringify({ greet: 'Hello, {name}!' }),
        'apps/web/locales/server/ko.json': JSON.stringify({ greet: '안녕, {name}!' }),
        'apps/web/routes/r.ts': `export default (r: any) => { r.http.get('/', async (_q: any, _p: any, ctx: any) => ({ locale: ctx.locale, text: ctx.t('greet', { name: 'Mega' }) })); };`,
      },
      { config: `{ plugins: ['@mega/http', '@mega/i18n'], server: { port: 0, host: '127.0.0.1' } }` },
    );
    expect((await call('/', { headers: { 'accept-language': 'ko-KR,ko;q=0.9' } })).json).toEqual({
      data: { locale: 'ko', text: '안녕, Mega!' },
    });
    expect((await call('/', { headers: { 'accept-language': 'de' } })).json).toEqual({ data: { locale: 'en', text: 'Hello, Mega!' } });
    expect((await call('/?lang=ko', { headers: { 'accept-language': 'en' } })).json?.data).toMatchObject({ locale: 'ko' });
    expect((await call('/', { headers: { cookie: 'lang=ko', 'accept-language': 'en' } })).json?.data).toMatchObject({ locale: 'ko' });
    expect((await call('/', { headers: { 'accept-language': 'garbage!!;q=abc, ;;, ko;q=nope' } })).json?.data).toMatchObject({
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

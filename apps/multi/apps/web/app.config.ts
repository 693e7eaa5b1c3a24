// The public site. Browsers resolve *.localhost to 127.0.0.1: open http://web.localhost:3200/.
import { defineAppConfig } from '@mega/kernel';

export default defineAppConfig({
  hosts: ['web.localhost', 'localhost'],
  security: {
    // A partner front end may call the JSON API cross-origin.
    cors: { origin: ['https://partner.example'], credentials: false },
    secret: process.env.WEB_SECURITY_SECRET,
  },
  session: {
    cookieName: 'web_sid',
    ttlMs: 7 * 24 * 3600 * 1000,
    secret: process.env.WEB_SESSION_SECRET,
  },
  i18n: { defaultLocale: 'en' },
  views: { layout: 'layouts/main' },
});

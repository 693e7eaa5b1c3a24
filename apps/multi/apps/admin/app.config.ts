// The back office: same process and port, its own host, stricter settings.
import { defineAppConfig } from '@mega/kernel';

export default defineAppConfig({
  hosts: ['admin.localhost'],
  security: {
    rateLimit: { max: 120, windowMs: 60_000 },
    secret: process.env.ADMIN_SECURITY_SECRET,
  },
  session: {
    cookieName: 'admin_sid',
    ttlMs: 30 * 60 * 1000,
    cookie: { sameSite: 'strict' },
    secret: process.env.ADMIN_SESSION_SECRET,
  },
  i18n: { defaultLocale: 'ko' },
  views: { layout: 'layouts/admin' },
});

import { defineAppConfig } from '@mega/kernel';

const redis = Boolean(process.env.CRUD_REDIS_URL);

// No hosts: this app answers on any Host header. Secrets come from the environment (.env); in
// development each plugin falls back to a random one and says so.
export default defineAppConfig({
  session: { cookieName: 'crud_sid', ...(redis ? { store: { driver: 'redis' as const } } : {}) },
  // JSON API clients (curl, scripts) send no Origin header; browsers always do on cross-site writes.
  security: { csrf: { allowMissingOrigin: true } },
  // /ws/chat is an encrypted namespace: every frame both ways is E: + base64url(sealed).
  asp: { websocket: { namespaces: ['/ws/chat'] } },
  // One schedule run per tick across every process of the app when Redis holds the lock.
  ...(redis ? { lock: { service: 'default' } } : {}),
});

/**
 * URLs of the real services the integration suite talks to. `npm test` exports them from
 * `scripts/services.sh env`; run standalone, this asks the script itself. A missing service is a
 * test failure, never a skip.
 */
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface ServiceEnv {
  DATABASE_URL: string;
  REDIS_URL: string;
  NATS_URL: string;
  MONGO_URL: string;
  MARIADB_URL: string;
}

const KEYS = ['DATABASE_URL', 'REDIS_URL', 'NATS_URL', 'MONGO_URL', 'MARIADB_URL'] as const;

export function serviceEnv(): ServiceEnv {
  const env: Partial<ServiceEnv> = {};
  for (const k of KEYS) if (process.env[k]) env[k] = process.env[k];
  if (KEYS.every((k) => env[k])) return env as ServiceEnv;
  const script = join(dirname(fileURLToPath(import.meta.url)), '..', 'services.sh');
  const out = execFileSync('bash', [script, 'env'], { encoding: 'utf8' });
  for (const line of out.split('\n')) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line.trim());
    if (m && (KEYS as readonly string[]).includes(m[1] as string)) env[m[1] as keyof ServiceEnv] = m[2] as string;
  }
  for (const k of KEYS) if (!env[k]) throw new Error(`${k} is not set and scripts/services.sh env did not print it`);
  return env as ServiceEnv;
}

/** Restarts one of the real services mid-test (`scripts/services.sh restart <svc>`). */
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const SCRIPT = join(dirname(fileURLToPath(import.meta.url)), '..', 'services.sh');

export async function restartService(service: 'redis' | 'nats' | 'postgres' | 'mongo' | 'mariadb'): Promise<void> {
  await promisify(execFile)('bash', [SCRIPT, 'restart', service], { timeout: 120_000 });
}

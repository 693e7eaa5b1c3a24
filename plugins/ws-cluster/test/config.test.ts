/** ws-cluster without the NATS owner: boot stops before any setup, naming the plugin to add. */
import { createLogger, loadKernel } from '@mega/kernel';
import { expect, it } from 'vitest';
import { chatProject } from '../../../scripts/test/chat-cluster.js';

it('needs @mega/bus, and says how to add it', async () => {
  const dir = chatProject({ plugins: ['@mega/http', '@mega/ws', '@mega/ws-presence', '@mega/ws-cluster'] });
  const kernel = await loadKernel({ dir, logger: createLogger({ level: 'silent' }) });
  const error = await kernel.start().then(
    () => undefined,
    (e: unknown) => e as Error & { code?: string },
  );
  expect(error?.code).toBe('plugin.missing_dependency');
  expect(error?.message).toContain('run: mega plugin add @mega/bus');
});

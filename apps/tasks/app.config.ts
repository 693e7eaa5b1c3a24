import { defineAppConfig } from '@mega/kernel';

// No hosts: this app answers on any Host header. The prime-count pool: 2 threads at most (cores − 1
// by default), 50 tasks waiting at most, 20 s per task.
export default defineAppConfig({
  workers: { size: 2, queue: 50, timeoutMs: 20_000 },
});

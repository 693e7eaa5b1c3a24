// The CPU task, run on a worker thread: ctx.workers.primes.run({ limit }) counts the primes <= limit
// (sieve of Eratosthenes). `@mega/workers/define` imports nothing, so the thread stays light.
import { defineWorker } from '@mega/workers/define';

export default defineWorker({
  run({ limit }: { limit: number }): number {
    const composite = new Uint8Array(limit + 1);
    let count = 0;
    for (let n = 2; n <= limit; n++) {
      if (composite[n]) continue;
      count++;
      for (let m = n * n; m <= limit; m += n) composite[m] = 1;
    }
    return count;
  },
});

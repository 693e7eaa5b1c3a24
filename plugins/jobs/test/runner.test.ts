/** The shared runner with a stubbed store: a DLQ publish that keeps failing never acks the job. */
import { bootPlugins, stopAll } from '@mega/testing';
import { afterEach, expect, it } from 'vitest';
import jobs, { defineJob, type JobEventData, type JobEventName, toSpec } from '../src/index.js';
import { type RunnerHost, startDelivery } from '../src/runner.js';

afterEach(stopAll);

async function host(maxDeliver: number, publishDlq: RunnerHost['publishDlq']) {
  const { kernel } = await bootPlugins({ plugins: [jobs] });
  const events: Array<[JobEventName, JobEventData]> = [];
  const h: RunnerHost = {
    app: kernel.apps[0] as RunnerHost['app'],
    kernel,
    log: kernel.log,
    maxDeliver,
    ackWaitMs: 30_000,
    dlqSubject: () => 'X.app.Job.dlq',
    emit: (e, d) => void events.push([e, d]),
    publishDlq,
  };
  return { h, events };
}

const failing = toSpec(defineJob({ name: 'Job', retries: 0, run: () => Promise.reject(new Error('nope')) }), { timeoutMs: 0 });

function delivery(deliveryCount: number) {
  const settled: string[] = [];
  return {
    settled,
    d: {
      subject: 'X.app.Job',
      data: '{}',
      deliveryCount,
      id: 'j1',
      group: undefined,
      ack: () => void settled.push('ack'),
      nak: (ms: number) => void settled.push(`nak:${ms}`),
      working: () => undefined,
    },
  };
}

it('DLQ publish failing after 2 retries: nak with a delay (never ack), fail event with phase dlq-publish', async () => {
  let tries = 0;
  const { h, events } = await host(5, async () => {
    tries++;
    throw new Error('store down');
  });
  const { d, settled } = delivery(1);
  await startDelivery(h, failing, d).done;
  expect(tries).toBe(3);
  expect(settled).toEqual(['nak:1000']);
  expect(events.map(([e, x]) => `${e}:${x.phase ?? ''}`)).toEqual(['start:', 'fail:dlq-publish']);
});

it('on the last delivery a failing DLQ publish leaves the message unacknowledged (kept in the stream)', async () => {
  const { h, events } = await host(2, async () => {
    throw new Error('store down');
  });
  const { d, settled } = delivery(2);
  await startDelivery(h, failing, d).done;
  expect(settled).toEqual([]);
  expect(events.at(-1)?.[1].phase).toBe('dlq-publish');
});

it('a DLQ publish that succeeds on a retry acks, then reports fail and dlq', async () => {
  let tries = 0;
  const { h, events } = await host(5, async () => {
    if (++tries < 2) throw new Error('blip');
  });
  const { d, settled } = delivery(1);
  await startDelivery(h, failing, d).done;
  expect(settled).toEqual(['ack']);
  expect(events.map(([e, x]) => `${e}:${x.phase ?? ''}`)).toEqual(['start:', 'fail:run', 'dlq:run']);
});

/**
 * The OTLP/HTTP sender, in a worker thread of its own (one per process, shared by its kernels).
 * Measured why (README, Cost): the export's HTTP client (ClientRequest, the response parser, the
 * body stream) runs through the same Node internals as the app's server responses, and sharing
 * them with it made every request of the app slower (~5% at sampling 0.01, with one export a
 * second), a cost that does not depend on how many spans are sent. Here it only touches this
 * thread's code; the batch arrives as a transferred buffer (no copy).
 *
 * Messages: `open` (an exporter's settings, by id), `send` (one encoded batch; answered with `done`),
 * `close`.
 */
import { parentPort } from 'node:worker_threads';
import { ExportResultCode } from '@opentelemetry/core';
import { convertLegacyHttpOptions, createOtlpHttpExportDelegate } from '@opentelemetry/otlp-exporter-base/node-http';

export interface SenderOptions {
  url: string;
  headers: Record<string, string>;
  timeoutMillis: number;
}
export type ToWorker =
  | { type: 'open'; id: number; options: SenderOptions }
  | { type: 'send'; id: number; seq: number; body: Uint8Array; count: number }
  | { type: 'close'; id: number };
export interface FromWorker {
  seq: number;
  ok: boolean;
  error?: string;
  /** The batch's memory, handed back after a successful export for the next batch to reuse. */
  buffer?: ArrayBuffer;
}

interface Batch {
  body: Uint8Array;
  count: number;
}

/** The body is sent as it is; the receiver's answer is parsed as the SDK's JSON serializer does. */
const PASS_THROUGH = {
  serializeRequest: (batch: Batch): Uint8Array => batch.body,
  deserializeResponse: (data: Uint8Array): unknown => {
    if (data.length === 0) return {};
    try {
      return JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8'));
    } catch {
      return {};
    }
  },
};

/** The OpenTelemetry HTTP export delegate, as the SDK's `OTLPTraceExporter` builds it, with the pass-through serializer. */
function delegate(options: SenderOptions) {
  return createOtlpHttpExportDelegate(
    convertLegacyHttpOptions(options, 'TRACES', 'v1/traces', { 'Content-Type': 'application/json' }),
    PASS_THROUGH,
    'otlp_http_span_exporter',
    { name: 'span', countItems: (batch: Batch) => batch.count },
    undefined,
  );
}

const port = parentPort;
if (port) {
  const senders = new Map<number, ReturnType<typeof delegate>>();
  port.on('message', (m: ToWorker) => {
    if (m.type === 'open') senders.set(m.id, delegate(m.options));
    else if (m.type === 'close') {
      void senders.get(m.id)?.shutdown();
      senders.delete(m.id);
    } else {
      const sender = senders.get(m.id);
      const answer = (reply: FromWorker) => port.postMessage(reply);
      if (sender === undefined) answer({ seq: m.seq, ok: false, error: 'exporter closed' });
      else
        sender.export({ body: m.body, count: m.count }, (result) => {
          // A batch's memory goes back once sent (the answer came, so nothing writes from it any more):
          // a new batch otherwise allocates ~0.5 MiB off the heap on the app's side, which this thread
          // frees only by garbage collection, and that external memory made this thread's V8 run a full
          // mark-compact about once a second at sampling 0.1 (~15 ms each, measured with --trace-gc).
          if (result.code !== ExportResultCode.SUCCESS) {
            answer({ seq: m.seq, ok: false, error: result.error?.message });
            return;
          }
          const buffer = m.body.buffer as ArrayBuffer;
          if (buffer.byteLength === 0) answer({ seq: m.seq, ok: true });
          else port.postMessage({ seq: m.seq, ok: true, buffer } satisfies FromWorker, [buffer]);
        });
    }
  });
}

/**
 * Multipart bodies into `req.body`: fields as `{ value }`, files as `UploadedFile`s. With the
 * default `disk` storage each file streams to a temporary file (mode 0600) and never sits in memory
 * whole, whatever `fileSize` allows; the files are deleted when the response closes, finished or
 * aborted, so a handler that wants to keep one moves it (rename) before it returns.
 */
import { randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream, mkdirSync } from 'node:fs';
import { readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { FastifyReply, FastifyRequest } from 'fastify';

export interface UploadedFile {
  fieldname: string;
  filename: string;
  encoding: string;
  mimetype: string;
  /** The temporary file (disk storage); deleted when the response closes. */
  path?: string;
  /** Bytes received. */
  size: number;
  toBuffer(): Promise<Buffer>;
  stream(): Readable;
}

export type UploadStorage = 'disk' | 'memory';

type Part = {
  fields: unknown;
  fieldname: string;
  filename?: string;
  encoding: string;
  mimetype: string;
  file?: Readable & { truncated?: boolean; bytesRead?: number };
  toBuffer(): Promise<Buffer>;
};
type MultipartRequest = { isMultipart(): boolean; parts(): AsyncIterable<Part> };

/** What JSON.stringify shows of a field part. */
function fieldJson(part: Part & { value?: unknown }) {
  return { type: 'field', fieldname: part.fieldname, value: part.value, mimetype: part.mimetype, encoding: part.encoding };
}

/** What JSON.stringify shows of an uploaded file (never its bytes or its temporary path). */
function fileJson(part: Part & { size?: number }) {
  return {
    type: 'file',
    fieldname: part.fieldname,
    filename: part.filename,
    mimetype: part.mimetype,
    encoding: part.encoding,
    size: part.size ?? part.file?.bytesRead ?? 0,
  };
}

const fileTooLarge = () => Object.assign(new Error('request file too large'), { code: 'FST_REQ_FILE_TOO_LARGE', statusCode: 413 });

/** The preValidation step of body routes: reads the whole multipart body before validation runs. */
export function multipartReader(storage: UploadStorage, tmpDir: string) {
  let dirReady = false;
  return function readMultipart(req: FastifyRequest, reply: FastifyReply, done: (error?: Error) => void): void {
    const mp = req as unknown as MultipartRequest;
    if (typeof mp.isMultipart !== 'function' || !mp.isMultipart()) {
      done();
      return;
    }
    const spooled: string[] = [];
    const cleanup = () => {
      for (const path of spooled.splice(0)) unlink(path).catch(() => undefined); // moved away or already gone
    };
    (async () => {
      for await (const part of mp.parts()) {
        req.body = part.fields;
        // Parts point back at the fields object and hold streams: JSON gets a plain summary instead
        // (a handler that returns req.body, as an echo does, must not hit circular JSON).
        if (!part.file) {
          Object.defineProperty(part, 'toJSON', { value: () => fieldJson(part), enumerable: false });
          continue;
        }
        Object.defineProperty(part, 'toJSON', { value: () => fileJson(part), enumerable: false });
        if (storage === 'memory') {
          const buffer = await part.toBuffer();
          Object.assign(part, { size: buffer.length, stream: () => Readable.from([buffer]) });
          continue;
        }
        if (!dirReady) {
          mkdirSync(tmpDir, { recursive: true, mode: 0o700 });
          dirReady = true;
        }
        const path = join(tmpDir, `upload-${randomUUID()}`);
        if (spooled.length === 0) reply.raw.once('close', cleanup);
        spooled.push(path);
        const out = createWriteStream(path, { flags: 'wx', mode: 0o600 });
        await pipeline(part.file, out);
        // busboy ends a file at the size limit with `truncated` set instead of failing the stream.
        if (part.file.truncated) throw fileTooLarge();
        const size = out.bytesWritten;
        Object.assign(part, { path, size, toBuffer: () => readFile(path), stream: () => createReadStream(path) });
      }
    })().then(() => done(), done); // on failure the error reply closes the response: cleanup runs then
  };
}

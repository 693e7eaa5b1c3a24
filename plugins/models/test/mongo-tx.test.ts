/**
 * Transactions on a MongoDB that has them (replica set): the suite's FerretDB has none (see
 * crud.int.test.ts), so this unit test drives the Mongo engine against a stub client that records
 * what the driver would be asked: one session per transaction, passed to every operation inside it,
 * commit on success, abort on failure, and a failed nested block dooming the whole transaction.
 */
import { describe, expect, it } from 'vitest';
import { defineModel, field } from '../src/index.js';

function stubMongo(hello: Record<string, unknown>) {
  const calls: string[] = [];
  let sessions = 0;
  const session = () => {
    const id = ++sessions;
    let active = false;
    return {
      id,
      startTransaction: () => {
        active = true;
        calls.push(`start#${id}`);
      },
      commitTransaction: async () => {
        active = false;
        calls.push(`commit#${id}`);
      },
      abortTransaction: async () => {
        active = false;
        calls.push(`abort#${id}`);
      },
      inTransaction: () => active,
      endSession: async () => void calls.push(`end#${id}`),
    };
  };
  const docs: Record<string, unknown>[] = [];
  const collection = (name: string) => ({
    insertOne: async (doc: Record<string, unknown>, options: { session?: { id: number } }) => {
      calls.push(`insert ${name} session#${options?.session?.id ?? 'none'}`);
      docs.push(doc);
      return { insertedId: doc._id };
    },
    findOneAndUpdate: async (_filter: unknown, update: { $inc?: { seq: number } }, options: { session?: { id: number } }) => {
      // The id counter is incremented outside the transaction.
      calls.push(`counter ${name} session#${options?.session?.id ?? 'none'}`);
      return { seq: docs.length + (update.$inc?.seq ?? 0) };
    },
  });
  return {
    calls,
    db: {
      alias: 'docs',
      collection,
      native: { startSession: session },
      db: { admin: () => ({ command: async () => hello }) },
    },
  };
}

const Doc = defineModel({ name: 'Doc', table: 'docs', fields: { id: field.id(), title: field.string() } });

describe('Mongo transactions (stub driver)', () => {
  it('runs every model call inside fn on one session, then commits', async () => {
    const { db, calls } = stubMongo({ setName: 'rs0' });
    const D = Doc.bind(db);
    const result = await D.transaction(async (tx) => {
      expect(tx.kind).toBe('mongo');
      expect(tx.session).toBeDefined();
      expect(() => tx.kysely()).toThrow(expect.objectContaining({ code: 'model.wrong_backend' }));
      await D.create({ title: 'a' });
      await D.transaction(async () => D.create({ title: 'nested joins the session' }));
      return 'ok';
    });
    expect(result).toBe('ok');
    expect(calls).toEqual([
      'start#1',
      'counter mega_counters session#none',
      'insert docs session#1',
      'counter mega_counters session#none',
      'insert docs session#1',
      'commit#1',
      'end#1',
    ]);
    await D.create({ title: 'after' });
    expect(calls.at(-1)).toBe('insert docs session#none');
  });

  it('aborts when fn throws, and a failed nested block rolls the whole transaction back', async () => {
    const { db, calls } = stubMongo({ msg: 'isdbgrid' });
    const D = Doc.bind(db);
    await expect(
      D.transaction(async () => {
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(calls).toEqual(['start#1', 'abort#1', 'end#1']);
    await expect(
      D.transaction(async () => {
        await D.transaction(async () => {
          throw new Error('inner');
        }).catch(() => undefined); // caught: there is still no savepoint to go back to
        await D.create({ title: 'x' });
      }),
    ).rejects.toMatchObject({ code: 'model.transaction_rolled_back', status: 409 });
    expect(calls.slice(3)).toEqual(['start#2', 'counter mega_counters session#none', 'insert docs session#2', 'abort#2', 'end#2']);
  });

  it('refuses on a server without transactions before starting anything', async () => {
    const { db, calls } = stubMongo({ isWritablePrimary: true });
    await expect(Doc.bind(db).transaction(async () => 1)).rejects.toMatchObject({ code: 'model.transactions_unsupported', status: 501 });
    expect(calls).toEqual([]);
  });
});

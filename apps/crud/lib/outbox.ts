/**
 * Where the welcome mail "is sent": an outbox of mail documents a real app would hand to an SMTP
 * relay. In MongoDB (collection `mail_outbox` of the `docs` database) when one is declared, in this
 * process's memory otherwise. The job is idempotent: one mail per user and kind, whatever the retries.
 */
import type { App } from '@mega/kernel';

export interface Mail {
  /** `<kind>:<userId>`: a second delivery of the same job writes nothing new. */
  _id: string;
  kind: 'welcome';
  userId: number;
  to: string;
  subject: string;
  text: string;
  queuedAt: Date;
}

export interface Outbox {
  readonly kind: 'mongodb' | 'memory';
  /** Stores `mail` unless one with its id exists; true when stored now. */
  put(mail: Mail): Promise<boolean>;
  list(userId?: number): Promise<Mail[]>;
}

interface CollectionLike {
  updateOne(filter: object, update: object, options: object): Promise<{ upsertedCount: number }>;
  find(filter: object): { sort(s: object): { toArray(): Promise<unknown[]> } };
}

class MongoOutbox implements Outbox {
  readonly kind = 'mongodb';
  constructor(private readonly mails: CollectionLike) {}
  async put(mail: Mail): Promise<boolean> {
    const { _id, ...rest } = mail;
    const res = await this.mails.updateOne({ _id }, { $setOnInsert: rest }, { upsert: true });
    return res.upsertedCount === 1;
  }
  async list(userId?: number): Promise<Mail[]> {
    return (await this.mails
      .find(userId === undefined ? {} : { userId })
      .sort({ queuedAt: 1 })
      .toArray()) as Mail[];
  }
}

class MemoryOutbox implements Outbox {
  readonly kind = 'memory';
  #mails = new Map<string, Mail>();
  async put(mail: Mail): Promise<boolean> {
    if (this.#mails.has(mail._id)) return false;
    this.#mails.set(mail._id, mail);
    return true;
  }
  async list(userId?: number): Promise<Mail[]> {
    return [...this.#mails.values()].filter((m) => userId === undefined || m.userId === userId);
  }
}

const outboxes = new WeakMap<App, Outbox>();

/** The app's outbox: the `docs` MongoDB database when declared, else memory. */
export function outboxOf(app: App): Outbox {
  let o = outboxes.get(app);
  if (!o) {
    const db = (app as unknown as { db: (alias?: string) => unknown }).db;
    let docs: { collection(name: string): CollectionLike } | undefined;
    try {
      docs = db.call(app, 'docs') as typeof docs;
    } catch {
      docs = undefined; // no `docs` alias declared: embedded defaults
    }
    o = docs ? new MongoOutbox(docs.collection('mail_outbox')) : new MemoryOutbox();
    outboxes.set(app, o);
  }
  return o;
}

import { type JobContext, MegaJob } from '@mega/jobs';
import { type Static, Type } from '@mega/kernel';
import { outboxOf } from '../lib/outbox.js';

const Payload = Type.Object({ userId: Type.Integer({ minimum: 1 }) }, { additionalProperties: false });
type Payload = Static<typeof Payload>;

/**
 * Queued at sign-up: writes the welcome mail to the outbox. Idempotent (one mail per user, by id),
 * so a redelivery after a crash or a retry after a failed write sends nothing twice. A user deleted
 * before the job ran gets no mail.
 */
export class WelcomeMail extends MegaJob<Payload> {
  static override schema = Payload;
  static override retries = 5;

  async run({ userId }: Payload, ctx: JobContext) {
    const user = await ctx.models.User.find(userId);
    if (!user) {
      ctx.log.info({ userId }, 'welcome mail: the user is gone, nothing to send');
      return;
    }
    const stored = await outboxOf(ctx.app).put({
      _id: `welcome:${user.id}`,
      kind: 'welcome',
      userId: user.id,
      to: user.email,
      subject: `Welcome, ${user.name}`,
      text: `Hello ${user.name},\n\nyour account is ready. Write your first note, or say hello in the chat.\n`,
      queuedAt: new Date(),
    });
    ctx.log.info({ userId, stored }, stored ? 'welcome mail queued' : 'welcome mail was already queued');
  }
}

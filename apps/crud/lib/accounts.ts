/**
 * Sign-up and sign-in, shared by the JSON API and the HTML forms. Passwords are stored as scrypt
 * hashes only; the session keeps `{ id, name }`, never the row.
 */
import type { MegaContext } from '@mega/kernel';
import { AuthError, ConflictError, isMegaError, ValidationError } from '@mega/kernel';
import type { RowOf } from '@mega/models';
import type { User } from '../models/user.js';
import { decoyHash, hashPassword, verifyPassword } from './passwords.js';

export type UserRow = RowOf<typeof User>;

/** What the API shows of a user: never the password hash. */
export interface PublicUser {
  id: number;
  email: string;
  name: string;
  created_at: Date;
  last_login_at: Date | null;
}

export interface SessionUser {
  id: number;
  name: string;
}

export const publicUser = (u: UserRow): PublicUser => ({
  id: u.id,
  email: u.email,
  name: u.name,
  created_at: u.created_at,
  last_login_at: u.last_login_at,
});

/** A deliberately loose shape check (the real proof is the welcome mail); the model caps the length. */
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

export interface Registration {
  email: string;
  name: string;
  password: string;
}

export async function register(ctx: MegaContext, input: Registration): Promise<UserRow> {
  const email = input.email.trim().toLowerCase();
  const name = input.name.trim();
  if (!EMAIL.test(email)) throw new ValidationError('users.invalid_email', 'that is not an email address', { details: { field: 'email' } });
  if (!name) throw new ValidationError('users.invalid_name', 'a name is needed', { details: { field: 'name' } });
  let user: UserRow;
  try {
    user = await ctx.models.User.create({ email, name, password_hash: await hashPassword(input.password) });
  } catch (error) {
    // The unique index decides, not a prior lookup: two sign-ups racing for one email get one 409.
    if (isMegaError(error) && error.code === 'db.conflict') {
      throw new ConflictError('users.email_taken', 'an account with this email exists', { details: { field: 'email' } });
    }
    throw error;
  }
  // The job id makes the enqueue idempotent: a retried enqueue queues one welcome mail. The creation
  // time is part of it: after a database reset, a new user 1 is not the old user 1.
  await ctx.jobs.enqueue('WelcomeMail', { userId: user.id }, { id: `welcome-${user.id}-${new Date(user.created_at).getTime()}` });
  return user;
}

export async function authenticate(ctx: MegaContext, emailInput: string, password: string): Promise<UserRow> {
  const user = await ctx.models.User.findBy({ email: emailInput.trim().toLowerCase() });
  // The same scrypt work whether or not the account exists: the answer time does not tell.
  const ok = await verifyPassword(password, user?.password_hash ?? (await decoyHash));
  if (!user?.password_hash || !ok) throw new AuthError('auth.invalid_credentials', 'wrong email or password');
  return ctx.models.User.update(user.id, { last_login_at: new Date() });
}

export async function signIn(ctx: MegaContext, user: UserRow): Promise<void> {
  await ctx.session.regenerate(); // a new session id at login (session fixation)
  await ctx.session.set('user', { id: user.id, name: user.name } satisfies SessionUser);
}

export async function currentUser(ctx: MegaContext): Promise<SessionUser | undefined> {
  return ctx.session.get<SessionUser>('user');
}

export async function requireUser(ctx: MegaContext): Promise<SessionUser> {
  const user = await currentUser(ctx);
  if (!user) throw new AuthError('auth.required', 'log in first');
  return user;
}

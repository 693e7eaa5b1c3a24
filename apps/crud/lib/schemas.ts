/**
 * HTTP schemas, built from the models' own (`Model.schemas.create` / `update`): a column's type,
 * length and nullability are declared once, in models/, and the API refuses what the table would.
 * The TypeScript types come from the models too (`InsertOf` / `UpdateOf`).
 */
import { type TObject, Type } from '@mega/kernel';
import type { InsertOf, UpdateOf } from '@mega/models';
import { Note } from '../models/note.js';
import { User } from '../models/user.js';

const password = Type.String({ minLength: 8, maxLength: 200 });

/**
 * PostgreSQL text cannot hold U+0000 (the insert or lookup fails with a 500): every string of a body
 * refuses it here, as a 400 naming the field.
 */
const NO_NUL = '^[^\\u0000]*$';
function withoutNul<T extends TObject>(schema: T): T {
  const properties = Object.fromEntries(
    Object.entries(schema.properties).map(([k, p]) => [k, p.type === 'string' && p.pattern === undefined ? { ...p, pattern: NO_NUL } : p]),
  );
  return { ...schema, properties };
}

export const RegisterBody = withoutNul(
  Type.Composite([Type.Pick(User.schemas.create, ['email', 'name']), Type.Object({ password })], { additionalProperties: false }),
);
export type RegisterBody = Pick<InsertOf<typeof User>, 'email' | 'name'> & { password: string };

export const LoginBody = withoutNul(
  Type.Object({ email: Type.String({ maxLength: 320 }), password: Type.String({ maxLength: 200 }) }, { additionalProperties: false }),
);
export interface LoginBody {
  email: string;
  password: string;
}

/** HTML forms carry their CSRF token as a `_csrf` field. */
const csrfField = Type.Object({ _csrf: Type.Optional(Type.String()) });
export const RegisterForm = Type.Composite([RegisterBody, csrfField]);
export const LoginForm = Type.Composite([LoginBody, csrfField]);

export const UpdateMeBody = withoutNul(
  Type.Composite([Type.Pick(User.schemas.update, ['name']), Type.Object({ password: Type.Optional(password) })], {
    additionalProperties: false,
    minProperties: 1,
  }),
);
export type UpdateMeBody = Pick<UpdateOf<typeof User>, 'name'> & { password?: string };

/** The owner comes from the session, never from the body. */
export const CreateNoteBody = withoutNul(Type.Omit(Note.schemas.create, ['user_id'], { additionalProperties: false }));
export type CreateNoteBody = Omit<InsertOf<typeof Note>, 'user_id'>;
export const UpdateNoteBody = withoutNul(
  Type.Pick(Note.schemas.update, ['title', 'body'], { additionalProperties: false, minProperties: 1 }),
);
export type UpdateNoteBody = Pick<UpdateOf<typeof Note>, 'title' | 'body'>;

/** Ids are PostgreSQL `integer`s: a larger one is a 400 here, not an out-of-range query error. */
export const IdParams = Type.Object({ id: Type.Integer({ minimum: 1, maximum: 2_147_483_647 }) });
export interface IdParams {
  id: number;
}

/** Cursor pagination: `nextCursor` of the previous page, opaque to clients. */
export const PageQuery = Type.Object(
  { limit: Type.Integer({ minimum: 1, maximum: 100, default: 20 }), cursor: Type.Optional(Type.String({ maxLength: 512 })) },
  { additionalProperties: false },
);
export interface PageQuery {
  limit: number;
  cursor?: string;
}

import { defineModel, field, hasMany } from '@mega/models';

/**
 * A registered user. `password_hash` and `last_login_at` came with the `add-auth-to-users`
 * migration: they are nullable because rows created before it have neither.
 */
export const User = defineModel({
  name: 'User',
  table: 'users',
  fields: {
    id: field.id(),
    email: field.string({ length: 320 }).unique(),
    name: field.string({ length: 64 }),
    password_hash: field.string({ length: 200 }).nullable(),
    last_login_at: field.timestamp().nullable(),
  },
  relations: { notes: hasMany('Note', { foreignKey: 'user_id' }) },
  timestamps: true,
});

declare module '@mega/models' {
  interface Models {
    User: typeof User;
  }
}

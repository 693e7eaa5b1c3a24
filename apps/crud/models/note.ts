import { belongsTo, defineModel, field } from '@mega/models';

/** A user's note; deleted with its user. Listed newest first per user, hence the (user_id, id) index. */
export const Note = defineModel({
  name: 'Note',
  table: 'notes',
  fields: {
    id: field.id(),
    user_id: field.integer(),
    title: field.string({ length: 200 }),
    body: field.text().default(''),
  },
  indexes: [{ columns: ['user_id', 'id'] }],
  relations: { user: belongsTo('User', { foreignKey: 'user_id', onDelete: 'cascade' }) },
  timestamps: true,
});

declare module '@mega/models' {
  interface Models {
    Note: typeof Note;
  }
}

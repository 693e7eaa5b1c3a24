// Replaced in dist by a one-file bundle (scripts/bundle-typebox.mjs): TypeBox's ~200 modules cost ~30 ms of a cold start.
export { Type } from '@sinclair/typebox';

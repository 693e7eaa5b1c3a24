/**
 * The type of JSON read back in assertions (`res.data.user.id`, `msg.payload.text`): a test checks
 * the shape with `expect`, so the kit does not make every test cast first.
 */
// biome-ignore lint/suspicious/noExplicitAny: JSON read back by test assertions
export type Loose = any;

/** The `bridgeHub` key of app.config.ts: one source for validation, defaults and the types. */
import { type Static, Type } from '@mega/kernel';

const Id = () => Type.String({ minLength: 1, maxLength: 256 });

export const BridgeHubConfigSchema = Type.Object({
  /** Absent: the app is not bridged. */
  bridgeHub: Type.Optional(
    Type.Object(
      {
        url: Type.String({ pattern: '^wss?://' }),
        token: Type.String({ minLength: 1, maxLength: 4096 }),
        /** Default: `<app>-<first 8 of kernel.instanceId>`. */
        bridgeId: Type.Optional(Id()),
        /** Hub channels this bridge subscribes to without a user session (subscriber sessions). */
        channels: Type.Array(Id(), { maxItems: 256, default: [] }),
        retry: Type.Object(
          {
            /** Reconnect attempts after a failure; -1 = forever. */
            retries: Type.Integer({ minimum: -1, default: -1 }),
            minTimeout: Type.Integer({ minimum: 1, default: 1000 }),
            maxTimeout: Type.Integer({ minimum: 1, default: 10_000 }),
            factor: Type.Number({ minimum: 1, default: 2 }),
          },
          { additionalProperties: false, default: {} },
        ),
        /** Ask for the `deflate` capability (frames >= 1 KiB sent compressed). */
        compression: Type.Boolean({ default: false }),
        /**
         * When the hub drains (closes the link with 4503), close this instance's client sockets with 4503
         * too, so clients reconnect (possibly elsewhere) and keep their session (SPEC §5: requeue).
         */
        requeueClientsOnDrain: Type.Boolean({ default: true }),
        connectTimeoutMs: Type.Integer({ minimum: 100, default: 5000 }),
      },
      { additionalProperties: false },
    ),
  ),
});

/** One app's validated `bridgeHub` (defaults applied). */
export type BridgeHubConfig = NonNullable<Static<typeof BridgeHubConfigSchema>['bridgeHub']>;
export type RetryOptions = BridgeHubConfig['retry'];
/** What a link runs with: the bridge id resolved. */
export type LinkConfig = BridgeHubConfig & { bridgeId: string };

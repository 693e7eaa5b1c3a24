/**
 * The admin app's password, and the project-local plugin that refuses the built-in one in production
 * (issue 11, B14): `ADMIN_PASSWORD` must be set there, at least 12 characters and not `admin`.
 * Development falls back to `admin` and says so once at boot.
 */
import { ConfigError, definePlugin } from '@mega/kernel';

export const BUILT_IN_PASSWORD = 'admin';
const MIN_LENGTH = 12;

/** The password the admin login compares with: ADMIN_PASSWORD, else (development only) `admin`. */
export const adminPassword = (): string => process.env.ADMIN_PASSWORD ?? BUILT_IN_PASSWORD;

export default definePlugin({
  name: 'multi-admin-password',
  version: '1.0.0',
  setup(api) {
    const value = process.env.ADMIN_PASSWORD;
    const weak = value === undefined || value === BUILT_IN_PASSWORD || value.length < MIN_LENGTH;
    if (!weak) return;
    if (api.kernel.env === 'production') {
      throw new ConfigError(
        'config.default_password',
        `apps/multi: the admin login refuses ${value === undefined || value === BUILT_IN_PASSWORD ? 'the built-in password "admin"' : `a password shorter than ${MIN_LENGTH} characters`} in production; set ADMIN_PASSWORD (at least ${MIN_LENGTH} characters)`,
        { details: { env: 'ADMIN_PASSWORD', minLength: MIN_LENGTH } },
      );
    }
    api.log.warn(
      { env: 'ADMIN_PASSWORD' },
      `admin login uses ${value === undefined ? 'the built-in password "admin"' : 'a weak ADMIN_PASSWORD'}: production refuses to boot with it`,
    );
  },
});

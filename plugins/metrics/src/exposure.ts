/**
 * Who may read /metrics. Metrics name routes, job names, pool sizes and error rates: internal
 * detail that should not be public. The rule (README: "Exposure"):
 * - `allow` set: the TCP peer address must be in it (addresses or CIDRs; X-Forwarded-For is never
 *   read, so a proxy cannot be used to spoof it).
 * - `token` set (or MEGA_METRICS_TOKEN): the scrape must send `Authorization: Bearer <token>`.
 * - both set: both must pass. Neither set: anyone outside production; in production, loopback
 *   peers only (a Prometheus or agent on the same host), and boot logs how to open it up.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { BlockList, isIP } from 'node:net';
import { ConfigError } from '@mega/kernel';

export interface Refusal {
  status: 401 | 403;
  code: string;
  message: string;
}

export interface Exposure {
  /** How the rule reads, for the boot log (never the token). */
  readonly summary: string;
  /** Undefined when the scrape may proceed. */
  check(peer: string | undefined, authorization: string | undefined): Refusal | undefined;
}

/** An IPv4 peer arriving on a dual-stack socket reads `::ffff:1.2.3.4`. */
function normalize(address: string): { address: string; family: 'ipv4' | 'ipv6' } | undefined {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  const a = mapped ? (mapped[1] as string) : address;
  const v = isIP(a);
  return v === 4 ? { address: a, family: 'ipv4' } : v === 6 ? { address: a, family: 'ipv6' } : undefined;
}

/** Parses `allow` entries into a BlockList; a bad entry fails boot naming it. */
export function allowList(entries: readonly string[]): BlockList {
  const list = new BlockList();
  for (const entry of entries) {
    const [addr = '', prefix, extra] = entry.trim().split('/');
    const n = normalize(addr);
    const bits = prefix === undefined ? undefined : Number(prefix);
    const max = n?.family === 'ipv4' ? 32 : 128;
    if (!n || extra !== undefined || (bits !== undefined && !(Number.isInteger(bits) && bits >= 0 && bits <= max))) {
      throw new ConfigError('metrics.invalid_allow', `metrics.allow: "${entry}" is not an IP address or CIDR (e.g. 10.0.0.0/8, ::1)`, {
        details: { entry },
      });
    }
    if (bits === undefined) list.addAddress(n.address, n.family);
    else list.addSubnet(n.address, bits, n.family);
  }
  return list;
}

const LOOPBACK = allowList(['127.0.0.0/8', '::1']);

function inList(list: BlockList, peer: string | undefined): boolean {
  const n = peer === undefined ? undefined : normalize(peer);
  return n !== undefined && list.check(n.address, n.family);
}

const digest = (text: string) => createHash('sha256').update(text).digest();

export function createExposure(options: {
  allow?: readonly string[] | undefined;
  token?: string | undefined;
  production: boolean;
}): Exposure {
  const allow = options.allow ? allowList(options.allow) : undefined;
  const token = options.token ? digest(options.token) : undefined;
  const loopbackOnly = !allow && !token && options.production;
  const parts: string[] = [];
  if (allow) parts.push(`peers in metrics.allow (${options.allow?.length} entries)`);
  if (token) parts.push('a bearer token');
  const summary = loopbackOnly
    ? 'loopback peers only (production, no metrics.allow or metrics.token)'
    : parts.length
      ? parts.join(' and ')
      : 'anyone';
  return {
    summary,
    check(peer, authorization) {
      if (loopbackOnly && !inList(LOOPBACK, peer)) {
        return {
          status: 403,
          code: 'metrics.forbidden',
          message: 'metrics are served to loopback peers only in production; set metrics.allow or metrics.token',
        };
      }
      if (allow && !inList(allow, peer)) return { status: 403, code: 'metrics.forbidden', message: 'this address may not read metrics' };
      if (token) {
        const m = authorization === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(authorization);
        // Digests have one length: the comparison takes the same time whatever was sent.
        if (!m || !timingSafeEqual(digest(m[1] as string), token)) {
          return { status: 401, code: 'metrics.unauthorized', message: 'metrics need a valid bearer token' };
        }
      }
      return undefined;
    },
  };
}

/** What the Digest schedule last counted, kept per process for `GET /api/digest`. */
export interface Digest {
  users: number;
  notes: number;
  at: string;
  tick: string;
  runs: number;
}

let last: Digest | undefined;
let runs = 0;

export function recordDigest(d: Omit<Digest, 'runs'>): Digest {
  last = { ...d, runs: ++runs };
  return last;
}

export const lastDigest = (): Digest | undefined => last;

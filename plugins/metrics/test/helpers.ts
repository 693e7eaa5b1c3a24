/** Reading Prometheus text in tests: one value by metric name and labels. */
import type { Exposition } from '../src/index.js';
import { parseExposition } from '../src/index.js';

/** Labels as the exposition writes them (values escaped). */
export type Labels = Record<string, string>;

/** Every sample named `name` whose labels include `labels`. */
export function samples(ex: Exposition, name: string, labels: Labels = {}): Array<{ labels: Labels; value: number }> {
  const out: Array<{ labels: Labels; value: number }> = [];
  for (const f of ex.values()) {
    for (const s of f.samples.values()) {
      if (s.name !== name) continue;
      const own = Object.fromEntries(s.labels);
      if (Object.entries(labels).every(([k, v]) => own[k] === v)) out.push({ labels: own, value: s.value });
    }
  }
  return out;
}

/** The sum over the samples `samples` finds (undefined when there is none). */
export function value(ex: Exposition, name: string, labels: Labels = {}): number | undefined {
  const found = samples(ex, name, labels);
  return found.length ? found.reduce((a, s) => a + s.value, 0) : undefined;
}

export async function scrape(inject: (path: string) => Promise<{ status: number; text: string }>, path = '/metrics'): Promise<Exposition> {
  const r = await inject(path);
  if (r.status !== 200) throw new Error(`${path} answered ${r.status}: ${r.text.slice(0, 300)}`);
  return parseExposition(r.text);
}

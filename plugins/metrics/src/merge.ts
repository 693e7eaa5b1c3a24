/**
 * Merging the Prometheus text of several workers into one exposition (`mega start --workers N`).
 * Every worker serialises its own OpenTelemetry data; the primary parses those texts and adds them
 * up series by series: counters and histogram lines (`_bucket` per `le`, `_sum`, `_count`) are summed,
 * which is the bucket-wise histogram merge since every worker uses the same bounds; gauges are summed
 * (connections, pool sizes, sessions: cluster totals), except process gauges (`mega_process_*`: heap,
 * event-loop lag), which keep one series per worker with a `worker` label, and job-queue depths read
 * from JetStream (one shared queue every worker sees), which take the maximum. Counters of workers
 * that exited are kept (`retire`), so a replaced worker does not make cluster counters go backwards.
 *
 * Parsing keeps label values as written (escaped), so nothing is unescaped and escaped again; a
 * series is identified by its name and its labels sorted by name.
 */

export interface Sample {
  readonly name: string;
  /** [name, escaped value] pairs, sorted by name. */
  readonly labels: ReadonlyArray<readonly [string, string]>;
  value: number;
}

export interface Family {
  readonly name: string;
  type: string;
  help: string | undefined;
  unit: string | undefined;
  /** By series key (name + sorted labels), in first-seen order. */
  readonly samples: Map<string, Sample>;
}

/** A parsed exposition: families in the order they appeared. */
export type Exposition = Map<string, Family>;

const META = /^# (HELP|UNIT|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) ?(.*)$/;

function family(ex: Exposition, name: string): Family {
  let f = ex.get(name);
  if (!f) {
    f = { name, type: 'untyped', help: undefined, unit: undefined, samples: new Map() };
    ex.set(name, f);
  }
  return f;
}

export function parseValue(text: string): number {
  if (text === '+Inf') return Number.POSITIVE_INFINITY;
  if (text === '-Inf') return Number.NEGATIVE_INFINITY;
  return Number(text);
}

export function formatValue(value: number): string {
  if (value === Number.POSITIVE_INFINITY) return '+Inf';
  if (value === Number.NEGATIVE_INFINITY) return '-Inf';
  return Number.isNaN(value) ? 'NaN' : String(value);
}

/** `{a="1",b="x\"y"}` starting at `from` (the `{`): the pairs and the index after `}`. */
function parseLabels(line: string, from: number): { labels: Array<[string, string]>; end: number } {
  const labels: Array<[string, string]> = [];
  let i = from + 1;
  while (i < line.length && line[i] !== '}') {
    const eq = line.indexOf('=', i);
    if (eq === -1 || line[eq + 1] !== '"') throw new Error(`bad label in: ${line.slice(0, 200)}`);
    const name = line.slice(i, eq).trim();
    let j = eq + 2;
    while (j < line.length && line[j] !== '"') j += line[j] === '\\' ? 2 : 1;
    if (j >= line.length) throw new Error(`unterminated label value in: ${line.slice(0, 200)}`);
    labels.push([name, line.slice(eq + 2, j)]);
    i = j + 1;
    if (line[i] === ',') i++;
  }
  if (line[i] !== '}') throw new Error(`unterminated label set in: ${line.slice(0, 200)}`);
  labels.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return { labels, end: i + 1 };
}

function seriesKey(name: string, labels: ReadonlyArray<readonly [string, string]>): string {
  let key = name;
  for (const [k, v] of labels) key += `\u0000${k}=${v}`;
  return key;
}

/** Parses Prometheus text format 0.0.4 as the OpenTelemetry serializer writes it. */
export function parseExposition(text: string): Exposition {
  const ex: Exposition = new Map();
  let current: Family | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '') continue;
    if (line.startsWith('#')) {
      const m = META.exec(line);
      if (!m) continue;
      const [, kind, name, rest] = m as unknown as [string, string, string, string];
      current = family(ex, name);
      if (kind === 'TYPE') current.type = rest;
      else if (kind === 'HELP') current.help ??= rest;
      else current.unit ??= rest;
      continue;
    }
    const brace = line.indexOf('{');
    const space = line.indexOf(' ');
    let name: string;
    let labels: Array<[string, string]> = [];
    let rest: string;
    if (brace !== -1 && (space === -1 || brace < space)) {
      name = line.slice(0, brace);
      const parsed = parseLabels(line, brace);
      labels = parsed.labels;
      rest = line.slice(parsed.end).trim();
    } else {
      name = line.slice(0, space);
      rest = line.slice(space + 1).trim();
    }
    const valueText = rest.split(' ')[0] ?? '';
    // Samples belong to the family declared before them (histogram lines carry suffixes).
    const owner = current && name.startsWith(current.name) ? current : family(ex, name);
    const key = seriesKey(name, labels);
    const existing = owner.samples.get(key);
    const value = parseValue(valueText);
    if (existing) existing.value += value;
    else owner.samples.set(key, { name, labels, value });
  }
  return ex;
}

type Policy = 'sum' | 'max' | 'worker' | 'first';

/** How a family's series from several workers combine (see the module comment). */
export function policyOf(f: Family, sample: Sample): Policy {
  if (f.name === 'target_info') return 'first';
  if (f.name.startsWith('mega_process_')) return 'worker';
  if (f.type === 'gauge' && f.name.startsWith('mega_jobs_queue_') && sample.labels.some(([k, v]) => k === 'driver' && v === 'jetstream')) {
    return 'max';
  }
  return 'sum';
}

const cumulative = (type: string) => type === 'counter' || type === 'histogram' || type === 'summary';

function add(into: Exposition, from: Family, sample: Sample, policy: Policy, slot: number | undefined): void {
  const f = family(into, from.name);
  if (f.type === 'untyped') f.type = from.type;
  f.help ??= from.help;
  f.unit ??= from.unit;
  let labels = sample.labels;
  if (policy === 'worker' && slot !== undefined) {
    labels = [...labels.filter(([k]) => k !== 'worker'), ['worker', String(slot)] as const].sort((a, b) => (a[0] < b[0] ? -1 : 1));
  }
  const key = seriesKey(sample.name, labels);
  const existing = f.samples.get(key);
  if (!existing) f.samples.set(key, { name: sample.name, labels, value: sample.value });
  else if (policy === 'max') existing.value = Math.max(existing.value, sample.value);
  else if (policy === 'sum' || policy === 'worker') existing.value += sample.value;
}

export interface WorkerExposition {
  /** The worker's slot (`MEGA_WORKER_SLOT`), used as its `worker` label. */
  readonly slot: number;
  readonly exposition: Exposition;
}

/** One exposition from the workers' own (plus `retired`: counters of workers that exited). */
export function mergeExpositions(parts: readonly WorkerExposition[], retired?: Exposition): Exposition {
  const out: Exposition = new Map();
  for (const { slot, exposition } of parts) {
    for (const f of exposition.values()) for (const s of f.samples.values()) add(out, f, s, policyOf(f, s), slot);
  }
  if (retired) for (const f of retired.values()) for (const s of f.samples.values()) add(out, f, s, 'sum', undefined);
  return out;
}

/** Folds the counters and histograms of an exiting worker into `retired` (its gauges end with it). */
export function retire(retired: Exposition, exposition: Exposition): void {
  for (const f of exposition.values()) {
    if (!cumulative(f.type) || f.name.startsWith('mega_process_')) continue;
    for (const s of f.samples.values()) add(retired, f, s, 'sum', undefined);
  }
}

export function formatExposition(ex: Exposition): string {
  let out = '';
  for (const f of ex.values()) {
    if (f.samples.size === 0) continue;
    if (f.help !== undefined) out += `# HELP ${f.name} ${f.help}\n`;
    if (f.unit) out += `# UNIT ${f.name} ${f.unit}\n`;
    out += `# TYPE ${f.name} ${f.type}\n`;
    for (const s of f.samples.values()) {
      out += s.labels.length
        ? `${s.name}{${s.labels.map(([k, v]) => `${k}="${v}"`).join(',')}} ${formatValue(s.value)}\n`
        : `${s.name} ${formatValue(s.value)}\n`;
    }
  }
  return out;
}

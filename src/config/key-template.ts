// OBJECT_KEY: the template of every object's key (without the codec's extension), checked once at
// start-up, and what the batcher asks of it: the key of a batch, the time partition an event falls
// in, and the key-safe form of an event field's value.
//
// Every key it makes lies under `{prefix}/` and has no empty, `.` or `..` segment (the DLQ re-uploads
// only such keys, src/dlq/scan.ts): the template must start with `{prefix}/`, its literal text is
// limited to `A-Z a-z 0-9 . _ - = /`, and every variable renders to a non-empty segment piece.
import { ConfigError } from './parse.js';

/** Today's layout: `{S3_PREFIX}/YYYY/MM/DD/HH/{batch id}`, the UTC hour of the batch's first event. */
export const DEFAULT_OBJECT_KEY = '{prefix}/{yyyy}/{MM}/{dd}/{HH}/{batch}';

/** Hive's name for the partition of a missing value (Athena, Spark and DuckDB read it as NULL). */
export const HIVE_DEFAULT_PARTITION = '__HIVE_DEFAULT_PARTITION__';

/** The longest a field value goes into a key, after escaping (S3 keys are at most 1024 bytes). */
export const MAX_VALUE_CHARS = 100;

const TIME_VARIABLES = ['yyyy', 'MM', 'dd', 'HH', 'mm'] as const;
type TimeVariable = (typeof TIME_VARIABLES)[number];
const VARIABLES = ['prefix', 'instance', 'batch', ...TIME_VARIABLES] as const;
type Variable = (typeof VARIABLES)[number];

type Piece = { readonly text: string } | { readonly variable: Variable } | { readonly field: string };

export interface KeyTemplate {
  /** The template as given. */
  readonly text: string;
  readonly pieces: readonly Piece[];
  /** The top-level event field the template partitions by (`{event.FIELD}`), if any. */
  readonly field: string | undefined;
  /** The finest time variable in it: a batch is cut when its value changes. */
  readonly finest: TimeVariable | undefined;
}

/** What a key is made of, besides the template. */
export interface KeyValues {
  readonly prefix: string;
  readonly instance: string;
  readonly batch: string;
  /** Receive time of the batch's first event, ms. */
  readonly first: number;
  /** The batch's field value, key-safe already (see keySafe). */
  readonly value: string | undefined;
}

const FIELD = /^[A-Za-z0-9_-]{1,64}$/;
const LITERAL = /^[A-Za-z0-9._=/-]*$/;

/** Reads and checks a template; throws a ConfigError naming `name` and what is wrong. */
export function parseKeyTemplate(raw: string, name = 'OBJECT_KEY'): KeyTemplate {
  const bad = (what: string) => new ConfigError(`"${name}" ${what}, got "${raw}"`);
  const pieces: Piece[] = [];
  const fields = new Set<string>();
  for (const [, text, inner] of raw.matchAll(/([^{}]*)(?:\{([^{}]*)\}|$)/g)) {
    if (text !== '') {
      if (!LITERAL.test(text!)) throw bad(`should hold only variables and the characters A-Z a-z 0-9 . _ - = / (text ${JSON.stringify(text)})`);
      pieces.push({ text: text! });
    }
    if (inner === undefined) continue;
    if (inner.startsWith('event.')) {
      const field = inner.slice('event.'.length);
      if (!FIELD.test(field)) throw bad(`names a field {event.${field}} that is not 1 to 64 of A-Z a-z 0-9 _ -`);
      fields.add(field);
      pieces.push({ field });
    } else if ((VARIABLES as readonly string[]).includes(inner)) pieces.push({ variable: inner as Variable });
    else throw bad(`has an unknown variable {${inner}}: use {prefix} {yyyy} {MM} {dd} {HH} {mm} {instance} {batch} {event.FIELD}`);
  }
  if (pieces.map(render).join('') !== raw) throw bad('has an unmatched { or }');
  if (!raw.startsWith('{prefix}/')) throw bad('should start with {prefix}/ (objects stay under S3_PREFIX, where the DLQ and a table\'s LOCATION find them)');
  if (!pieces.some((p) => 'variable' in p && p.variable === 'batch')) throw bad('should hold {batch}, which keeps every batch\'s key its own (retries and replays overwrite only their own object)');
  if (fields.size > 1) throw bad(`should partition by one event field, not ${fields.size} ({event.${[...fields].join('}, {event.')}})`);
  // Each variable renders to at least one safe character, so a segment is bad only by its literal text.
  const segments = pieces.map((p) => ('text' in p ? p.text : 'x')).join('').split('/');
  if (segments.some((s) => s === '' || s === '.' || s === '..')) throw bad('should have no empty, "." or ".." segment between slashes');
  const finest = [...TIME_VARIABLES].reverse().find((v) => pieces.some((p) => 'variable' in p && p.variable === v));
  return { text: raw, pieces, field: [...fields][0], finest };
}

/** A piece as it is written in a template. */
function render(piece: Piece): string {
  if ('text' in piece) return piece.text;
  return 'variable' in piece ? `{${piece.variable}}` : `{event.${piece.field}}`;
}

/** The key of a batch, without the codec's extension. */
export function renderKey(template: KeyTemplate, values: KeyValues): string {
  const iso = new Date(values.first).toISOString(); // 2026-11-23T16:25:50.123Z
  const time: Record<TimeVariable, string> = { yyyy: iso.slice(0, 4), MM: iso.slice(5, 7), dd: iso.slice(8, 10), HH: iso.slice(11, 13), mm: iso.slice(14, 16) };
  let key = '';
  for (const piece of template.pieces) {
    if ('text' in piece) key += piece.text;
    else if ('field' in piece) key += values.value ?? HIVE_DEFAULT_PARTITION;
    else if (piece.variable === 'prefix') key += values.prefix;
    else if (piece.variable === 'instance') key += values.instance;
    else if (piece.variable === 'batch') key += values.batch;
    else key += time[piece.variable];
  }
  return key;
}

const MINUTE_MS = 60_000;
const DAY_MS = 86_400_000;

/** The time partition of `ms` under the template's finest time variable (the same number: the same partition). */
export function timePartition(template: KeyTemplate, ms: number): number {
  switch (template.finest) {
    case undefined:
      return 0;
    case 'mm':
      return Math.floor(ms / MINUTE_MS);
    case 'HH':
      return Math.floor(ms / (60 * MINUTE_MS));
    case 'dd':
      return Math.floor(ms / DAY_MS);
    default: {
      const date = new Date(ms);
      return template.finest === 'MM' ? date.getUTCFullYear() * 12 + date.getUTCMonth() : date.getUTCFullYear();
    }
  }
}

const SAFE = /^[A-Za-z0-9._-]$/;
const ALL_SAFE = new RegExp(`^[A-Za-z0-9._-]{1,${MAX_VALUE_CHARS}}$`);

/**
 * A field value as it goes into a key: each character outside `A-Z a-z 0-9 . _ -` percent-encoded
 * as its UTF-8 bytes (so never a `/`), `.` and `..` encoded too, cut to MAX_VALUE_CHARS (never in
 * the middle of an escape). Missing, not a string, or empty: HIVE_DEFAULT_PARTITION.
 */
export function keySafe(value: string | undefined): string {
  if (value === undefined || value === '') return HIVE_DEFAULT_PARTITION;
  if (value === '.' || value === '..') return value.replaceAll('.', '%2E');
  if (ALL_SAFE.test(value)) return value; // the usual case: nothing to encode
  let out = '';
  for (const char of value) {
    const piece = SAFE.test(char) ? char : [...Buffer.from(char, 'utf8')].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join('');
    if (out.length + piece.length > MAX_VALUE_CHARS) break;
    out += piece;
  }
  return out;
}

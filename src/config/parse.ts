// The kinds of variable the configuration table is made of: each reads one raw value, and says
// for docs/config.md what it falls back to and what it accepts.

export class ConfigError extends Error {}

/** One environment variable: how it is read, and what docs/config.md says of it. */
export interface Variable<T> {
  /** The doc's default column: a literal in backticks, `unset`, or what the default derives from. */
  readonly default: string;
  /** The doc's accepted column, as far as this variable alone decides it. */
  readonly accepted: string;
  /** What it sets, in one line. */
  readonly doc: string;
  /** The value of `raw` (undefined: not in the environment); a bad one throws a ConfigError. */
  read(name: string, raw: string | undefined): T;
}

/** The one form of every error: the variable, what it expects, and what it got. */
export function invalid(name: string, expected: string, raw: string): ConfigError {
  return new ConfigError(`"${name}" ${expected}, got "${raw}"`);
}

type Parse<T> = (raw: string, name: string) => T;

const code = (value: string | number | boolean): string => `\`${value}\``;

/** Unset: `fallback`. Set, even to an empty string, the value is parsed (an empty one is bad unless `parse` takes it). */
function withDefault<T, F>(fallback: F, defaultText: string, accepted: string, doc: string, parse: Parse<T>): Variable<T | F> {
  return { default: defaultText, accepted, doc, read: (name, raw) => (raw === undefined ? fallback : parse(raw, name)) };
}

/** Unset or empty: undefined, as a task definition may leave a variable empty; `unset` says what that means. */
function optional<T>(unset: string, accepted: string, doc: string, parse: Parse<T>): Variable<T | undefined> {
  return { default: unset, accepted, doc, read: (name, raw) => (raw === undefined || raw === '' ? undefined : parse(raw, name)) };
}

function integer(min: number, max: number): Parse<number> {
  return (raw, name) => {
    const n = Number(raw);
    if (!/^\d+$/.test(raw.trim()) || n < min || n > max) throw invalid(name, `should be an integer from ${min} to ${max}`, raw);
    return n;
  };
}

const range = (min: number, max: number): string => (max === Number.MAX_SAFE_INTEGER ? `${min} and up` : `${min} to ${max}`);

/** An integer from `min` to `max`; unset, `fallback`. */
export function int(fallback: number, min: number, max: number, doc: string): Variable<number> {
  return withDefault(fallback, code(fallback), range(min, max), doc, integer(min, max));
}

/** An integer from `min` to `max`; unset or empty, undefined: `unset` says what the code does then. */
export function optionalInt(unset: string, min: number, max: number, doc: string): Variable<number | undefined> {
  return optional(unset, range(min, max), doc, integer(min, max));
}

/** An integer from `min` to `max`; unset, undefined, for the caller to derive; empty is a bad value. */
export function derivedInt(derivedFrom: string, min: number, max: number, doc: string): Variable<number | undefined> {
  return withDefault(undefined, derivedFrom, range(min, max), doc, integer(min, max));
}

/** `true` or `false`, in either case. */
export function bool(fallback: boolean, doc: string): Variable<boolean> {
  return withDefault(fallback, code(fallback), '`true`, `false`', doc, (raw, name) => {
    const lower = raw.toLowerCase();
    if (lower !== 'true' && lower !== 'false') throw invalid(name, 'should be either "true", "false", "TRUE", or "FALSE"', raw);
    return lower === 'true';
  });
}

function member<T extends string>(values: readonly T[]): Parse<T> {
  return (raw, name) => {
    const found = values.find((value) => value === raw);
    if (found === undefined) throw invalid(name, `should be one of [${values.join(', ')}]`, raw);
    return found;
  };
}

/** One of `values`, exactly; unset, `fallback`. */
export function oneOf<T extends string>(values: readonly T[], fallback: T, doc: string): Variable<T> {
  return withDefault(fallback, code(fallback), values.map(code).join(', '), doc, member(values));
}

/** One of `values`, exactly; unset or empty, undefined. */
export function optionalOneOf<T extends string>(values: readonly T[], unset: string, doc: string): Variable<T | undefined> {
  return optional(unset, values.map(code).join(', '), doc, member(values));
}

/** Any string, as given; unset, `fallback`. */
export function text(fallback: string, accepted: string, doc: string): Variable<string> {
  return withDefault(fallback, code(fallback), accepted, doc, (raw) => raw);
}

/** Any string; unset or empty (with `trim`, blank too), undefined. */
export function optionalText(accepted: string, doc: string, trim = false): Variable<string | undefined> {
  return optional('unset', accepted, doc, (raw) => (trim ? raw.trim() || undefined : raw));
}

/** An absolute URL, normalised as the URL class writes it; unset, undefined; empty is a bad value. */
export function url(doc: string): Variable<string | undefined> {
  return withDefault(undefined, 'unset', 'a URL', doc, (raw, name) => {
    try {
      return new URL(raw).toString();
    } catch {
      throw invalid(name, 'should be a valid URL', raw);
    }
  });
}

/** Comma-separated; blanks around and between the commas are dropped. Unset: empty. */
export function list(accepted: string, doc: string): Variable<readonly string[]> {
  return withDefault([], 'unset', accepted, doc, (raw) => raw.split(',').map((s) => s.trim()).filter((s) => s !== ''));
}

/** A string of the variable's own form, which `parse` checks with a message of its own; unset, `fallback`. */
export function custom<T, F>(fallback: F, defaultText: string, accepted: string, doc: string, parse: Parse<T>): Variable<T | F> {
  return withDefault(fallback, defaultText, accepted, doc, parse);
}

/** As `custom`, but unset or empty is undefined. */
export function optionalCustom<T>(unset: string, accepted: string, doc: string, parse: Parse<T>): Variable<T | undefined> {
  return optional(unset, accepted, doc, parse);
}

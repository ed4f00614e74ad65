// Every warn, error and fatal line the code can write is in a table of the docs an operator reads
// (docs/operations.md's "Log patterns", or the table of its area), and every message in "Log
// patterns" is still written by the code: read from the source, in both directions.
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import t from 'tap';
import ts from 'typescript';
import { ROOT } from './helpers/server.js';

/** The literal text of a message, between its values: `${...}` in the code, `<...>` or `...` in the docs. */
function fragments(message: string): string[] {
  return message
    .split(/\$\{(?:[^{}]|\{[^{}]*\})*\}|<[^>]*>|\.\.\./)
    .map((part) => part.trim())
    .filter((part) => part.length > 0);
}

/** The message with each value as `<>`, in the code's and the docs' spelling alike. */
function skeleton(message: string): string {
  return message.replace(/\$\{(?:[^{}]|\{[^{}]*\})*\}|<[^>]*>/g, '<>');
}

/** The parts a reader would grep for: each fragment long enough to name the line, or the whole message (values as `<>`) when none is. */
function greppable(message: string): string[] {
  const long = fragments(message).filter((part) => part.length >= 12);
  return long.length > 0 ? long : [skeleton(message)];
}

/** A pino call in src/: `log.warn(...)`, `this.log.error(...)`, `ctx.log.fatal(...)`. */
interface LogCall {
  file: string;
  line: number;
  level: string;
  /** The message as written: a literal's text, a template's with each value as `${name}`; undefined when it is not a literal. */
  message: string | undefined;
  /** The values a template puts in the message (`${name}`: their source text). */
  values: string[];
  /** The call's fields object, as written, or '' when there is none. */
  fields: string;
}

const LEVELS = new Set(['trace', 'debug', 'info', 'warn', 'error', 'fatal']);

/**
 * The level of a call on a logger (`log.warn`, `this.log.error`, `replayLog.info`), or undefined
 * when `callee` is no logger's method; a level chosen at run time (`log[lost ? 'error' : 'info']`)
 * counts as its most severe.
 */
function levelOf(callee: ts.Expression, source: ts.SourceFile): string | undefined {
  if (ts.isPropertyAccessExpression(callee)) return LEVELS.has(callee.name.text) && /log$/i.test(callee.expression.getText(source)) ? callee.name.text : undefined;
  if (!ts.isElementAccessExpression(callee) || !/log$/i.test(callee.expression.getText(source))) return undefined;
  const named = [...LEVELS].filter((level) => callee.argumentExpression.getText(source).includes(`'${level}'`));
  return named.at(-1);
}

/** Every pino call in src/, read with the TypeScript parser. */
function logCalls(): LogCall[] {
  const calls: LogCall[] = [];
  for (const entry of readdirSync(join(ROOT, 'src'), { withFileTypes: true, recursive: true })) {
    if (!entry.isFile() || !entry.name.endsWith('.ts')) continue;
    const file = join(entry.parentPath, entry.name);
    const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
    const visit = (node: ts.Node): void => {
      const level = ts.isCallExpression(node) ? levelOf(node.expression, source) : undefined;
      if (ts.isCallExpression(node) && level !== undefined) {
        const args = node.arguments;
        const last = args[args.length - 1];
        const call: LogCall = { file: relative(ROOT, file), line: source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1, level, message: undefined, values: [], fields: args.length > 1 ? args[0]!.getText(source) : '' };
        if (last !== undefined && (ts.isStringLiteral(last) || ts.isNoSubstitutionTemplateLiteral(last))) call.message = last.text;
        else if (last !== undefined && ts.isTemplateExpression(last)) {
          call.values = last.templateSpans.map((span) => span.expression.getText(source));
          call.message = last.head.text + last.templateSpans.map((span) => `\${${span.expression.getText(source)}}${span.literal.text}`).join('');
        }
        calls.push(call);
      }
      ts.forEachChild(node, visit);
    };
    visit(source);
  }
  return calls;
}

/** The backticked texts in the message column of every table in docs/ (the second column, or the first where it is the only text). */
function documentedMessages(): string[] {
  const cells: string[] = [];
  for (const name of readdirSync(join(ROOT, 'docs'))) {
    if (!name.endsWith('.md')) continue;
    for (const line of readFileSync(join(ROOT, 'docs', name), 'utf8').split('\n')) {
      if (!line.startsWith('|')) continue;
      for (const m of line.matchAll(/`([^`]+)`/g)) cells.push(m[1]!);
    }
  }
  return cells;
}

function logPatterns(): string[] {
  const text = readFileSync(join(ROOT, 'docs/operations.md'), 'utf8');
  const section = text.split('\n## Log patterns\n')[1]!.split('\n## ')[0]!;
  return section
    .split('\n')
    .filter((line) => /^\| (info|warn|error|fatal)/.test(line))
    .flatMap((line) => [...line.split('|')[2]!.matchAll(/`([^`]+)`/g)].map((m) => m[1]!));
}

const calls = logCalls();
/** [file, message] of each warn, error and fatal line: the ones an operator must find in the docs. */
const logged = calls.filter((c) => c.message !== undefined && ['warn', 'error', 'fatal'].includes(c.level)).map((c): [string, string] => [c.file, c.message!]);

t.test('the source is read: warn, error and fatal calls are found', async (t) => {
  t.ok(logged.length > 40, `${logged.length} found`);
  t.ok(logged.some(([, message]) => message === 'S3 upload failed for good'));
  t.ok(calls.some((c) => c.file === 'src/dlq/drain.ts' && c.level === 'info' && c.message?.startsWith('DLQ → RAW success: ${key}')), 'a template message, its values as written');
});

// The lines operators already grep for, in the form the product's contract fixes (a value in the
// text); the DLQ's other loss lines (`DLQ TTL →`, `DLQ capacity → not written=`) keep their form.
const FIXED_FORMS = ['DLQ → RAW success: ', 'DLQ capacity → removed=', 'DLQ capacity → not written=', 'DLQ TTL → removed=', 'local DLQ save failed: '];

t.test('every message is a constant: values go in the fields, where a query can group and filter by them', async (t) => {
  // A value named in capitals is a constant of the code (`${CORRUPT_DIR}/`): the text stays the same.
  const varying = calls.filter((c) => c.message === undefined || (c.values.some((v) => !/^[A-Z][A-Z0-9_]*$/.test(v)) && !FIXED_FORMS.some((form) => c.message!.startsWith(form))));
  t.same(varying.map((c) => `${c.file}:${c.line}: ${c.message ?? '(not a literal)'}`), [], 'move each value into the fields object');
});

t.test('an error is logged as `err`, the Error itself, so that the line has its type, code and stack', async (t) => {
  const textOnly = calls.filter((c) => /\berr(or)?\b[^,}]*\.message\b/.test(c.fields) || /\berr: (?:String|`)/.test(c.fields));
  t.same(textOnly.map((c) => `${c.file}:${c.line}: ${c.fields}`), [], 'log { err } rather than its message');
});

t.test('every warn, error and fatal line of the code is in a table of docs/', async (t) => {
  // A doc may shorten a long message (`...`): a long enough part of a cell that begins the code's counts.
  const cells = documentedMessages();
  const cellParts = cells.flatMap(fragments).concat(cells.map(skeleton));
  const documented = (part: string): boolean => cellParts.some((doc) => doc.includes(part) || (doc.length >= 24 && part.startsWith(doc)));
  const missing = logged.filter(([, message]) => !greppable(message).some(documented)).map(([file, message]) => `${file}: ${message}`);
  t.same(missing, [], 'add each to docs/operations.md "Log patterns" (or its area\'s table) with what it means and what to do');
});

t.test('every message in docs/operations.md "Log patterns" is still logged', async (t) => {
  const patterns = logPatterns();
  t.ok(patterns.length > 20, `${patterns.length} patterns`);
  // Each literal part of the pattern (between its `<value>`s and `...`s) is in one and the same
  // message the code logs: a pattern whose words survive only in a comment, or spread over two
  // messages, is a line the code no longer writes.
  const messages = calls.flatMap((c) => (c.message === undefined ? [] : [c.message]));
  const gone = patterns.filter((pattern) => !messages.some((message) => fragments(pattern).every((part) => message.includes(part))));
  t.same(gone, [], 'no pattern names a line the code no longer writes');
});

t.test('each message is written at one place: an operational event has one site, which counts it and logs it', async (t) => {
  const sites = new Map<string, string[]>();
  for (const c of calls) if (c.message !== undefined) sites.set(c.message, [...(sites.get(c.message) ?? []), `${c.file}:${c.line}`]);
  t.same([...sites].filter(([, where]) => where.length > 1), [], 'give the second site its own message, or call the first');
});

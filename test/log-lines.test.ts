// Every warn, error and fatal line the code can write is in a table of the docs an operator reads
// (docs/operations.md's "Log patterns", or the table of its area), and every message in "Log
// patterns" is still written by the code: read from the source, in both directions.
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import t from 'tap';
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

/** [file, message] of each warn, error or fatal call in src/ whose message is a literal. */
function loggedMessages(): [string, string][] {
  const found: [string, string][] = [];
  for (const entry of readdirSync(join(ROOT, 'src'), { withFileTypes: true, recursive: true })) {
    if (!entry.isFile() || !entry.name.endsWith('.ts')) continue;
    const file = join(entry.parentPath, entry.name);
    const text = readFileSync(file, 'utf8');
    // log.warn('...'), log.error({ ... }, `...`): the message is the last argument's literal.
    for (const m of text.matchAll(/\.(?:warn|error|fatal)\(\s*(?:\{(?:[^{}]|\{[^{}]*\})*\}\s*,\s*|[\w.]+\s*,\s*)?(['`])((?:(?!\1)[^\\]|\\.)*)\1/g)) {
      found.push([relative(ROOT, file), m[2]!]);
    }
  }
  return found;
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

const logged = loggedMessages();

t.test('the source is read: warn, error and fatal calls are found', async (t) => {
  t.ok(logged.length > 40, `${logged.length} found`);
  t.ok(logged.some(([, message]) => message === 'S3 upload failed for good'));
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
  const sources = readdirSync(join(ROOT, 'src'), { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => readFileSync(join(e.parentPath, e.name), 'utf8'))
    .join('\n');
  // A message's words may come from a value (`DLQ file ${what}, moved aside`): some run of its
  // words between punctuation must still be in the code.
  const gone = patterns.filter((pattern) => !fragments(pattern).some((part) => part.split(/[,:;()/]\s*/).some((words) => words.trim().length >= 8 && sources.includes(words.trim()))));
  t.same(gone, [], 'no pattern names a line the code no longer writes');
});

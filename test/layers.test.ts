// The layers of docs/architecture.md, read from the code's own imports: nothing imports a layer
// above its own, the front knows nothing of the WAL or the DLQ, and no files import each other in
// a circle, in src/ or bench/; and every src/ file has its unit test at the mirror path.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import t from 'tap';
import { ROOT } from './helpers/server.js';

/** Highest first, as the table in docs/architecture.md; the first prefix that matches decides. */
const LAYERS: readonly (readonly [name: string, prefixes: readonly string[]])[] = [
  ['process', ['src/main.ts', 'src/dlq/cli.ts']],
  ['server', ['src/server.ts', 'src/shutdown.ts']],
  ['front', ['src/ingest/']],
  ['pipeline', ['src/wiring.ts', 'src/pipeline.ts', 'src/acks.ts', 'src/idempotency.ts']],
  ['stages', ['src/upload/', 'src/wal/', 'src/dlq/', 'src/channel.ts', 'src/local-s3.ts']],
  ['base', ['src/disk/', 'src/metrics/', 'src/config/', 'src/config.ts', 'src/log.ts', 'src/version.ts', 'src/types/']],
];

function files(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => relative(ROOT, join(e.parentPath, e.name)));
}

/** The files of this tree that `file` imports, as paths from the root (`.js` in the source is the `.ts` beside it). */
function imports(file: string): string[] {
  const text = readFileSync(join(ROOT, file), 'utf8');
  return [...text.matchAll(/^(?:import|export)[^'"]*from '(\.[^']+)'/gm)].map((m) => relative(ROOT, resolve(ROOT, dirname(file), m[1]!)).replace(/\.js$/, '.ts'));
}

function layerOf(file: string): number {
  const index = LAYERS.findIndex(([, prefixes]) => prefixes.some((p) => file === p || (p.endsWith('/') && file.startsWith(p))));
  if (index === -1) throw new Error(`${file} is in no layer of docs/architecture.md: add it to the table and to LAYERS`);
  return index;
}

function circles(graph: Map<string, string[]>): string[][] {
  const found: string[][] = [];
  const state = new Map<string, 'open' | 'done'>();
  const path: string[] = [];
  const visit = (file: string): void => {
    state.set(file, 'open');
    path.push(file);
    for (const next of graph.get(file) ?? []) {
      if (state.get(next) === 'open') found.push(path.slice(path.indexOf(next)));
      else if (!state.has(next)) visit(next);
    }
    path.pop();
    state.set(file, 'done');
  };
  for (const file of graph.keys()) if (!state.has(file)) visit(file);
  return found;
}

const src = files('src');
const graph = new Map(src.concat(files('bench')).map((file) => [file, imports(file)]));

t.test('every src/ file is in a layer, and imports only from its own layer or those below', async (t) => {
  const upward = src.flatMap((file) =>
    graph
      .get(file)!
      .filter((target) => target.startsWith('src/') && layerOf(target) < layerOf(file))
      .map((target) => `${file} (${LAYERS[layerOf(file)]![0]}) -> ${target} (${LAYERS[layerOf(target)]![0]})`),
  );
  t.same(upward, [], 'no import runs up a layer');
});

t.test('the front imports nothing of the WAL or the DLQ', async (t) => {
  const front = src.filter((file) => file.startsWith('src/ingest/'));
  t.ok(front.length > 5, 'the front is found');
  t.same(
    front.flatMap((file) => graph.get(file)!.filter((target) => /^src\/(wal|dlq)\//.test(target)).map((target) => `${file} -> ${target}`)),
    [],
  );
});

t.test('no import circles in src/ or bench/', async (t) => {
  t.same(circles(graph), []);
});

t.test('the circle finder finds a circle', async (t) => {
  t.same(circles(new Map([['a', ['b']], ['b', ['c']], ['c', ['a']], ['d', ['a']]])), [['a', 'b', 'c']]);
});

t.test('every src/ file has a unit test at its mirror path (src/a/b.ts: test/a/b.test.ts, or test/a/b.<kind>.test.ts)', async (t) => {
  const tests = new Set(files('test'));
  const untested = files('src')
    .filter((file) => !file.endsWith('.d.ts')) // declarations only: nothing runs
    .filter((file) => {
      const mirror = file.replace(/^src\//, 'test/').replace(/\.ts$/, '');
      // npm test's, not test:ops's alone
      return ![...tests].some((test) => test === `${mirror}.test.ts` || (test.startsWith(`${mirror}.`) && test.endsWith('.test.ts') && !test.endsWith('.ops.test.ts')));
    });
  t.same(untested, [], 'write the unit test beside the mirror path');
});

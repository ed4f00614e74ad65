// Builds dist/index.js (comments removed: what a browser loads) and dist/index.d.ts (with the
// documentation) from src/index.ts with the repository's TypeScript, failing on any type error.
// `--if-stale`: only when the source or this script is newer than dist/index.js (npm test's
// pretest, so that a changed client is tested as built, and an unchanged one costs nothing).
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const here = dirname(fileURLToPath(import.meta.url));
const source = join(here, 'src/index.ts');
const out = join(here, 'dist/index.js');
const mtime = (path) => statSync(path).mtimeMs;
if (process.argv.includes('--if-stale') && existsSync(out) && mtime(out) > Math.max(mtime(source), mtime(fileURLToPath(import.meta.url)))) process.exit(0);

const config = ts.getParsedCommandLineOfConfigFile(join(here, 'tsconfig.json'), {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: (d) => fail([d]) });
const program = ts.createProgram(config.fileNames, { ...config.options, emitDeclarationOnly: true });
const emitted = program.emit();
fail([...ts.getPreEmitDiagnostics(program), ...emitted.diagnostics]);
const js = ts.transpileModule(readFileSync(source, 'utf8'), { compilerOptions: { ...config.options, removeComments: true, declaration: false } }).outputText;
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, js);

function fail(diagnostics) {
  if (diagnostics.length === 0) return;
  console.error(ts.formatDiagnosticsWithColorAndContext(diagnostics, { getCanonicalFileName: (f) => f, getCurrentDirectory: () => here, getNewLine: () => '\n' }));
  process.exit(1);
}

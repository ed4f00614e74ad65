// VERSION is package.json's version, found beside the module's own directory: from src/ (tests)
// and from dist/ (the build the image runs) alike.
import { readFileSync } from 'node:fs';
import t from 'tap';
import { VERSION } from '../src/version.js';
import { ROOT } from './helpers/server.js';

const packageVersion = (JSON.parse(readFileSync(`${ROOT}package.json`, 'utf8')) as { version: string }).version;

t.test('is the version in package.json, a semver', async (t) => {
  t.equal(VERSION, packageVersion);
  t.match(VERSION, /^\d+\.\d+\.\d+(-[\w.]+)?$/);
});

t.test('the build in dist/ finds the same package.json (the image carries it beside dist/)', async (t) => {
  const built = (await import(`${ROOT}dist/version.js`)) as { VERSION: string };
  t.equal(built.VERSION, packageVersion);
});

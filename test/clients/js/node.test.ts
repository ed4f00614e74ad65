// The client's suite (suite.ts) in Node: the built bundle, clients/js/dist/index.js, imported as
// a Node program would, with Node's fetch. The same scenarios run in Chromium in browser.test.ts.
import { gzipSync } from 'node:zlib';
import { readFileSync } from 'node:fs';
import t from 'tap';
import { createClient } from '../../../clients/js/dist/index.js';
import { startInProcess } from '../../helpers/in-process.js';
import { startS3 } from '../../helpers/s3.js';
import { ROOT } from '../../helpers/server.js';
import { scenarios } from './scenarios.js';
import { clientSuite, SUITE_ENV } from './suite.js';

t.test('the suite, in Node', async (t) => {
  const s3 = await startS3(t);
  const server = await startInProcess(t, { ...s3.env, ...SUITE_ENV });
  await clientSuite(t, (name, endpoint, tag) => scenarios[name](createClient, endpoint, tag), 'node', s3, server);
});

t.test('the bundle is one ES module with no imports, small enough for the README\'s figure', async (t) => {
  const js = readFileSync(`${ROOT}clients/js/dist/index.js`, 'utf8');
  t.notMatch(js, /^\s*import\b|\brequire\(/m, 'no runtime dependency');
  const gzipped = gzipSync(js, { level: 9 }).length;
  t.ok(gzipped < 5 * 1024, `${gzipped} bytes gzipped, under 5 KB`);
  const readme = readFileSync(`${ROOT}clients/js/README.md`, 'utf8');
  const stated = /about ([\d.]+) KB gzipped/.exec(readme)?.[1];
  t.ok(stated !== undefined && Math.abs(Number(stated) * 1024 - gzipped) < 256, `the README states it (${stated} KB)`);
});

// What an operator meets first: the start-up lines say the version and the address, and /metrics
// says the version too. (--help and --version: test/main.test.ts.)
import { readFileSync } from 'node:fs';
import t from 'tap';
import { startInProcess } from '../helpers/in-process.js';
import { startS3 } from '../helpers/s3.js';
import { ROOT } from '../helpers/server.js';

const VERSION = (JSON.parse(readFileSync(`${ROOT}package.json`, 'utf8')) as { version: string }).version;

t.test('the first line and the listening line say the version; listening says the address; /metrics has ingest_build_info', async (t) => {
  const s3 = await startS3(t);
  // The lines of the server's start, in the test's process: the process is not the subject here.
  const server = await startInProcess(t, s3.env);
  t.match(server.logs[0], { level: 'info', msg: 'event-ingest starting', version: VERSION, node: process.version });
  // The message stays `listening`, which scripts wait for; the address is in its fields.
  const listening = server.logs.find((l) => l.msg === 'listening')!;
  t.match(listening, { address: `127.0.0.1:${server.port}`, host: '127.0.0.1', port: server.port, version: VERSION });
  t.equal(await server.metric('ingest_build_info', `{version="${VERSION}",node="${process.version}"}`), 1);
});

// test/e2e/pipelining.test.ts at WORKERS=2, at every ACK_LEVEL (test/harness/pipelining.ts):
// each server's worker threads take about 3 s to start under the test's loaders.
import t from 'tap';
import { pipeliningAt } from '../harness/pipelining.js';
import { startS3 } from '../helpers/s3.js';

const s3 = await startS3(t);
for (const ackLevel of ['memory', 'disk', 's3'] as const) pipeliningAt(t, s3, '2', ackLevel);

// Keep-alive, pipelining and half-close on raw sockets (node:net) against the real server in this
// process (the real pipeline, WAL and S3 client, s3rver on loopback): a request pipelined behind
// one in flight is answered, in order; a client that half-closes after its request gets its
// answer; two requests in one packet, which uWebSockets.js refuses while an answer is pending,
// are neither stored nor answered (a retry stores them once), and counted (test/harness/pipelining.ts).
// Here WORKERS=1 at every ACK_LEVEL; WORKERS=2, whose worker threads take about 3 s a server to
// start under the test's loaders, is in pipelining.ops.test.ts at every ACK_LEVEL, and in
// test/ingest/workers.test.ts (real worker threads, a scripted intake) in npm test.
import t from 'tap';
import { pipeliningAt } from '../harness/pipelining.js';
import { startS3 } from '../helpers/s3.js';

const s3 = await startS3(t);
for (const ackLevel of ['memory', 'disk', 's3'] as const) pipeliningAt(t, s3, '1', ackLevel);

// The per-stage profile: a small .cpuprofile, made by hand, through the attribution by stage and
// the split of /proc's CPU time over the stages (bench/lib/profile.ts).
import t from 'tap';
import { attribute, type CpuProfile, stageOfFrame, stageRows, stageTable, threadGroup } from '../../bench/lib/profile.js';

const APP = 'file:///srv/event-ingest/dist';
const MODULES = 'file:///srv/event-ingest/node_modules';

t.test('each frame to its stage; Node and V8 built-ins to none (their caller decides)', async (t) => {
  const cases: [string, string, string | undefined][] = [
    ['parseEvents', `${APP}/ingest/body.js`, 'scan'],
    ['scanValue', `${APP}/ingest/json-scan.js`, 'scan'],
    ['onData', `${APP}/ingest/read-body.js`, 'http'],
    ['', `${MODULES}/uWebSockets.js/uws.js`, 'http'],
    ['encodeLines', `${APP}/upload/batcher.js`, 'batch'],
    ['push', `${APP}/channel.js`, 'batch'],
    ['processCallback', 'node:zlib', 'zlib'],
    ['upload', `${APP}/upload/loop.js`, 's3'],
    ['send', `${MODULES}/@smithy/core/dist-cjs/index.js`, 's3'],
    ['signRequest', `${MODULES}/@aws-sdk/signature-v4-multi-region/dist-cjs/index.js`, 's3'],
    ['append', `${APP}/wal/writer.js`, 'durable'],
    ['observe', `${MODULES}/prom-client/lib/histogram.js`, 'observe'],
    ['write', `${MODULES}/pino/lib/proto.js`, 'observe'],
    ['inc', `${APP}/metrics/http.js`, 'observe'],
    ['info', `${APP}/log.js`, 'observe'],
    // A package's own dist/metrics is not the server's.
    ['x', `${MODULES}/some-package/dist/metrics/x.js`, 'other'],
    ['main', `${APP}/main.js`, 'other'],
    ['(garbage collector)', '', 'gc'],
    ['(idle)', '', 'idle'],
    ['(program)', '', 'native'],
    ['parse', '', undefined],
    ['concat', 'node:buffer', undefined],
    ['processTimers', 'node:internal/timers', undefined],
    ['(root)', '', undefined],
  ];
  for (const [name, url, stage] of cases) t.equal(stageOfFrame(name, url), stage, `${name} ${url}`);
});

const frame = (functionName: string, url = '') => ({ functionName, url });
// root -> (program), (idle), (gc), and a microtask run calling into the server's stages.
const PROFILE: CpuProfile = {
  nodes: [
    { id: 1, callFrame: frame('(root)'), children: [2, 3, 4, 5, 14] },
    { id: 2, callFrame: frame('(program)') },
    { id: 3, callFrame: frame('(idle)') },
    { id: 4, callFrame: frame('(garbage collector)') },
    { id: 5, callFrame: frame('runMicrotasks'), children: [6, 9, 11, 13, 15, 16] },
    { id: 6, callFrame: frame('onData', `${APP}/ingest/read-body.js`), children: [7] },
    { id: 7, callFrame: frame('parseEvents', `${APP}/ingest/body.js`), children: [8] },
    { id: 8, callFrame: frame('parse') },
    { id: 9, callFrame: frame('processCallback', 'node:zlib'), children: [10] },
    { id: 10, callFrame: frame('concat', 'node:buffer') },
    { id: 11, callFrame: frame('sign', `${MODULES}/@smithy/signature-v4/dist-cjs/index.js`), children: [12] },
    { id: 12, callFrame: frame('createHmac', 'node:crypto') },
    { id: 13, callFrame: frame('processTimers', 'node:internal/timers') },
    { id: 14, callFrame: frame('main', `${APP}/main.js`) },
    { id: 15, callFrame: frame('observe', `${MODULES}/prom-client/lib/histogram.js`) },
    { id: 16, callFrame: frame('encodeLines', `${APP}/upload/batcher.js`) },
  ],
  startTime: 1000,
  endTime: 2200,
  // Leaf nodes: JSON.parse (8) counts for body.js, Buffer.concat (10) for zlib, createHmac (12) for
  // @smithy; timers (13) have no stage up to the root: other.
  samples: [6, 8, 10, 3, 3, 4, 2, 12, 13, 14, 15, 16],
  // Taken at 1050, 1150, ..., 2150; each lasts until the next, the last the mean interval (100).
  timeDeltas: [50, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100],
};

/** The other threads' CPU seconds by group. */
const threads = (pool: number, v8 = 0, other = 0, profiler = 0) => ({ pool, v8, other, profiler });

t.test('samples by stage: a built-in counts for its caller, each sample lasts until the next', async (t) => {
  const a = attribute(PROFILE);
  t.same(a.us, { http: 100, scan: 100, batch: 100, zlib: 100, s3: 100, durable: 0, observe: 100, gc: 100, native: 100, other: 200, idle: 200 });
  t.equal(a.totalUs, 1200);
  t.equal(a.samples, 12);
  t.equal(a.windowed, false, 'no window asked for');
});

t.test('an empty profile: nothing to attribute, no share', async (t) => {
  const empty = attribute({ nodes: [{ id: 1, callFrame: frame('(root)') }], startTime: 0, endTime: 0, samples: [], timeDeltas: [] });
  t.equal(empty.totalUs, 0);
  t.same(stageRows(empty, { mainThreadSeconds: 0, mainThreadWaitSeconds: 0, threads: threads(0) }, 5).map((r) => r.share), Array(16).fill(0));
});

t.test('a window keeps the samples taken within it; one outside the profile keeps them all', async (t) => {
  const inside = attribute(PROFILE, { from: 1050, to: 1250 });
  t.equal(inside.samples, 2, 'the samples at 1050 and 1150');
  t.equal(inside.us.http, 100);
  t.equal(inside.us.scan, 100);
  t.equal(inside.totalUs, 200);
  t.equal(inside.windowed, true);
  const elsewhere = attribute(PROFILE, { from: 5000, to: 6000 });
  t.equal(elsewhere.samples, 12);
  t.equal(elsewhere.windowed, false);
});

t.test('the other threads by name', async (t) => {
  t.same(
    ['libuv-worker', 'V8Worker', 'DelayedTaskSche', 'v8:ProfEvntProc', 'SignalInspector', 'pino-worker'].map(threadGroup),
    ['pool', 'v8', 'v8', 'profiler', 'profiler', 'other'],
  );
});

t.test("the main thread's CPU over its stages, less the run-queue wait; the rest under idle samples; the other threads", async (t) => {
  // 1 ms of main-thread CPU, 0.25 ms waiting for the core, 10 events: the 1000 µs of busy samples
  // are 800 µs of CPU (1000 / 1.25), the other 200 µs ran under idle samples. 2 ms in the pool,
  // 0.5 in V8's helpers, 0.3 in the profiler's thread.
  const rows = stageRows(attribute(PROFILE), { mainThreadSeconds: 0.001, mainThreadWaitSeconds: 0.00025, threads: threads(0.002, 0.0005, 0, 0.0003) }, 10);
  const by = Object.fromEntries(rows.map((r) => [r.stage, r]));
  t.equal(by['HTTP and body read']!.cpuUsPerEvent, 8);
  t.equal(by['other']!.cpuUsPerEvent, 16);
  t.equal(by['WAL and DLQ']!.cpuUsPerEvent, 0);
  t.equal(by['idle']!.cpuUsPerEvent, undefined, 'idle is no stage of its own: its CPU is the poll row');
  t.equal(by['idle']!.share, 200 / 1200);
  t.equal(by['event-loop poll']!.cpuUsPerEvent, 20);
  t.equal(by['thread pool (gzip)']!.cpuUsPerEvent, 200);
  t.equal(by['V8 helper threads']!.cpuUsPerEvent, 50);
  t.equal(by['the profiler (not in the total)']!.cpuUsPerEvent, 30);
  const table = stageTable(rows);
  t.match(table, /\| HTTP and body read \| [^|]+ \| 8\.3% \| 8\.00 \|/);
  t.match(table, /\| idle \| [^|]+ \| 16\.7% \|  \|/);
  t.match(table, /\| event-loop poll \| [^|]+ \|  \| 20\.00 \|/);
  t.match(table, /\| \*\*total\*\* \| the server's threads \| 100% \| \*\*350\.00\*\* \|/, "the server's threads add up, the profiler's left out");
  // Busy samples longer than the thread's CPU (it waited more than the run queue says): capped.
  const capped = Object.fromEntries(stageRows(attribute(PROFILE), { mainThreadSeconds: 0.0005, mainThreadWaitSeconds: 0, threads: threads(0) }, 10).map((r) => [r.stage, r.cpuUsPerEvent]));
  t.equal(capped['HTTP and body read'], 5);
  t.equal(capped['event-loop poll'], 0);
  t.same(
    stageRows(attribute(PROFILE), { mainThreadSeconds: 1, mainThreadWaitSeconds: 0, threads: threads(1) }, 0).map((r) => r.cpuUsPerEvent),
    rows.map(() => undefined),
    'no events: no cost per event',
  );
});

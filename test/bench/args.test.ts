// The benchmark's command line: what a run would do, read without running any load.
import t from 'tap';
import { parseBenchArgs } from '../../bench/lib/args.js';

const KNOWN = ['single', 'array', 'outage'];

t.test('defaults: all scenarios, 3 rounds of 10 s, nothing saved, no other target', async (t) => {
  t.same(parseBenchArgs([], KNOWN), { scenarios: [], seconds: 10, rounds: 3, connections: 64, serverEnv: {}, save: false, profile: false, targets: [] });
});

t.test('scenarios, numbers, --env, --save and --profile', async (t) => {
  const options = parseBenchArgs(['array', 'single', '--seconds', '2', '--rounds', '1', '--connections', '8', '--env', 'GZIP_LEVEL=1', '--env', 'S3_PREFIX=a=b', '--save', '--profile'], KNOWN);
  t.same(options, { scenarios: ['array', 'single'], seconds: 2, rounds: 1, connections: 8, serverEnv: { GZIP_LEVEL: '1', S3_PREFIX: 'a=b' }, save: true, profile: true, targets: [] });
});

t.test('each --target-pid belongs to the --target before it', async (t) => {
  const { targets } = parseBenchArgs(['--target', 'http://127.0.0.1:2020/', '--target-pid', '41', '--target', 'https://ingest.example/v1/logs'], KNOWN);
  t.same(targets, [{ url: 'http://127.0.0.1:2020/', pid: 41 }, { url: 'https://ingest.example/v1/logs' }]);
});

t.test('refuses what it cannot use, naming it', async (t) => {
  const refused: [string[], RegExp][] = [
    [['nope'], /unknown scenario nope; known: single array outage/],
    [['--rounds', '0'], /--rounds expects an integer >= 1, got 0/],
    [['--seconds', '1.5'], /--seconds expects an integer >= 1, got 1.5/],
    [['--env', 'GZIP_LEVEL'], /--env expects NAME=value, got GZIP_LEVEL/],
    [['--target', 'udp://127.0.0.1:5140'], /--target expects an http:\/\/ or https:\/\/ URL/],
    [['--target', 'localhost'], /--target expects an http:\/\/ or https:\/\/ URL/],
    [['--target-pid', '41'], /--target-pid PID follows the --target URL/],
    [['--target', 'http://127.0.0.1:1/', '--target-pid', '1', '--target-pid', '2'], /one per target/],
    [['--target', 'http://127.0.0.1:1/', '--target-pid', 'x'], /--target-pid expects an integer >= 1, got x/],
    [['--frobnicate'], /Unknown option '--frobnicate'/],
  ];
  for (const [args, message] of refused) t.throws(() => parseBenchArgs(args, KNOWN), message, args.join(' '));
});

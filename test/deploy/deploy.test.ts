// The Dockerfile and the ECS examples, checked without a Docker engine: they agree with the
// build output, the configuration and the shutdown timing.
import { existsSync, readFileSync } from 'node:fs';
import t from 'tap';
import { configVariables } from '../helpers/config-vars.js';
import { ROOT } from '../helpers/server.js';

const dockerfile = readFileSync(`${ROOT}Dockerfile`, 'utf8');
const finalStage = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
const json = (path: string) => JSON.parse(readFileSync(`${ROOT}${path}`, 'utf8')) as Record<string, any>;

t.test('Dockerfile: starts what the build produces, as a non-root user, with a health check and a DLQ volume', async (t) => {
  const cmd = JSON.parse(/^CMD (\[.*\])$/m.exec(finalStage)![1]!) as string[];
  t.same(cmd.slice(0, 1), ['node']);
  t.ok(existsSync(`${ROOT}${cmd[1]}`), `${cmd[1]} exists in the build output`);
  t.match(finalStage, /^USER node$/m);
  t.match(finalStage, /HEALTHCHECK [^\n]*\\\n\s+CMD .*\/healthz/);
  const dlqDir = /DLQ_DIR=(\S+)/.exec(finalStage)![1]!;
  t.match(finalStage, new RegExp(`VOLUME \\["${dlqDir}"\\]`), 'the DLQ directory is a volume');
  t.match(finalStage, new RegExp(`chown -R node:node ${dlqDir.split('/').slice(0, -1).join('/')}`), 'and the node user owns it');
  const [, image, major, debian] = /^FROM (node:(\d+)-(\w+)-slim)$/m.exec(finalStage)!;
  const admitted = (json('package.json').engines.node as string).split('||').map((range) => /\^(\d+)\./.exec(range)?.[1]);
  t.ok(admitted.includes(major), `the image runs a supported Node.js (${major}; engines: ${admitted.join(', ')})`);
  t.ok(['trixie', 'forky'].includes(debian!), 'Debian 13 or later: glibc 2.38 or later, so uWebSockets.js loads as published');
  t.equal(/^FROM (\S+) AS build$/m.exec(dockerfile)![1], image, 'built on the image it runs on (same Node ABI and glibc for the addon)');
  t.match(dockerfile, /npm prune --omit=dev/, 'production dependencies only (no s3rver: no local mode)');
  const ignored = readFileSync(`${ROOT}.dockerignore`, 'utf8').split('\n');
  for (const path of ['node_modules', 'dist', 'data']) t.ok(ignored.includes(path), `${path} stays out of the build context`);
});

t.test('ECS task definition: Fargate, timing matched to SHUTDOWN_TIMEOUT_MS, only real settings', async (t) => {
  const task = json('deploy/ecs/task-definition.json');
  t.same(task.requiresCompatibilities, ['FARGATE']);
  t.ok(task.ephemeralStorage.sizeInGiB >= 21, 'ephemeral storage for the DLQ');
  const [container] = task.containerDefinitions;
  const env = Object.fromEntries(container.environment.map((e: { name: string; value: string }) => [e.name, e.value]));
  const known = configVariables();
  for (const name of Object.keys(env)) t.ok(known.has(name), `${name} is a variable the server reads`);
  t.ok(container.stopTimeout * 1000 >= Number(env.SHUTDOWN_TIMEOUT_MS) + 5000, 'stopTimeout leaves at least 5 s after SHUTDOWN_TIMEOUT_MS for the spill');
  t.ok(container.stopTimeout <= 120, 'within what Fargate allows');
  t.match(container.healthCheck.command.join(' '), /\/healthz/);
  t.equal(container.logConfiguration.logDriver, 'awslogs');
  t.equal(env.DLQ_DIR, /DLQ_DIR=(\S+)/.exec(finalStage)![1], 'DLQ_DIR is the image volume');
  t.equal(container.portMappings[0].containerPort, 8080);
});

t.test('task role: s3:PutObject on the prefix, and for S3_SSE=aws:kms the one KMS action a single PUT needs, only through S3', async (t) => {
  const policy = json('deploy/ecs/task-role-policy.json');
  const actions = policy.Statement.map((s: { Action: string }) => s.Action);
  t.same(actions.slice(0, 2), ['s3:PutObject', 'kms:GenerateDataKey']);
  t.match(policy.Statement[0].Resource, /^arn:aws:s3:::[^/]+\/raw\/\*$/);
  t.match(policy.Statement[1].Resource, /^arn:aws:kms:REGION:ACCOUNT_ID:key\/KMS_KEY_ID$/);
  t.same(policy.Statement[1].Condition, { StringEquals: { 'kms:ViaService': 's3.REGION.amazonaws.com' } });
});

t.test('autoscaling: target tracking on CPU and on requests per target', async (t) => {
  const scaling = json('deploy/ecs/autoscaling.json');
  t.same(scaling.policies.map((p: { TargetTrackingScalingPolicyConfiguration: { PredefinedMetricSpecification: { PredefinedMetricType: string } } }) => p.TargetTrackingScalingPolicyConfiguration.PredefinedMetricSpecification.PredefinedMetricType), [
    'ECSServiceAverageCPUUtilization',
    'ALBRequestCountPerTarget',
  ]);
});

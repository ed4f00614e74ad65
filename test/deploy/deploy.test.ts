// The Dockerfile and the ECS examples, checked without a Docker engine: they agree with the
// build output, the configuration and the shutdown timing.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { configVariables } from '../helpers/config-vars.js';
import { startS3 } from '../helpers/s3.js';
import { baseEnv, ROOT, watch } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';

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
  t.equal(container.logConfiguration.options['awslogs-create-group'], 'true', 'the log group is created if missing (the execution role needs logs:CreateLogGroup: deploy/README.md)');
  t.equal(env.DLQ_DIR, /DLQ_DIR=(\S+)/.exec(finalStage)![1], 'DLQ_DIR is the image volume');
  t.equal(container.portMappings[0].containerPort, 8080);
  t.ok(container.linuxParameters.initProcessEnabled, 'an init process, as ECS Exec advises (it reaps the SSM agent\'s children)');
});

t.test('/metrics on its own METRICS_PORT, mapped in the task but not in the load balancer; ECS Exec on', async (t) => {
  const task = json('deploy/ecs/task-definition.json');
  const [container] = task.containerDefinitions;
  const env = Object.fromEntries(container.environment.map((e: { name: string; value: string }) => [e.name, e.value]));
  const metricsPort = Number(env.METRICS_PORT);
  t.ok(metricsPort > 0 && metricsPort !== 8080, 'METRICS_PORT set, apart from the ingest port');
  t.same(container.portMappings.map((p: { containerPort: number }) => p.containerPort), [8080, metricsPort], 'both ports mapped, for Prometheus inside the VPC');
  const service = json('deploy/ecs/service.json');
  t.same(service.loadBalancers.map((lb: { containerPort: number }) => lb.containerPort), [8080], 'the ALB target group gets the ingest port only');
  t.equal(service.loadBalancers[0].containerName, container.name);
  t.equal(service.enableExecuteCommand, true, 'ECS Exec, for the dlq command');
  const policy = json('deploy/ecs/task-role-policy.json');
  const exec = policy.Statement.find((s: { Sid: string }) => s.Sid === 'EcsExecForTheDlqCommand');
  t.same(exec.Action, ['ssmmessages:CreateControlChannel', 'ssmmessages:CreateDataChannel', 'ssmmessages:OpenControlChannel', 'ssmmessages:OpenDataChannel'], 'what ECS Exec needs in the task role');
});

const environment = (container: { environment: { name: string; value: string }[] }) => Object.fromEntries(container.environment.map((e) => [e.name, e.value]));

t.test('the EFS variant: the same task with ACK_LEVEL=disk and DURABLE_ROOT on an EFS volume', async (t) => {
  const base = json('deploy/ecs/task-definition.json');
  const efs = json('deploy/ecs/task-definition-efs.json');
  const [container] = efs.containerDefinitions;
  const env = environment(container);
  const known = configVariables();
  for (const name of Object.keys(env)) t.ok(known.has(name), `${name} is a variable the server reads`);
  t.equal(env.ACK_LEVEL, 'disk', 'a 202 means in the WAL on EFS, which outlives the task');
  t.same(efs.volumes, [{ name: 'durable', efsVolumeConfiguration: { fileSystemId: 'EFS_ID', transitEncryption: 'ENABLED', authorizationConfig: { accessPointId: 'EFS_ACCESS_POINT_ID', iam: 'ENABLED' } } }]);
  t.same(container.mountPoints, [{ sourceVolume: 'durable', containerPath: env.DURABLE_ROOT, readOnly: false }], 'DURABLE_ROOT is the EFS mount');
  // Under DURABLE_ROOT the server names its directories itself; a fixed INSTANCE_ID would be shared by every task.
  for (const name of ['INSTANCE_ID', 'WAL_DIR', 'DLQ_DIR']) t.notOk(name in env, `${name} is left to the server`);
  t.equal(container.entryPoint, undefined, 'the image\'s CMD: node gets SIGTERM');
  // Everything else as in the base task definition, so the two cannot drift apart.
  const strip = (task: Record<string, any>) => {
    const { family, volumes, ephemeralStorage, containerDefinitions, ...rest } = task;
    const { mountPoints, environment, ...c } = containerDefinitions[0];
    return { rest, c, environment: environment.filter((e: { name: string }) => !['DLQ_DIR', 'ACK_LEVEL', 'DURABLE_ROOT'].includes(e.name)) };
  };
  t.same(strip(efs), strip(base));
  const policy = json('deploy/ecs/task-role-policy.json');
  const mount = policy.Statement.find((s: { Sid: string }) => s.Sid === 'EfsDurableVolumeThroughItsAccessPoint');
  t.same(mount.Action, ['elasticfilesystem:ClientMount', 'elasticfilesystem:ClientWrite']);
});

t.test('the EFS variant run as ECS runs it: each task its own directory under DURABLE_ROOT, named by its container id, which the documented dlq stats reads', async (t) => {
  const [container] = json('deploy/ecs/task-definition-efs.json').containerDefinitions;
  const env = environment(container);
  const root = tempDir(t, 'efs');
  const s3 = await startS3(t);
  const cmd = JSON.parse(/^CMD (\[.*\])$/m.exec(finalStage)![1]!) as string[];
  const imageDlqDir = /DLQ_DIR=(\S+)/.exec(finalStage)![1]!;
  const taskId = '0123456789abcdef0123456789abcdef-1234567890';
  // The image's environment, the task definition's durability settings with the mount moved to a temp directory.
  const taskEnv = { ...s3.env, DLQ_DIR: imageDlqDir, ACK_LEVEL: env.ACK_LEVEL!, DURABLE_ROOT: root, ECS_CONTAINER_METADATA_URI_V4: `http://169.254.170.2/v4/${taskId}` };
  const child = spawn(cmd[0]!, cmd.slice(1), { cwd: ROOT, env: baseEnv(taskEnv), stdio: ['ignore', 'pipe', 'pipe'] });
  const server = watch(t, child);
  const listening = await server.waitForLog((l) => l.msg === 'listening');
  await server.waitForLog((l) => l.msg.startsWith('S3 preflight ok')); // S3 done writing before the test ends
  t.equal(listening.instance, taskId, 'INSTANCE_ID is the container id (task id, dash, number)');
  t.same(readdirSync(root), [taskId]);
  t.same(readdirSync(join(root, taskId)).sort(), ['dlq', 'lease', 'wal'], 'its WAL and DLQ under a lease');
  t.ok(existsSync(join(root, taskId, 'dlq', '.lock')), 'the server holds the lock of its own DLQ');
  t.equal((await fetch(`http://127.0.0.1:${listening.port as number}/healthz`)).status, 200);
  // The `dlq stats` deploy/README.md gives for ECS Exec, in the task's environment: the same directory.
  const readme = readFileSync(`${ROOT}deploy/README.md`, 'utf8');
  const documented = /### EFS[^\n]*\n[\s\S]*?--command "(npm run dlq -- stats)"/.exec(readme)?.[1];
  t.ok(documented, 'deploy/README.md gives the command for the EFS variant');
  const stats = spawn('sh', ['-c', documented!], { cwd: ROOT, env: baseEnv(taskEnv), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  stats.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  const [code] = (await once(stats, 'exit')) as [number];
  t.equal(code, 0, out);
  t.match(out, new RegExp(`^dir\\s+${join(root, taskId, 'dlq')}$`, 'm'), 'the documented command reads the task\'s own DLQ, as the server does');
  child.kill('SIGTERM');
  t.equal((await server.exited).code, 0, 'SIGTERM reaches node, which shuts down cleanly');
});

t.test('task role: s3:PutObject on the prefix, and for S3_SSE=aws:kms the one KMS action a single PUT needs, only through S3', async (t) => {
  const policy = json('deploy/ecs/task-role-policy.json');
  const actions = policy.Statement.map((s: { Action: string }) => s.Action);
  t.same(actions.slice(0, 2), ['s3:PutObject', 'kms:GenerateDataKey']);
  t.notOk(JSON.stringify(policy).includes('"s3:*"') || JSON.stringify(policy).includes('s3:Get'), 'no reads or wildcards on S3');
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

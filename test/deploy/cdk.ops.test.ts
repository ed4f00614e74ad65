// `cdk synth` as deploy/README.md has a user run it: the CLI in deploy/cdk, cdk.json's app command
// on Node's own TypeScript, with CDK's CloudFormation schema validation and the app's cdk-nag
// plugin, either of which fails the synth on a finding. Offline: no credentials (and no instance
// metadata to ask for them), no Docker (the image asset is only staged). In test:ops because the
// schema validation compiles a WebAssembly engine first, some 10 s of CPU a run; npm test's
// test/deploy/cdk.test.ts synthesises the same stack in-process without it.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import t from 'tap';
import { ROOT } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';

// Two CLI runs: 130 s measured on 2 cores shared with other work (load average 17), past tap's 180 s default with the rest of test:ops beside it.
t.setTimeout(400_000);

const CERTIFICATE = 'arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d-0000-4000-8000-000000000000';

for (const [name, context] of [['default', []], ['EFS', ['-c', 'efs=true']]] as const) {
  t.test(`${name}: cdk synth passes the schema validation and cdk-nag, and writes the stack`, async (t) => {
    const out = tempDir(t, 'cdk-synth');
    const env: NodeJS.ProcessEnv = { ...process.env, AWS_REGION: 'eu-west-1', AWS_EC2_METADATA_DISABLED: 'true', CDK_DISABLE_CLI_TELEMETRY: 'true' };
    for (const credential of ['AWS_PROFILE', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN']) delete env[credential];
    const cdk = spawn('npx', ['cdk', 'synth', '--no-notices', '--quiet', '--output', out, '-c', `certificateArn=${CERTIFICATE}`, ...context], { cwd: `${ROOT}deploy/cdk`, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    for (const stream of [cdk.stdout, cdk.stderr]) stream.setEncoding('utf8').on('data', (d: string) => (output += d));
    const [code] = (await once(cdk, 'exit')) as [number];
    t.equal(code, 0, output);
    t.notMatch(output, /ERROR|AwsSolutions-/, 'no finding reported');
    const template = JSON.parse(readFileSync(`${out}/EventIngest.template.json`, 'utf8')) as { Resources: Record<string, { Type: string }> };
    const types = new Set(Object.values(template.Resources).map((r) => r.Type));
    for (const type of ['AWS::ECS::Service', 'AWS::ElasticLoadBalancingV2::Listener', 'AWS::S3::Bucket', 'AWS::CloudWatch::Alarm']) t.ok(types.has(type), `${type} in the template`);
    t.equal(types.has('AWS::EFS::FileSystem'), name === 'EFS');
    const report = JSON.parse(readFileSync(`${out}/validation-report.json`, 'utf8')) as { pluginReports: { violations?: unknown[] }[] };
    t.same(report.pluginReports.flatMap((r) => r.violations ?? []), [], 'no violation in the validation report');
  });
}

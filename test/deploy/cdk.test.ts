// The CDK app (deploy/cdk), synthesised in-process without AWS or Docker (the image asset is only
// staged), once per configuration and shared by the assertions: the default (new VPC with VPC
// endpoints), EFS (ACK_LEVEL=disk), and the other flags together (NAT, SSE-KMS, the ADOT
// sidecar). What the assertions hold: the timeouts' order, the listener's TLS, the endpoints, the
// circuit breaker, the secret, the buckets' policies, the container settings of deploy/ecs, an
// environment the server's own configuration accepts, and cdk-nag's AWS Solutions rules with
// every acknowledgment justified.
import { readFileSync } from 'node:fs';
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import cdkNag from 'cdk-nag';
import t from 'tap';
import { settingsFromContext } from '../../deploy/cdk/settings.ts';
import { ALB_IDLE_TIMEOUT_S, DEREGISTRATION_DELAY_S, IngestStack, SERVER_KEEP_ALIVE_IDLE_S, taskJsonPath } from '../../deploy/cdk/stack.ts';
import { loadConfig } from '../../src/config.js';
import { DEFAULT_HTTP_IDLE_TIMEOUT_S } from '../../src/config/table.js';
import { configVariables } from '../helpers/config-vars.js';
import { ROOT } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';

const CERTIFICATE = 'arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d-0000-4000-8000-000000000000';
const ENV = { account: '123456789012', region: 'eu-west-1' };
const json = (path: string) => JSON.parse(readFileSync(`${ROOT}${path}`, 'utf8')) as Record<string, any>;
type Resources = Record<string, { Type: string; Properties: Record<string, any> }>;

interface Synth {
  stack: Stack;
  template: Template;
  resources: Resources;
  outdir: string;
}

/** The app as `cdk synth` runs it: cdk.json's context, then the command line's `-c` values. */
function newApp(context: Record<string, unknown>, outdir?: string): App {
  // CDK's built-in CloudFormation schema validation compiles a WebAssembly engine, about 10 s of
  // CPU before it checks anything: `cdk synth` runs it, this test does not (deploy/README.md).
  return new App({ outdir, builtinCloudFormationValidation: false, context: { ...json('deploy/cdk/cdk.json').context, certificateArn: CERTIFICATE, ...context } });
}

function synth(context: Record<string, unknown>): Synth {
  const outdir = tempDir(t, 'cdk');
  const app = newApp(context, outdir);
  const stack = new IngestStack(app, 'EventIngest', { env: ENV, ...settingsFromContext(app) });
  const template = Template.fromStack(stack);
  return { stack, template, resources: template.toJSON().Resources as Resources, outdir };
}

// An existing VPC as `cdk synth` would have looked it up (the answer is kept in cdk.context.json):
// two zones, public and private subnets.
const VPC_ID = 'vpc-0123456789abcdef0';
const subnet = (id: string, zone: string) => ({ subnetId: id, cidr: '10.1.0.0/24', availabilityZone: zone, routeTableId: `rtb-${id.slice(7)}` });
const LOOKED_UP = {
  [`vpc-provider:account=${ENV.account}:filter.vpc-id=${VPC_ID}:region=${ENV.region}:returnAsymmetricSubnets=true`]: {
    vpcId: VPC_ID,
    vpcCidrBlock: '10.1.0.0/16',
    availabilityZones: [],
    subnetGroups: [
      { name: 'Public', type: 'Public', subnets: [subnet('subnet-0000000000000000a', 'eu-west-1a'), subnet('subnet-0000000000000000b', 'eu-west-1b')] },
      { name: 'Private', type: 'Private', subnets: [subnet('subnet-0000000000000000c', 'eu-west-1a'), subnet('subnet-0000000000000000d', 'eu-west-1b')] },
    ],
  },
};

const configs = {
  default: synth({}),
  efs: synth({ efs: 'true' }),
  other: synth({ egress: 'nat', kms: 'true', metrics: 'amp', corsOrigins: 'https://app.example.com', alarmEmail: 'ops@example.com', retentionDays: '400' }),
  existingVpc: synth({ vpcId: VPC_ID, ...LOOKED_UP }),
};

const ofType = (s: Synth, type: string) => Object.entries(s.resources).filter(([, r]) => r.Type === type);
const one = (s: Synth, type: string) => {
  const found = ofType(s, type);
  if (found.length !== 1) throw new Error(`${found.length} resources of type ${type}`);
  return found[0]![1].Properties;
};
const attribute = (attributes: { Key: string; Value: string }[], key: string) => attributes.find((a) => a.Key === key)?.Value;
const ingestContainer = (s: Synth) => (one(s, 'AWS::ECS::TaskDefinition').ContainerDefinitions as Record<string, any>[]).find((c) => c.Name === 'ingest')!;
/** The ingest container's environment: strings, or the references CloudFormation fills in. */
const environment = (s: Synth) => Object.fromEntries((ingestContainer(s).Environment as { Name: string; Value: any }[]).map((e) => [e.Name, e.Value]));

t.test('the timeouts in order: ALB idle < server keep-alive, deregistration delay >= ACK_TIMEOUT_MS, stopTimeout >= SHUTDOWN_TIMEOUT_MS + 5 s', async (t) => {
  t.equal(SERVER_KEEP_ALIVE_IDLE_S, DEFAULT_HTTP_IDLE_TIMEOUT_S, "the kit's keep-alive value is the server's HTTP_IDLE_TIMEOUT_S default");
  const ackTimeoutS = loadConfig({ ACK_LEVEL: 's3' }).ackTimeoutMs / 1000;
  // docs/operations.md's table of every timeout in the path gives the load balancer's as this app sets them.
  const table = readFileSync(`${ROOT}docs/operations.md`, 'utf8').split('\n## Timeouts in the path\n')[1]!.split('\n## ')[0]!;
  const row = (name: string) => Number(new RegExp(`^\\| ${name} \\| (\\d+) \\|`, 'm').exec(table)?.[1]);
  t.equal(row('ALB idle timeout'), ALB_IDLE_TIMEOUT_S, "docs/operations.md: the ALB idle timeout the app sets");
  t.equal(row('deregistration delay'), DEREGISTRATION_DELAY_S, 'docs/operations.md: the deregistration delay the app sets');
  for (const [name, s] of Object.entries(configs)) {
    const idle = Number(attribute(one(s, 'AWS::ElasticLoadBalancingV2::LoadBalancer').LoadBalancerAttributes, 'idle_timeout.timeout_seconds'));
    const deregistration = Number(attribute(one(s, 'AWS::ElasticLoadBalancingV2::TargetGroup').TargetGroupAttributes, 'deregistration_delay.timeout_seconds'));
    const container = ingestContainer(s);
    t.equal(environment(s).HTTP_IDLE_TIMEOUT_S, undefined, `${name}: the task keeps the server's keep-alive default`);
    t.equal(idle, ALB_IDLE_TIMEOUT_S, `${name}: the load balancer's idle timeout is set`);
    t.ok(idle < SERVER_KEEP_ALIVE_IDLE_S, `${name}: the load balancer closes an idle connection before the server does (${idle} < ${SERVER_KEEP_ALIVE_IDLE_S} s)`);
    t.equal(deregistration, DEREGISTRATION_DELAY_S);
    t.ok(deregistration >= ackTimeoutS, `${name}: draining outlasts the longest wait for an answer (ACK_TIMEOUT_MS at ACK_LEVEL=s3)`);
    t.ok(idle > ackTimeoutS, `${name}: the load balancer waits longer than the server may take to answer`);
    t.ok(container.StopTimeout * 1000 >= Number(environment(s).SHUTDOWN_TIMEOUT_MS) + 5000, `${name}: stopTimeout leaves 5 s after SHUTDOWN_TIMEOUT_MS for the spill`);
    t.ok(container.StopTimeout <= 120, `${name}: within what Fargate allows`);
  }
});

t.test('HTTPS on 443 with the certificate and a TLS 1.3 policy; 80 only redirects to it', async (t) => {
  const s = configs.default;
  const listeners = ofType(s, 'AWS::ElasticLoadBalancingV2::Listener').map(([, r]) => r.Properties).sort((a, b) => a.Port - b.Port);
  const [targetsId] = ofType(s, 'AWS::ElasticLoadBalancingV2::TargetGroup').map(([id]) => id);
  t.same(listeners.map((l) => [l.Port, l.Protocol]), [[80, 'HTTP'], [443, 'HTTPS']], 'two listeners');
  t.same(listeners[1], {
    LoadBalancerArn: listeners[1]!.LoadBalancerArn,
    Port: 443,
    Protocol: 'HTTPS',
    Certificates: [{ CertificateArn: CERTIFICATE }],
    SslPolicy: 'ELBSecurityPolicy-TLS13-1-2-2021-06',
    DefaultActions: [{ Type: 'forward', TargetGroupArn: { Ref: targetsId } }],
  });
  t.same(listeners[0]!.DefaultActions, [{ Type: 'redirect', RedirectConfig: { Protocol: 'HTTPS', Port: '443', StatusCode: 'HTTP_301' } }], '80 forwards nothing');
  const attributes = one(s, 'AWS::ElasticLoadBalancingV2::LoadBalancer').LoadBalancerAttributes;
  t.equal(one(s, 'AWS::ElasticLoadBalancingV2::LoadBalancer').Scheme, 'internet-facing');
  t.equal(attribute(attributes, 'routing.http.drop_invalid_header_fields.enabled'), 'true');
  t.equal(attribute(attributes, 'access_logs.s3.enabled'), 'true');
});

t.test('the target group: ip targets on the ingest port only, health checked on /readyz; /metrics is not behind the load balancer', async (t) => {
  const s = configs.default;
  const env = environment(s);
  t.match(one(s, 'AWS::ElasticLoadBalancingV2::TargetGroup'), { TargetType: 'ip', Port: 8080, Protocol: 'HTTP', HealthCheckPath: '/readyz' });
  const service = one(s, 'AWS::ECS::Service');
  t.same(service.LoadBalancers.map((lb: { ContainerName: string; ContainerPort: number }) => [lb.ContainerName, lb.ContainerPort]), [['ingest', 8080]]);
  t.ok(Number(env.METRICS_PORT) > 0 && env.METRICS_PORT !== '8080', 'METRICS_PORT is a port of its own');
  // Only the load balancer reaches the tasks, and only on the ingest port.
  const toTasks = ofType(s, 'AWS::EC2::SecurityGroupIngress').map(([, r]) => r.Properties).filter((p) => JSON.stringify(p.GroupId).includes('ServiceSecurityGroup'));
  t.same(toTasks.map((p) => [p.FromPort, p.ToPort, JSON.stringify(p.SourceSecurityGroupId).includes('AlbSecurityGroup')]), [[8080, 8080, true]]);
});

t.test('private subnets: VPC endpoints by default, reachable from the tasks only; NAT gateways with egress=nat', async (t) => {
  const s = configs.default;
  const endpoints = ofType(s, 'AWS::EC2::VPCEndpoint').map(([, r]) => r.Properties);
  const names = endpoints.map((p) => (typeof p.ServiceName === 'string' ? p.ServiceName : JSON.stringify(p.ServiceName)).replace(/.*eu-west-1\.|.*"\.(\w+)"\]\]\}$/, '$1'));
  t.same(names.sort(), ['ecr.api', 'ecr.dkr', 'logs', 's3', 'secretsmanager', 'ssmmessages']);
  t.same(endpoints.find((p) => p.VpcEndpointType === 'Gateway')?.ServiceName, { 'Fn::Join': ['', ['com.amazonaws.', { Ref: 'AWS::Region' }, '.s3']] });
  for (const p of endpoints.filter((p) => p.VpcEndpointType === 'Interface')) t.equal(p.PrivateDnsEnabled, true);
  t.equal(ofType(s, 'AWS::EC2::NatGateway').length, 0);
  t.equal(one(s, 'AWS::ECS::Service').NetworkConfiguration.AwsvpcConfiguration.AssignPublicIp, 'DISABLED');
  // Each interface endpoint's security group lets in 443 from the tasks' group, not the whole VPC.
  const interfaceGroups = ofType(s, 'AWS::EC2::SecurityGroup').filter(([id]) => /^Vpc(EcrApi|EcrDocker|Logs|SsmMessages|SecretsManager)SecurityGroup/.test(id));
  t.equal(interfaceGroups.length, 5);
  for (const [id, group] of interfaceGroups) {
    t.same(group.Properties.SecurityGroupIngress, undefined, `${id}: no CIDR rule`);
    const ingress = ofType(s, 'AWS::EC2::SecurityGroupIngress').map(([, r]) => r.Properties).filter((p) => p.GroupId['Fn::GetAtt']?.[0] === id);
    t.same(ingress.map((p) => [p.FromPort, p.SourceSecurityGroupId['Fn::GetAtt'][0]]), [[443, 'ServiceSecurityGroupC96ED6A7']], `${id}: 443 from the tasks`);
  }
  t.equal(ofType(configs.other, 'AWS::EC2::VPCEndpoint').length, 0, 'egress=nat: no endpoints');
  t.equal(ofType(configs.other, 'AWS::EC2::NatGateway').length, 2, 'egress=nat: a NAT gateway per zone');
});

t.test('an existing VPC: nothing of the network created but the endpoints, in its private subnets; the load balancer in its public ones', async (t) => {
  const s = configs.existingVpc;
  t.equal(ofType(s, 'AWS::EC2::VPC').length, 0);
  t.equal(ofType(s, 'AWS::EC2::Subnet').length, 0);
  const endpoints = ofType(s, 'AWS::EC2::VPCEndpoint').map(([, r]) => r.Properties);
  t.equal(endpoints.length, 6);
  for (const endpoint of endpoints) t.equal(endpoint.VpcId, VPC_ID);
  t.same(one(s, 'AWS::ECS::Service').NetworkConfiguration.AwsvpcConfiguration.Subnets, ['subnet-0000000000000000c', 'subnet-0000000000000000d']);
  t.same(one(s, 'AWS::ElasticLoadBalancingV2::LoadBalancer').Subnets, ['subnet-0000000000000000a', 'subnet-0000000000000000b']);
  t.same(endpoints.find((p) => p.VpcEndpointType === 'Gateway')?.RouteTableIds, ['rtb-0000000000000000c', 'rtb-0000000000000000d'], 'the S3 gateway on the private subnets\' routes');
});

t.test('deployments: the circuit breaker rolls a revision back; ECS Exec on, logged to a group of its own; deploy/ecs/service.json\'s values', async (t) => {
  const service = json('deploy/ecs/service.json');
  t.same(service.deploymentConfiguration.deploymentCircuitBreaker, { enable: true, rollback: true }, 'deploy/ecs/service.json rolls back too');
  for (const [name, s] of Object.entries(configs)) {
    t.match(one(s, 'AWS::ECS::Service'), {
      DeploymentConfiguration: { DeploymentCircuitBreaker: { Enable: true, Rollback: true }, MinimumHealthyPercent: service.deploymentConfiguration.minimumHealthyPercent, MaximumPercent: service.deploymentConfiguration.maximumPercent },
      EnableExecuteCommand: true,
      HealthCheckGracePeriodSeconds: service.healthCheckGracePeriodSeconds,
      DesiredCount: service.desiredCount,
      LaunchType: 'FARGATE',
    }, name);
    t.match(one(s, 'AWS::ECS::Cluster').Configuration.ExecuteCommandConfiguration, { Logging: 'OVERRIDE', LogConfiguration: { CloudWatchLogGroupName: { Ref: /^ExecLogs/ } } });
  }
});

t.test('API_KEYS from Secrets Manager, never in the environment; the execution role reads that secret', async (t) => {
  const s = configs.default;
  const [secretId] = ofType(s, 'AWS::SecretsManager::Secret').map(([id]) => id);
  const container = ingestContainer(s);
  t.same(container.Secrets, [{ Name: 'API_KEYS', ValueFrom: { Ref: secretId } }]);
  t.notOk('API_KEYS' in environment(s));
  t.match(one(s, 'AWS::SecretsManager::Secret').GenerateSecretString, { ExcludePunctuation: true }, 'a generated key has no comma to split it');
  const execution = ofType(s, 'AWS::IAM::Policy').find(([id]) => id.startsWith('TaskExecutionRole'))![1].Properties.PolicyDocument.Statement as { Action: string[]; Resource: unknown }[];
  t.ok(execution.some((st) => st.Action.includes('secretsmanager:GetSecretValue') && JSON.stringify(st.Resource) === JSON.stringify({ Ref: secretId })), 'GetSecretValue on that secret only');
});

t.test('the buckets: public access blocked, TLS only, encrypted (SSE-S3, or the stack\'s KMS key), a lifecycle; the task role only PUTs under S3_PREFIX', async (t) => {
  for (const [name, s] of Object.entries(configs)) {
    const buckets = ofType(s, 'AWS::S3::Bucket');
    t.equal(buckets.length, 2, `${name}: the events and the access logs`);
    for (const [id, bucket] of buckets) {
      t.same(bucket.Properties.PublicAccessBlockConfiguration, { BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true }, `${name} ${id}: public access blocked`);
      t.ok(bucket.Properties.LifecycleConfiguration.Rules.length > 0, `${name} ${id}: a lifecycle`);
      const policy = ofType(s, 'AWS::S3::BucketPolicy').find(([, p]) => p.Properties.Bucket.Ref === id)![1].Properties.PolicyDocument.Statement as Record<string, any>[];
      t.ok(policy.some((st) => st.Effect === 'Deny' && st.Principal.AWS === '*' && st.Action === 's3:*' && st.Condition.Bool['aws:SecureTransport'] === 'false'), `${name} ${id}: TLS only`);
    }
    const events = buckets.find(([id]) => id.startsWith('Events'))![1].Properties;
    t.equal(events.LifecycleConfiguration.Rules[0].ExpirationInDays, name === 'other' ? 400 : undefined, `${name}: retentionDays expires objects, unset keeps them`);
    const encryption = events.BucketEncryption.ServerSideEncryptionConfiguration[0];
    t.equal(encryption.ServerSideEncryptionByDefault.SSEAlgorithm, name === 'other' ? 'aws:kms' : 'AES256', `${name}: encryption`);
    t.match(events.LoggingConfiguration, { DestinationBucketName: { Ref: /^AccessLogs/ } }, `${name}: server access logs`);
    const role = ofType(s, 'AWS::IAM::Policy').find(([id]) => id.startsWith('TaskRole'))![1].Properties.PolicyDocument.Statement as { Action: string | string[]; Resource: unknown }[];
    const s3Actions = role.flatMap((st) => [st.Action].flat()).filter((a) => a.startsWith('s3:'));
    t.same(s3Actions, ['s3:PutObject'], `${name}: no reads, lists or deletes`);
    t.same(role.find((st) => st.Action === 's3:PutObject')!.Resource, { 'Fn::Join': ['', [{ 'Fn::GetAtt': [buckets.find(([id]) => id.startsWith('Events'))![0], 'Arn'] }, '/raw/*']] }, `${name}: under S3_PREFIX`);
  }
  const kms = ingestContainer(configs.other).Environment as { Name: string; Value: unknown }[];
  t.match(Object.fromEntries(kms.map((e) => [e.Name, e.Value])), { S3_SSE: 'aws:kms', S3_SSE_KMS_KEY_ID: { 'Fn::GetAtt': [/^BucketKey/, 'Arn'] } });
});

t.test('the container is deploy/ecs\'s task definition: the same settings, and an environment the server\'s own configuration accepts', async (t) => {
  const known = configVariables();
  for (const [name, s] of Object.entries(configs)) {
    const props = { efs: name === 'efs' };
    const task = json(taskJsonPath(props));
    const [source] = task.containerDefinitions;
    const defined = one(s, 'AWS::ECS::TaskDefinition');
    const container = ingestContainer(s);
    t.equal(defined.Cpu, task.cpu, `${name}: cpu`);
    t.equal(Number(defined.Memory), Number(task.memory) + (name === 'other' ? 512 : 0), `${name}: memory, plus the sidecar's`);
    t.same(defined.RuntimePlatform, { CpuArchitecture: task.runtimePlatform.cpuArchitecture, OperatingSystemFamily: task.runtimePlatform.operatingSystemFamily });
    t.same(defined.EphemeralStorage, task.ephemeralStorage ? { SizeInGiB: task.ephemeralStorage.sizeInGiB } : undefined);
    t.same(container.PortMappings.map((p: { Name: string; ContainerPort: number }) => [p.Name, p.ContainerPort]), source.portMappings.map((p: { name: string; containerPort: number }) => [p.name, p.containerPort]));
    t.equal(container.StopTimeout, source.stopTimeout);
    t.same(container.HealthCheck, { Command: source.healthCheck.command, Interval: source.healthCheck.interval, Timeout: source.healthCheck.timeout, Retries: source.healthCheck.retries, StartPeriod: source.healthCheck.startPeriod });
    t.same(container.Ulimits, source.ulimits.map((u: { name: string; softLimit: number; hardLimit: number }) => ({ Name: u.name, SoftLimit: u.softLimit, HardLimit: u.hardLimit })));
    t.equal(container.LinuxParameters.InitProcessEnabled, true, 'an init process for ECS Exec');
    const env = environment(s);
    const expected = Object.fromEntries(source.environment.map((e: { name: string; value: string }) => [e.name, e.value]));
    for (const [key, value] of Object.entries(expected)) if (key !== 'S3_BUCKET') t.equal(env[key], value, `${name}: ${key} as in ${taskJsonPath(props)}`);
    t.same(env.S3_BUCKET, { Ref: Object.keys(s.resources).find((id) => id.startsWith('Events')) }, `${name}: S3_BUCKET is the stack's bucket`);
    for (const key of Object.keys(env)) t.ok(known.has(key), `${name}: ${key} is a variable the server reads`);
    // The values CloudFormation fills in (bucket name, key ARN) stand in as plausible strings.
    const resolved = Object.fromEntries(Object.entries(env).map(([key, value]) => [key, typeof value === 'string' ? value : key === 'S3_BUCKET' ? 'eventingest-events-1a2b3c' : 'arn:aws:kms:eu-west-1:123456789012:key/0a1b2c3d']));
    const config = loadConfig({ ...resolved, API_KEYS: 'k1' });
    t.equal(config.metricsPort, Number(env.METRICS_PORT), `${name}: the server accepts the environment`);
    if (name === 'efs') t.equal(config.ackLevel, 'disk');
    if (name === 'other') t.same(config.corsOrigins, ['https://app.example.com']);
  }
});

t.test('the image asset: built from the repository\'s Dockerfile for the task\'s CPU architecture', async (t) => {
  const { outdir } = configs.default;
  const images = Object.values(JSON.parse(readFileSync(`${outdir}/EventIngest.assets.json`, 'utf8')).dockerImages as Record<string, { source: { directory: string; platform: string } }>);
  t.equal(images.length, 1);
  t.equal(images[0]!.source.platform, 'linux/amd64', 'X86_64 tasks get an amd64 image, whatever machine builds it');
  t.equal(json('deploy/ecs/task-definition.json').runtimePlatform.cpuArchitecture, 'X86_64');
  t.equal(readFileSync(`${outdir}/${images[0]!.source.directory}/Dockerfile`, 'utf8'), readFileSync(`${ROOT}Dockerfile`, 'utf8'));
});

t.test('EFS: the WAL and DLQ on an encrypted file system through an access point as the image\'s user, mounted at DURABLE_ROOT', async (t) => {
  const s = configs.efs;
  t.match(one(s, 'AWS::EFS::FileSystem'), { Encrypted: true, ThroughputMode: 'elastic', PerformanceMode: 'generalPurpose' });
  t.match(one(s, 'AWS::EFS::AccessPoint'), { PosixUser: { Uid: '1000', Gid: '1000' }, RootDirectory: { CreationInfo: { OwnerUid: '1000', OwnerGid: '1000', Permissions: '755' } } });
  const task = one(s, 'AWS::ECS::TaskDefinition');
  t.match(task.Volumes, [{ Name: 'durable', EFSVolumeConfiguration: { TransitEncryption: 'ENABLED', AuthorizationConfig: { IAM: 'ENABLED', AccessPointId: { Ref: /^DurableAccessPoint/ } } } }]);
  t.same(ingestContainer(s).MountPoints, [{ SourceVolume: 'durable', ContainerPath: environment(s).DURABLE_ROOT, ReadOnly: false }]);
  const nfs = ofType(s, 'AWS::EC2::SecurityGroupIngress').map(([, r]) => r.Properties).filter((p) => p.FromPort === 2049);
  t.same(nfs.map((p) => p.SourceSecurityGroupId['Fn::GetAtt'][0]), ['ServiceSecurityGroupC96ED6A7'], 'NFS from the tasks only');
  const role = ofType(s, 'AWS::IAM::Policy').find(([id]) => id.startsWith('TaskRole'))![1].Properties.PolicyDocument.Statement as Record<string, any>[];
  const mount = role.find((st) => st.Sid === 'EfsDurableVolumeThroughItsAccessPoint')!;
  t.same(mount.Action, ['elasticfilesystem:ClientMount', 'elasticfilesystem:ClientWrite']);
  t.ok(mount.Condition.StringEquals['elasticfilesystem:AccessPointArn'], 'only through the access point');
  t.equal(ofType(configs.default, 'AWS::EFS::FileSystem').length, 0, 'no file system without the flag');
});

t.test('autoscaling on deploy/ecs/autoscaling.json\'s signals: CPU and requests per target', async (t) => {
  const scaling = json('deploy/ecs/autoscaling.json');
  const s = configs.default;
  t.match(one(s, 'AWS::ApplicationAutoScaling::ScalableTarget'), { MinCapacity: scaling.scalableTarget.MinCapacity, MaxCapacity: scaling.scalableTarget.MaxCapacity, ScalableDimension: 'ecs:service:DesiredCount' });
  const policies = ofType(s, 'AWS::ApplicationAutoScaling::ScalingPolicy').map(([, r]) => r.Properties.TargetTrackingScalingPolicyConfiguration);
  const expected = scaling.policies.map((p: { TargetTrackingScalingPolicyConfiguration: Record<string, any> }) => p.TargetTrackingScalingPolicyConfiguration);
  t.same(
    policies.map((p) => [p.PredefinedMetricSpecification.PredefinedMetricType, p.TargetValue, p.ScaleOutCooldown, p.ScaleInCooldown]).sort(),
    expected.map((p: Record<string, any>) => [p.PredefinedMetricSpecification.PredefinedMetricType, p.TargetValue, p.ScaleOutCooldown, p.ScaleInCooldown]).sort(),
  );
});

t.test('the alarms are deploy/cloudwatch/alarms.json\'s, notifying the stack\'s topic; the ADOT sidecar scrapes METRICS_PORT into Amazon Managed Prometheus', async (t) => {
  const source = json('deploy/cloudwatch/alarms.json').Resources as Resources;
  const s = configs.default;
  const [topicId] = ofType(s, 'AWS::SNS::Topic').map(([id]) => id);
  for (const [id, alarm] of Object.entries(source)) {
    const synthesized = s.resources[id];
    t.equal(synthesized?.Type, 'AWS::CloudWatch::Alarm', `${id} is in the stack`);
    t.same(synthesized?.Properties.AlarmActions, [{ Ref: topicId }], `${id}: notifies the topic`);
    t.same(synthesized?.Properties.OKActions, [{ Ref: topicId }]);
    t.equal(synthesized?.Properties.AlarmDescription, alarm.Properties.AlarmDescription);
  }
  t.equal(ofType(s, 'AWS::CloudWatch::Alarm').length, Object.keys(source).length);
  t.equal(s.template.toJSON().Parameters?.AlarmTopicArn, undefined, 'no parameter left to fill in');
  t.equal(environment(s).METRICS_EMF, 'true', 'the alarms\' metrics arrive as EMF through awslogs');
  // The EMF lines' Service dimension (test/metrics/emf.test.ts).
  const dimensions = ofType(s, 'AWS::CloudWatch::Alarm').flatMap(([, a]) => [a.Properties.Dimensions ?? [], ...(a.Properties.Metrics ?? []).map((m: { MetricStat?: { Metric: { Dimensions: unknown[] } } }) => m.MetricStat?.Metric.Dimensions ?? [])]).flat();
  t.ok(dimensions.length >= Object.keys(source).length);
  t.same(new Set(dimensions.map((d) => JSON.stringify(d))), new Set([JSON.stringify({ Name: 'Service', Value: 'event-ingest' })]), 'every alarm watches Service=event-ingest');
  const other = configs.other;
  const adot = (one(other, 'AWS::ECS::TaskDefinition').ContainerDefinitions as Record<string, any>[]).find((c) => c.Name === 'adot')!;
  t.equal(adot.Essential, false, 'losing metrics does not stop ingest');
  const config = JSON.stringify(adot.Environment[0].Value);
  t.match(config, `targets: ['127.0.0.1:${environment(other).METRICS_PORT}']`);
  t.match(config, 'prometheusremotewrite');
  t.equal(ofType(configs.default, 'AWS::APS::Workspace').length, 0);
  t.same(ofType(configs.other, 'AWS::SNS::Subscription').map(([, r]) => [r.Properties.Protocol, r.Properties.Endpoint]), [['email', 'ops@example.com']], 'alarmEmail subscribes');
  t.equal(ofType(configs.default, 'AWS::SNS::Subscription').length, 0);
});

t.test('cdk-nag\'s AWS Solutions rules pass, and every acknowledged finding is named and says why', async (t) => {
  const acknowledged = new Map<string, string>();
  for (const [name, s] of Object.entries(configs)) {
    const report = new cdkNag.AwsSolutionsChecks().validateScope(s.stack);
    t.same(report.violations.map((v) => `${v.ruleName}: ${v.violatingResources.map((r) => r.resourceLogicalId).join(', ')}`), [], `${name}: no finding left`);
    for (const construct of s.stack.node.findAll()) {
      for (const entry of construct.node.metadata) {
        if (entry.type !== 'aws:cdk:acknowledged-rules') continue;
        for (const [id, reason] of Object.entries(entry.data as Record<string, string>)) {
          if (!id.includes('AwsSolutions-')) continue; // CDK's own, for its template validation
          acknowledged.set(`${construct.node.path.replace(/^EventIngest\//, '')} ${id.replace(/^Annotation::/, '').replace(/<[\w.]+?[0-9A-F]{8}(\.Arn)?>/g, '<ref>')}`, reason);
        }
      }
    }
  }
  // Each one is reviewed: a new acknowledgment must be added here too.
  t.same([...acknowledged.keys()].sort(), [
    'AccessLogs AwsSolutions-S1',
    'Alarms AwsSolutions-SNS2',
    'Alb AwsSolutions-EC23',
    'ApiKeys AwsSolutions-SMG4',
    'Task AwsSolutions-ECS2',
    'Task/ExecutionRole AwsSolutions-IAM5[Resource::*]',
    'TaskRole AwsSolutions-IAM5[Resource::*]',
    'TaskRole AwsSolutions-IAM5[Resource::<ref>/raw/*]',
    'TaskRole AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:eu-west-1:123456789012:log-group:<ref>:*]',
  ]);
  for (const [id, reason] of acknowledged) t.ok(reason.length >= 60, `${id}: ${reason}`);
});

t.test('the context is checked before anything is built: a missing certificate, an unknown choice, the sidecar without a way to its image', async (t) => {
  t.throws(() => settingsFromContext(new App({ context: {} })), /context "certificateArn" should be the ARN of an ACM certificate/);
  t.throws(() => settingsFromContext(newApp({ egress: 'nat-gateway' })), /context "egress" should be one of endpoints, nat, got "nat-gateway"/);
  t.throws(() => settingsFromContext(newApp({ efs: 'yes' })), /context "efs" should be one of false, true/);
  t.throws(() => settingsFromContext(newApp({ retentionDays: '30d' })), /"retentionDays" should be a whole number/);
  const app = newApp({ metrics: 'amp' });
  t.throws(() => new IngestStack(app, 'EventIngest', { env: ENV, ...settingsFromContext(app) }), /metrics=amp pulls the ADOT collector from ECR Public/);
  t.match(settingsFromContext(newApp({ efs: 'true', retentionDays: '400' })), { efs: true, retentionDays: 400, egress: 'endpoints', metrics: 'emf', kms: false, corsOrigins: '' });
});

t.test('deploy/README.md\'s table of values that must agree says what the stack sets', async (t) => {
  const readme = readFileSync(`${ROOT}deploy/README.md`, 'utf8');
  const section = readme.split('\n## Values that must agree\n')[1]?.split('\n## ')[0] ?? '';
  const rows = new Map(section.split('\n').filter((line) => line.startsWith('| ') && !line.startsWith('| what') && !line.startsWith('|---')).map((line) => {
    const [what, value] = line.split('|').slice(1, -1).map((cell) => cell.trim());
    return [what!, /`([^`]+)`/.exec(value!)?.[1]];
  }));
  const s = configs.default;
  const env = environment(s);
  const targets = one(s, 'AWS::ElasticLoadBalancingV2::TargetGroup');
  const https = ofType(s, 'AWS::ElasticLoadBalancingV2::Listener').find(([, r]) => r.Properties.Protocol === 'HTTPS')?.[1].Properties;
  const expected: Record<string, string> = {
    'client keep-alive idle': `< ${ALB_IDLE_TIMEOUT_S}`,
    'ALB idle timeout': String(ALB_IDLE_TIMEOUT_S),
    'server keep-alive idle timeout': String(SERVER_KEEP_ALIVE_IDLE_S),
    'deregistration delay': String(DEREGISTRATION_DELAY_S),
    '`stopTimeout`': String(ingestContainer(s).StopTimeout),
    '`SHUTDOWN_TIMEOUT_MS`': env.SHUTDOWN_TIMEOUT_MS,
    'target group': `${targets.TargetType}, ${targets.Protocol} ${targets.Port}`,
    'health check': targets.HealthCheckPath,
    '`METRICS_PORT`': env.METRICS_PORT,
    'HTTPS listener': https ? `${https.Port}, ${https.SslPolicy}` : 'none',
    'health check grace period': String(one(s, 'AWS::ECS::Service').HealthCheckGracePeriodSeconds),
    'CPU architecture': `${one(s, 'AWS::ECS::TaskDefinition').RuntimePlatform.CpuArchitecture}, linux/amd64`,
  };
  t.same(Object.fromEntries([...rows].filter(([what]) => what in expected)), expected, 'every value the test knows is in the table as the stack sets it');
  t.ok(rows.size >= Object.keys(expected).length);
});

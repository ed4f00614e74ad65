// The whole deployment as one CDK stack: bucket, image, Fargate service, load balancer with TLS,
// private networking, secret, autoscaling, alarms and, as flags, the EFS durable root and an ADOT
// sidecar. The container's settings are not written here: they are read from the task
// definitions in deploy/ecs, and the scaling targets from deploy/ecs/autoscaling.json, so the kit
// for CDK and the kit for everyone else cannot drift apart (test/deploy/cdk.test.ts).
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ArnFormat, CfnOutput, Duration, RemovalPolicy, Stack, type StackProps, Validations } from 'aws-cdk-lib';
import * as aps from 'aws-cdk-lib/aws-aps';
import * as certificates from 'aws-cdk-lib/aws-certificatemanager';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as efs from 'aws-cdk-lib/aws-efs';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import { CfnInclude } from 'aws-cdk-lib/cloudformation-include';
import type { Construct } from 'constructs';

/**
 * The server keeps an idle keep-alive connection open at least this long: its HTTP_IDLE_TIMEOUT_S
 * default (src/config/table.ts; test/deploy/cdk.test.ts checks they agree, and that the task
 * definition does not set another).
 */
export const SERVER_KEEP_ALIVE_IDLE_S = 65;
/**
 * The load balancer closes an idle connection to a task before the server does, so it never sends
 * a request on a connection the server has just closed: that race is the classic source of
 * sporadic 502s, which for an ingest endpoint means retries and duplicates. AWS's default, which
 * also outlasts the longest wait for an answer (ACK_TIMEOUT_MS, 30 s, at ACK_LEVEL=s3): the
 * balancer gives up on a request that sends nothing for this long.
 */
export const ALB_IDLE_TIMEOUT_S = 60;
/**
 * ECS deregisters a task from the target group and waits this long (the target draining, no new
 * requests) before it sends SIGTERM. At least the longest wait for an answer (ACK_TIMEOUT_MS at
 * ACK_LEVEL=s3; at the other levels answers take milliseconds), so every request in flight at
 * deregistration is answered before the server starts its shutdown. The server's own shutdown
 * then runs within stopTimeout (SHUTDOWN_TIMEOUT_MS + 5 s).
 */
export const DEREGISTRATION_DELAY_S = 30;

/** The ADOT collector's image on ECR Public; no VPC endpoint reaches ECR Public (context `adotImage`). */
const ADOT_IMAGE = 'public.ecr.aws/aws-observability/aws-otel-collector:v0.49.0';

export interface IngestStackProps extends StackProps {
  /** An ACM certificate in the stack's region for the HTTPS listener. */
  readonly certificateArn: string;
  /** CORS_ORIGINS as the server reads it; empty: no CORS. */
  readonly corsOrigins: string;
  /** Deploy into this existing VPC (looked up at synth); unset: a new VPC over two zones. */
  readonly vpcId: string | undefined;
  /** How tasks in private subnets reach AWS: VPC endpoints, or NAT gateways (the VPC's own, for an existing VPC). */
  readonly egress: 'endpoints' | 'nat';
  /** ACK_LEVEL=disk with the WAL and DLQ on EFS (DURABLE_ROOT), deploy/ecs/task-definition-efs.json. */
  readonly efs: boolean;
  /** SSE-KMS with a key of the stack's own instead of SSE-S3. */
  readonly kms: boolean;
  /** `emf`: the server's EMF lines through awslogs (CloudWatch); `amp`: also an ADOT sidecar scraping METRICS_PORT into Amazon Managed Prometheus. */
  readonly metrics: 'emf' | 'amp';
  /** The ADOT collector image, for a private ECR copy when the tasks have no NAT. */
  readonly adotImage: string | undefined;
  /** Subscribed to the alarms' topic, if set. */
  readonly alarmEmail: string | undefined;
  /** Event objects expire after this many days; unset: kept. */
  readonly retentionDays: number | undefined;
}

interface EcsTaskJson {
  cpu: string;
  memory: string;
  runtimePlatform: { cpuArchitecture: string };
  ephemeralStorage?: { sizeInGiB: number };
  containerDefinitions: {
    name: string;
    portMappings: { name: string; containerPort: number }[];
    environment: { name: string; value: string }[];
    stopTimeout: number;
    healthCheck: { command: string[]; interval: number; timeout: number; retries: number; startPeriod: number };
    ulimits: { name: ecs.UlimitName; softLimit: number; hardLimit: number }[];
    mountPoints?: { sourceVolume: string; containerPath: string; readOnly: boolean }[];
  }[];
  volumes?: { name: string }[];
}

interface TargetTracking {
  TargetTrackingScalingPolicyConfiguration: { TargetValue: number; ScaleOutCooldown: number; ScaleInCooldown: number; PredefinedMetricSpecification: { PredefinedMetricType: string } };
}

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const readJson = <T>(path: string) => JSON.parse(readFileSync(`${REPO_ROOT}${path}`, 'utf8')) as T;

/** The task definition this deployment mirrors: the EFS one with `efs`. */
export function taskJsonPath(props: Pick<IngestStackProps, 'efs'>): string {
  return props.efs ? 'deploy/ecs/task-definition-efs.json' : 'deploy/ecs/task-definition.json';
}

export class IngestStack extends Stack {
  /** The interface endpoints (egress=endpoints), which only the tasks may reach. */
  private readonly endpoints: ec2.InterfaceVpcEndpoint[] = [];

  constructor(scope: Construct, id: string, props: IngestStackProps) {
    super(scope, id, props);
    if (props.metrics === 'amp' && props.egress === 'endpoints' && props.adotImage === undefined) {
      throw new Error('metrics=amp pulls the ADOT collector from ECR Public, which no VPC endpoint reaches: set egress=nat, or adotImage to a copy in your private ECR');
    }
    const task = readJson<EcsTaskJson>(taskJsonPath(props));
    const container = task.containerDefinitions[0]!;
    const env = Object.fromEntries(container.environment.map((e) => [e.name, e.value]));
    const prefix = env.S3_PREFIX!;

    const vpc = this.network(props);
    const taskSubnets = this.taskSubnets(vpc, props);
    const accessLogs = this.accessLogsBucket();
    const key = props.kms ? new kms.Key(this, 'BucketKey', { enableKeyRotation: true, description: 'event-ingest: SSE-KMS of the event objects' }) : undefined;
    const bucket = this.bucket(accessLogs, key, props);

    const apiKeys = new secretsmanager.Secret(this, 'ApiKeys', {
      description: 'event-ingest API_KEYS: comma-separated keys, one of which every POST must carry',
      // One key to start with; no punctuation, so no comma splits it.
      generateSecretString: { passwordLength: 40, excludePunctuation: true },
    });
    Validations.of(apiKeys).acknowledge({
      id: 'AwsSolutions-SMG4',
      reason: 'The keys are shared with the clients that send events: a rotation Lambda cannot hand a new key to them. Rotate by hand (deploy/README.md): add the new key, move the clients, remove the old one.',
    });

    const taskRole = new iam.Role(this, 'TaskRole', { assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com'), description: 'event-ingest tasks: PUT event objects under S3_PREFIX, nothing else on S3' });
    // The server only PUTs (batches, DLQ re-uploads, the start-up preflight): no reads, no lists.
    taskRole.addToPolicy(new iam.PolicyStatement({ sid: 'PutEventObjectsOnly', actions: ['s3:PutObject'], resources: [bucket.arnForObjects(`${prefix}/*`)] }));
    if (key !== undefined) {
      taskRole.addToPolicy(new iam.PolicyStatement({ sid: 'EncryptWithTheBucketKeyOnlyThroughS3', actions: ['kms:GenerateDataKey'], resources: [key.keyArn], conditions: { StringEquals: { 'kms:ViaService': `s3.${this.region}.amazonaws.com` } } }));
    }

    const sidecar = props.metrics === 'amp';
    const taskDefinition = new ecs.FargateTaskDefinition(this, 'Task', {
      cpu: Number(task.cpu),
      // The ingest container keeps the task definition's memory (its bounds are sized to it); the sidecar's comes on top.
      memoryLimitMiB: Number(task.memory) + (sidecar ? SIDECAR_TASK_MEMORY_MIB : 0),
      runtimePlatform: { cpuArchitecture: ecs.CpuArchitecture.of(task.runtimePlatform.cpuArchitecture), operatingSystemFamily: ecs.OperatingSystemFamily.LINUX },
      ephemeralStorageGiB: task.ephemeralStorage?.sizeInGiB,
      taskRole,
    });
    const logGroup = new logs.LogGroup(this, 'Logs', { retention: logs.RetentionDays.ONE_MONTH, removalPolicy: RemovalPolicy.RETAIN });
    const environment: Record<string, string> = { ...env, S3_BUCKET: bucket.bucketName };
    if (props.corsOrigins !== '') environment.CORS_ORIGINS = props.corsOrigins;
    if (key !== undefined) Object.assign(environment, { S3_SSE: 'aws:kms', S3_SSE_KMS_KEY_ID: key.keyArn });
    const ingest = taskDefinition.addContainer('ingest', {
      containerName: container.name,
      // Built by `cdk deploy` from the repository's Dockerfile for the task's CPU architecture, so
      // an image built on an arm64 laptop still starts on x86_64 tasks.
      image: ecs.ContainerImage.fromAsset(REPO_ROOT, { platform: IMAGE_PLATFORM[task.runtimePlatform.cpuArchitecture] }),
      essential: true,
      portMappings: container.portMappings.map((p) => ({ name: p.name, containerPort: p.containerPort })),
      environment,
      secrets: { API_KEYS: ecs.Secret.fromSecretsManager(apiKeys) },
      stopTimeout: Duration.seconds(container.stopTimeout),
      healthCheck: {
        command: container.healthCheck.command,
        interval: Duration.seconds(container.healthCheck.interval),
        timeout: Duration.seconds(container.healthCheck.timeout),
        retries: container.healthCheck.retries,
        startPeriod: Duration.seconds(container.healthCheck.startPeriod),
      },
      linuxParameters: new ecs.LinuxParameters(this, 'Linux', { initProcessEnabled: true }),
      logging: ecs.LogDrivers.awsLogs({ logGroup, streamPrefix: 'ingest' }),
    });
    ingest.addUlimits(...container.ulimits);
    Validations.of(taskDefinition).acknowledge({
      id: 'AwsSolutions-ECS2',
      reason: 'The environment holds settings only (bucket name, sizes, ports, timeouts: deploy/ecs/task-definition.json); the one secret, API_KEYS, comes from Secrets Manager.',
    });
    Validations.of(taskDefinition.obtainExecutionRole()).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason: 'ecr:GetAuthorizationToken, which pulling the image needs, has no resource to scope to; every other action of the execution role is on the image repository, the log group and the secret.',
    });
    Validations.of(taskRole).acknowledge(
      { id: 'AwsSolutions-IAM5[Resource::*]', reason: 'The ssmmessages actions of ECS Exec (the dlq command in a running task), and logs:DescribeLogGroups with which it finds its session log group, have no resource to scope to.' },
      { id: `AwsSolutions-IAM5[Resource::${nagName(this, bucket.arnForObjects(`${prefix}/*`))}]`, reason: `s3:PutObject on the objects under S3_PREFIX only: every batch has a key of its own (${prefix}/YYYY/MM/DD/HH/<batch id>.jsonl.gz, README.md), so no narrower resource exists.` },
    );

    // What operators run through ECS Exec is logged to a group of its own, and the task role may
    // write to that group only (the default would let it write to every group).
    const execLogs = new logs.LogGroup(this, 'ExecLogs', { retention: logs.RetentionDays.ONE_YEAR, removalPolicy: RemovalPolicy.RETAIN });
    const cluster = new ecs.Cluster(this, 'Cluster', {
      vpc,
      containerInsightsV2: ecs.ContainerInsights.ENABLED,
      executeCommandConfiguration: { logging: ecs.ExecuteCommandLogging.OVERRIDE, logConfiguration: { cloudWatchLogGroup: execLogs } },
    });
    Validations.of(taskRole).acknowledge({
      id: `AwsSolutions-IAM5[Resource::${nagName(this, this.formatArn({ service: 'logs', resource: 'log-group', arnFormat: ArnFormat.COLON_RESOURCE_NAME, resourceName: `${execLogs.logGroupName}:*` }))}]`,
      reason: 'The streams of the ECS Exec session log group, which the SSM agent names per session.',
    });
    const service = new ecs.FargateService(this, 'Service', {
      cluster,
      taskDefinition,
      desiredCount: SERVICE.desiredCount,
      minHealthyPercent: SERVICE.deploymentConfiguration.minimumHealthyPercent,
      maxHealthyPercent: SERVICE.deploymentConfiguration.maximumPercent,
      healthCheckGracePeriod: Duration.seconds(SERVICE.healthCheckGracePeriodSeconds),
      // A revision whose tasks never become healthy (/readyz) is rolled back to the last good one.
      circuitBreaker: SERVICE.deploymentConfiguration.deploymentCircuitBreaker,
      enableExecuteCommand: SERVICE.enableExecuteCommand,
      vpcSubnets: taskSubnets,
      assignPublicIp: false,
    });

    for (const endpoint of this.endpoints) endpoint.connections.allowDefaultPortFrom(service);
    if (props.efs) this.durableRoot(vpc, taskSubnets, service, taskDefinition, ingest, task);
    if (sidecar) this.prometheusSidecar(taskDefinition, taskRole, logGroup, props, env.METRICS_PORT!);

    const port = container.portMappings[0]!.containerPort;
    const { alb, targets } = this.loadBalancer(vpc, accessLogs, service.loadBalancerTarget({ containerName: container.name, containerPort: port }), port, props);
    this.autoscaling(service, targets);
    this.alarms(props);

    // What deploy/README.md's first deployment uses next: the DNS record, the key, the smoke test, the logs.
    new CfnOutput(this, 'LoadBalancerDns', { value: alb.loadBalancerDnsName, description: 'Point your domain (the certificate\'s name) at this: a CNAME or a Route 53 alias' });
    new CfnOutput(this, 'ApiKeysSecretArn', { value: apiKeys.secretArn, description: 'API_KEYS: aws secretsmanager get-secret-value --secret-id <this>' });
    new CfnOutput(this, 'BucketName', { value: bucket.bucketName });
    new CfnOutput(this, 'LogGroupName', { value: logGroup.logGroupName });
    new CfnOutput(this, 'ClusterName', { value: cluster.clusterName });
    new CfnOutput(this, 'ServiceName', { value: service.serviceName });
  }

  private network(props: IngestStackProps): ec2.IVpc {
    const nat = props.egress === 'nat';
    const vpc =
      props.vpcId !== undefined
        ? ec2.Vpc.fromLookup(this, 'Vpc', { vpcId: props.vpcId })
        : new ec2.Vpc(this, 'Vpc', {
            maxAzs: 2,
            // One per zone: with one, a zone's outage cuts the other zone's tasks off too.
            natGateways: nat ? 2 : 0,
            subnetConfiguration: [
              { name: 'public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24 },
              { name: 'tasks', subnetType: nat ? ec2.SubnetType.PRIVATE_WITH_EGRESS : ec2.SubnetType.PRIVATE_ISOLATED, cidrMask: 22 },
            ],
            flowLogs: { rejected: { trafficType: ec2.FlowLogTrafficType.REJECT } },
          });
    if (!nat) {
      const subnets = this.taskSubnets(vpc, props);
      // What a task without a way out needs: its image (ECR api and dkr, layers from S3), its
      // logs and EMF metrics, its secret, ECS Exec, and the event bucket.
      vpc.addGatewayEndpoint('S3', { service: ec2.GatewayVpcEndpointAwsService.S3, subnets: [subnets] });
      const interfaces: [string, ec2.InterfaceVpcEndpointAwsService][] = [
        ['EcrApi', ec2.InterfaceVpcEndpointAwsService.ECR],
        ['EcrDocker', ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER],
        ['Logs', ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS],
        ['SsmMessages', ec2.InterfaceVpcEndpointAwsService.SSM_MESSAGES],
        ['SecretsManager', ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER],
      ];
      if (props.metrics === 'amp') interfaces.push(['Prometheus', ec2.InterfaceVpcEndpointAwsService.PROMETHEUS_WORKSPACES]);
      // Not open to the whole VPC: the tasks' security group is let in once the service exists.
      for (const [id, service] of interfaces) this.endpoints.push(vpc.addInterfaceEndpoint(id, { service, subnets, privateDnsEnabled: true, open: false }));
    }
    return vpc;
  }

  // A new VPC's task subnets are of the type `egress` asks for; an existing VPC's private subnets
  // are taken as they are (with NAT: PRIVATE_WITH_EGRESS, otherwise isolated).
  private taskSubnets(vpc: ec2.IVpc, props: IngestStackProps): ec2.SubnetSelection {
    if (props.vpcId !== undefined) return { subnets: vpc.privateSubnets.length > 0 ? vpc.privateSubnets : vpc.isolatedSubnets };
    return { subnetType: props.egress === 'nat' ? ec2.SubnetType.PRIVATE_WITH_EGRESS : ec2.SubnetType.PRIVATE_ISOLATED };
  }

  private accessLogsBucket(): s3.Bucket {
    const bucket = new s3.Bucket(this, 'AccessLogs', {
      // SSE-S3: the only encryption load balancer access logs can be written with.
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      lifecycleRules: [{ expiration: Duration.days(90) }],
      removalPolicy: RemovalPolicy.RETAIN,
    });
    Validations.of(bucket).acknowledge({ id: 'AwsSolutions-S1', reason: 'This is the access-log bucket of the event bucket and the load balancer: logging its own accesses into itself would loop.' });
    return bucket;
  }

  private bucket(accessLogs: s3.Bucket, key: kms.Key | undefined, props: IngestStackProps): s3.Bucket {
    return new s3.Bucket(this, 'Events', {
      ...(key !== undefined ? { encryption: s3.BucketEncryption.KMS, encryptionKey: key, bucketKeyEnabled: true } : { encryption: s3.BucketEncryption.S3_MANAGED }),
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      serverAccessLogsBucket: accessLogs,
      serverAccessLogsPrefix: 's3/',
      lifecycleRules: [
        {
          id: 'events',
          // Batches are read most in their first weeks (queries, replays); Intelligent-Tiering
          // moves the rest to cheaper tiers without a retrieval fee.
          transitions: [{ storageClass: s3.StorageClass.INTELLIGENT_TIERING, transitionAfter: Duration.days(30) }],
          expiration: props.retentionDays !== undefined ? Duration.days(props.retentionDays) : undefined,
          abortIncompleteMultipartUploadAfter: Duration.days(1),
        },
      ],
      // The events are the product: deleting the stack leaves the bucket.
      removalPolicy: RemovalPolicy.RETAIN,
    });
  }

  private durableRoot(vpc: ec2.IVpc, subnets: ec2.SubnetSelection, service: ecs.FargateService, taskDefinition: ecs.FargateTaskDefinition, ingest: ecs.ContainerDefinition, task: EcsTaskJson): void {
    const fileSystem = new efs.FileSystem(this, 'Durable', {
      vpc,
      vpcSubnets: subnets,
      encrypted: true,
      performanceMode: efs.PerformanceMode.GENERAL_PURPOSE,
      // Bursting throughput falls to its baseline (about 1 MiB/s for a file system holding a
      // few GiB, which this one does) once its credits are spent, and every 202 waits for a WAL
      // write: Elastic keeps the latency at any rate (docs/durability.md: its cost).
      throughputMode: efs.ThroughputMode.ELASTIC,
      // Acknowledged events of dead tasks may be in it.
      removalPolicy: RemovalPolicy.RETAIN,
    });
    fileSystem.connections.allowDefaultPortFrom(service);
    // The image runs as `node` (1000): the access point writes as it and creates its root so.
    const accessPoint = fileSystem.addAccessPoint('AccessPoint', {
      path: '/event-ingest',
      posixUser: { uid: '1000', gid: '1000' },
      createAcl: { ownerUid: '1000', ownerGid: '1000', permissions: '755' },
    });
    const volume = task.volumes![0]!;
    const mount = task.containerDefinitions[0]!.mountPoints![0]!;
    taskDefinition.addVolume({
      name: volume.name,
      efsVolumeConfiguration: { fileSystemId: fileSystem.fileSystemId, transitEncryption: 'ENABLED', authorizationConfig: { accessPointId: accessPoint.accessPointId, iam: 'ENABLED' } },
    });
    ingest.addMountPoints(mount);
    taskDefinition.taskRole.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'EfsDurableVolumeThroughItsAccessPoint',
        actions: ['elasticfilesystem:ClientMount', 'elasticfilesystem:ClientWrite'],
        resources: [fileSystem.fileSystemArn],
        conditions: { StringEquals: { 'elasticfilesystem:AccessPointArn': accessPoint.accessPointArn } },
      }),
    );
  }

  private prometheusSidecar(taskDefinition: ecs.FargateTaskDefinition, taskRole: iam.Role, logGroup: logs.LogGroup, props: IngestStackProps, metricsPort: string): void {
    const workspace = new aps.CfnWorkspace(this, 'Prometheus', { alias: 'event-ingest' });
    taskRole.addToPolicy(new iam.PolicyStatement({ sid: 'RemoteWriteToTheWorkspace', actions: ['aps:RemoteWrite'], resources: [workspace.attrArn] }));
    // Scrapes /metrics on METRICS_PORT inside the task (never through the load balancer); the ECS
    // resource detector labels every series with its task, as `instance` would be the same
    // 127.0.0.1 everywhere.
    const config = [
      'extensions:',
      `  sigv4auth: { region: ${this.region}, service: aps }`,
      'receivers:',
      '  prometheus:',
      '    config:',
      '      scrape_configs:',
      `        - { job_name: event-ingest, scrape_interval: 30s, static_configs: [{ targets: ['127.0.0.1:${metricsPort}'] }] }`,
      'processors:',
      '  resourcedetection: { detectors: [ecs] }',
      'exporters:',
      '  prometheusremotewrite:',
      `    endpoint: ${workspace.attrPrometheusEndpoint}api/v1/remote_write`,
      '    auth: { authenticator: sigv4auth }',
      '    resource_to_telemetry_conversion: { enabled: true }',
      'service:',
      '  extensions: [sigv4auth]',
      '  pipelines:',
      '    metrics: { receivers: [prometheus], processors: [resourcedetection], exporters: [prometheusremotewrite] }',
    ].join('\n');
    taskDefinition.addContainer('adot', {
      containerName: 'adot',
      image: ecs.ContainerImage.fromRegistry(props.adotImage ?? ADOT_IMAGE),
      // Losing metrics does not stop ingest.
      essential: false,
      memoryLimitMiB: ADOT_MEMORY_MIB,
      environment: { AOT_CONFIG_CONTENT: config },
      logging: ecs.LogDrivers.awsLogs({ logGroup, streamPrefix: 'adot' }),
    });
  }

  private loadBalancer(vpc: ec2.IVpc, accessLogs: s3.Bucket, target: ecs.IEcsLoadBalancerTarget, port: number, props: IngestStackProps): { alb: elbv2.ApplicationLoadBalancer; targets: elbv2.ApplicationTargetGroup } {
    const alb = new elbv2.ApplicationLoadBalancer(this, 'Alb', {
      vpc,
      internetFacing: true,
      vpcSubnets: { subnetType: ec2.SubnetType.PUBLIC },
      idleTimeout: Duration.seconds(ALB_IDLE_TIMEOUT_S),
      dropInvalidHeaderFields: true,
    });
    Validations.of(alb).acknowledge({
      id: 'AwsSolutions-EC23',
      reason: 'The public ingest endpoint: clients post from anywhere on 443 (and 80, which only redirects to 443). API_KEYS and CORS_ORIGINS decide who may post.',
    });
    alb.logAccessLogs(accessLogs, 'alb');
    const targets = new elbv2.ApplicationTargetGroup(this, 'Targets', {
      vpc,
      // The ingest port only: /metrics is on METRICS_PORT, never reachable through the load balancer.
      port,
      protocol: elbv2.ApplicationProtocol.HTTP,
      targetType: elbv2.TargetType.IP,
      // /readyz, not /healthz: a task shutting down, or one whose channel or DLQ is full, gets no
      // new requests, and a revision whose tasks never become ready trips the circuit breaker.
      healthCheck: { path: '/readyz', interval: Duration.seconds(10), timeout: Duration.seconds(5), healthyThresholdCount: 2, unhealthyThresholdCount: 2 },
      deregistrationDelay: Duration.seconds(DEREGISTRATION_DELAY_S),
      targets: [target],
    });
    alb.addListener('Https', {
      port: 443,
      protocol: elbv2.ApplicationProtocol.HTTPS,
      certificates: [certificates.Certificate.fromCertificateArn(this, 'Certificate', props.certificateArn)],
      sslPolicy: elbv2.SslPolicy.RECOMMENDED_TLS,
      defaultTargetGroups: [targets],
    });
    // Plain HTTP only redirects: a page served over HTTPS cannot post to HTTP, and keys must not travel in clear.
    alb.addRedirect({ sourcePort: 80, targetPort: 443 });
    return { alb, targets };
  }

  private autoscaling(service: ecs.FargateService, targets: elbv2.ApplicationTargetGroup): void {
    const scaling = readJson<{ scalableTarget: { MinCapacity: number; MaxCapacity: number }; policies: TargetTracking[] }>('deploy/ecs/autoscaling.json');
    const policy = (type: string) => {
      const c = scaling.policies.find((p) => p.TargetTrackingScalingPolicyConfiguration.PredefinedMetricSpecification.PredefinedMetricType === type)!.TargetTrackingScalingPolicyConfiguration;
      return { target: c.TargetValue, scaleOutCooldown: Duration.seconds(c.ScaleOutCooldown), scaleInCooldown: Duration.seconds(c.ScaleInCooldown) };
    };
    const count = service.autoScaleTaskCount({ minCapacity: scaling.scalableTarget.MinCapacity, maxCapacity: scaling.scalableTarget.MaxCapacity });
    const cpu = policy('ECSServiceAverageCPUUtilization');
    count.scaleOnCpuUtilization('Cpu', { targetUtilizationPercent: cpu.target, scaleOutCooldown: cpu.scaleOutCooldown, scaleInCooldown: cpu.scaleInCooldown });
    const requests = policy('ALBRequestCountPerTarget');
    count.scaleOnRequestCount('Requests', { requestsPerTarget: requests.target, targetGroup: targets, scaleOutCooldown: requests.scaleOutCooldown, scaleInCooldown: requests.scaleInCooldown });
  }

  private alarms(props: IngestStackProps): void {
    const topic = new sns.Topic(this, 'Alarms', { displayName: 'event-ingest alarms', enforceSSL: true });
    if (props.alarmEmail !== undefined) topic.addSubscription(new subscriptions.EmailSubscription(props.alarmEmail));
    Validations.of(topic).acknowledge({
      id: 'AwsSolutions-SNS2',
      reason: 'CloudWatch alarms cannot publish to a topic encrypted with the AWS managed key, and the messages carry only alarm names, states and thresholds, no events; a customer managed key for them is left to the operator.',
    });
    // The alarms of deploy/cloudwatch/alarms.json themselves, not a copy: the same template, with
    // its parameters given. Service is the EMF lines' dimension (src/metrics/emf.ts).
    new CfnInclude(this, 'CloudWatchAlarms', {
      templateFile: `${REPO_ROOT}deploy/cloudwatch/alarms.json`,
      parameters: { Service: 'event-ingest', AlarmTopicArn: topic.topicArn },
    });
  }
}

/**
 * A resource as cdk-nag names it in a finding (`AwsSolutions-IAM5[Resource::...]`), to acknowledge
 * that finding and no other: references become `<LogicalId>` and `<LogicalId.Attribute>`.
 */
function nagName(stack: Stack, value: string): string {
  const visit = (node: unknown): string => {
    if (typeof node === 'string') return node;
    // The only intrinsics an ARN here is made of.
    const { 'Fn::Join': join, 'Fn::GetAtt': getAtt, Ref: ref } = node as { 'Fn::Join'?: [string, unknown[]]; 'Fn::GetAtt'?: [string, string]; Ref?: string };
    if (join !== undefined) return join[1].map(visit).join(join[0]);
    return getAtt !== undefined ? `<${getAtt.join('.')}>` : `<${ref}>`;
  };
  return visit(stack.resolve(value));
}

/** The image is built for the task definition's `cpuArchitecture`. */
const IMAGE_PLATFORM: Record<string, Platform> = { X86_64: Platform.LINUX_AMD64, ARM64: Platform.LINUX_ARM64 };

/** The ADOT collector's hard memory limit. */
const ADOT_MEMORY_MIB = 256;
/** Added to the task with the sidecar: 512 MiB to 1 GiB, the next size Fargate has for 0.25 vCPU. */
const SIDECAR_TASK_MEMORY_MIB = 512;

const SERVICE = readJson<{
  desiredCount: number;
  enableExecuteCommand: boolean;
  healthCheckGracePeriodSeconds: number;
  deploymentConfiguration: { deploymentCircuitBreaker: { enable: boolean; rollback: boolean }; minimumHealthyPercent: number; maximumPercent: number };
}>('deploy/ecs/service.json');

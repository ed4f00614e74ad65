// The CDK app (deploy/README.md): `npx cdk deploy -c certificateArn=...` in this directory. Runs
// on Node's own TypeScript type stripping (Node 22.18 or later, or 24). cdk-nag's AWS Solutions
// checks run at every synth: a finding without a justified suppression fails it.
import { App, Validations } from 'aws-cdk-lib';
// cdk-nag is CommonJS whose exports Node cannot name statically.
import cdkNag from 'cdk-nag';
import { settingsFromContext } from './settings.ts';
import { IngestStack } from './stack.ts';

const app = new App();
new IngestStack(app, 'EventIngest', {
  env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
  description: 'event-ingest: HTTP event ingest to S3 on ECS Fargate behind an HTTPS load balancer (deploy/cdk)',
  ...settingsFromContext(app),
});
Validations.of(app).addPlugins(new cdkNag.AwsSolutionsChecks(app));

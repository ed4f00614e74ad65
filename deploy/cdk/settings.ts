// The deployment's choices, read from CDK context (deploy/cdk/cdk.json, or `-c name=value` on the
// command line, where every value is a string), checked before anything is built: a wrong value
// fails `cdk synth` with the name of the setting, not a deployment half an hour later.
import type { StackProps } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import type { IngestStackProps } from './stack.ts';

export type Settings = Omit<IngestStackProps, keyof StackProps>;

export function settingsFromContext(scope: Construct): Settings {
  const text = (name: string): string | undefined => {
    const value: unknown = scope.node.tryGetContext(name);
    if (value === undefined || value === null || value === '') return undefined;
    return String(value);
  };
  const oneOf = <T extends string>(name: string, values: readonly T[]): T => {
    const value = text(name) ?? values[0]!;
    if (!(values as readonly string[]).includes(value)) throw new Error(`context "${name}" should be one of ${values.join(', ')}, got "${value}"`);
    return value as T;
  };
  const flag = (name: string): boolean => oneOf(name, ['false', 'true']) === 'true';
  const certificateArn = text('certificateArn');
  if (certificateArn === undefined || !/^arn:aws[\w-]*:acm:[\w-]+:\d{12}:certificate\/[\w-]+$/.test(certificateArn)) {
    throw new Error(`context "certificateArn" should be the ARN of an ACM certificate in the stack's region (-c certificateArn=arn:aws:acm:REGION:ACCOUNT_ID:certificate/ID), got ${certificateArn === undefined ? 'nothing' : `"${certificateArn}"`}`);
  }
  const retention = text('retentionDays');
  if (retention !== undefined && !/^[1-9]\d*$/.test(retention)) throw new Error(`context "retentionDays" should be a whole number of days, got "${retention}"`);
  return {
    certificateArn,
    corsOrigins: text('corsOrigins') ?? '',
    vpcId: text('vpcId'),
    egress: oneOf('egress', ['endpoints', 'nat']),
    efs: flag('efs'),
    kms: flag('kms'),
    metrics: oneOf('metrics', ['emf', 'amp']),
    adotImage: text('adotImage'),
    alarmEmail: text('alarmEmail'),
    retentionDays: retention === undefined ? undefined : Number(retention),
  };
}

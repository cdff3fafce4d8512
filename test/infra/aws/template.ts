// A synthesized template as one deployment would make it concrete: intrinsic functions resolved for an
// account and a region, physical names and ARNs given to the resources that have none. What CloudFormation
// would pick (a generated queue name, say) is replaced by a stable stand-in; every ARN keeps the format of
// its service, so a policy that names it by pattern is checked against the real shape.

// biome-ignore lint/suspicious/noExplicitAny: CloudFormation templates are untyped JSON
type Json = any;

export interface Deployment {
  readonly account: string;
  readonly region: string;
  readonly partition: string;
  readonly stackName: string;
}

export const DEPLOYMENT: Deployment = {
  account: '123456789012',
  region: 'eu-west-1',
  partition: 'aws',
  stackName: 'stack',
};

export interface Resource {
  readonly id: string;
  readonly type: string;
  readonly properties: Json;
}

/** The template with every intrinsic function resolved; throws on one it does not know. */
export class ConcreteTemplate {
  readonly resources: readonly Resource[];
  readonly deployment: Deployment;
  readonly #raw: Json;

  constructor(template: Json, deployment: Partial<Deployment> = {}) {
    this.#raw = template;
    this.deployment = { ...DEPLOYMENT, ...deployment };
    this.resources = Object.entries(template.Resources as Record<string, Json>).map(([id, r]) => ({
      id,
      type: r.Type,
      properties: this.resolve(r.Properties ?? {}),
    }));
  }

  ofType(type: string): Resource[] {
    return this.resources.filter((r) => r.type === type);
  }

  byId(id: string): Resource {
    const found = this.resources.find((r) => r.id === id);
    if (!found) throw new Error(`no resource ${id}`);
    return found;
  }

  /** The logical id a `{Ref}` / `{Fn::GetAtt}` value of the raw template points at. */
  static target(value: Json): string {
    if (value?.Ref) return value.Ref;
    if (value?.['Fn::GetAtt']) return value['Fn::GetAtt'][0];
    throw new Error(`not a reference: ${JSON.stringify(value)}`);
  }

  /** The raw (unresolved) properties of a resource, to follow references between resources. */
  raw(id: string): Json {
    const r = this.#raw.Resources[id];
    if (!r) throw new Error(`no resource ${id}`);
    return r.Properties ?? {};
  }

  resolve(value: Json): Json {
    if (Array.isArray(value)) return value.map((v) => this.resolve(v));
    if (value === null || typeof value !== 'object') return value;
    const keys = Object.keys(value);
    if (keys.length === 1) {
      const [key] = keys as [string];
      const arg = value[key];
      if (key === 'Ref') return this.ref(arg);
      if (key === 'Fn::GetAtt') return this.getAtt(arg[0], arg[1]);
      if (key === 'Fn::Join') return (this.resolve(arg[1]) as string[]).join(arg[0]);
      if (key === 'Fn::Sub' && typeof arg === 'string')
        return arg.replace(/\$\{([^}]+)\}/g, (_, name: string) =>
          name.includes('.') ? this.getAtt(...(name.split('.') as [string, string])) : this.ref(name),
        );
      if (key === 'Fn::Select') return (this.resolve(arg[1]) as Json[])[Number(this.resolve(arg[0]))];
      if (key === 'Fn::Split') return (this.resolve(arg[1]) as string).split(arg[0]);
      if (key.startsWith('Fn::')) throw new Error(`unsupported intrinsic ${key}`);
    }
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, this.resolve(v)]));
  }

  private ref(name: string): string {
    const { account, region, partition, stackName } = this.deployment;
    const pseudo: Record<string, string> = {
      'AWS::AccountId': account,
      'AWS::Region': region,
      'AWS::Partition': partition,
      'AWS::URLSuffix': 'amazonaws.com',
      'AWS::StackName': stackName,
    };
    if (name in pseudo) return pseudo[name] as string;
    const resource = this.#raw.Resources[name];
    if (!resource) throw new Error(`Ref to unknown ${name}`);
    const p = resource.Properties ?? {};
    switch (resource.Type) {
      case 'AWS::Lambda::Function':
      case 'AWS::Logs::LogGroup':
      case 'AWS::IAM::Role':
      case 'AWS::CloudWatch::Alarm':
      case 'AWS::Scheduler::ScheduleGroup':
        return this.name(name);
      case 'AWS::SQS::Queue':
        return `https://sqs.${region}.amazonaws.com/${account}/${this.name(name)}`;
      case 'AWS::SNS::Topic':
        return this.getAtt(name, 'TopicArn');
      default:
        if (p && resource.Type) throw new Error(`Ref to ${resource.Type} not modelled`);
        throw new Error(`Ref to ${name}`);
    }
  }

  /** The physical name: the one the template gives, else a stable stand-in for CloudFormation's. */
  private name(id: string): string {
    const r = this.#raw.Resources[id];
    const p = r.Properties ?? {};
    const given =
      p.FunctionName ?? p.LogGroupName ?? p.RoleName ?? p.AlarmName ?? p.QueueName ?? p.TopicName ?? p.Name;
    if (given !== undefined) return this.resolve(given);
    if (r.Type === 'AWS::Logs::LogGroup') return `/aws/generated/${this.deployment.stackName}-${id}`;
    return `${this.deployment.stackName}-${id}`;
  }

  private getAtt(id: string, attribute: string): string {
    const { account, region, partition } = this.deployment;
    const r = this.#raw.Resources[id];
    if (!r) throw new Error(`GetAtt of unknown ${id}`);
    const name = this.name(id);
    const arn = (service: string, resource: string) =>
      `arn:${partition}:${service}:${region}:${account}:${resource}`;
    const attributes: Record<string, Record<string, () => string>> = {
      'AWS::Lambda::Function': { Arn: () => arn('lambda', `function:${name}`) },
      'AWS::SQS::Queue': {
        Arn: () => arn('sqs', name),
        QueueName: () => name,
        QueueUrl: () => this.ref(id),
      },
      'AWS::SNS::Topic': { TopicArn: () => arn('sns', name), TopicName: () => name },
      'AWS::Logs::LogGroup': { Arn: () => arn('logs', `log-group:${name}:*`) },
      'AWS::IAM::Role': { Arn: () => `arn:${partition}:iam::${account}:role/${name}` },
      'AWS::Scheduler::ScheduleGroup': { Arn: () => arn('scheduler', `schedule-group/${name}`) },
      'AWS::CloudWatch::Alarm': { Arn: () => arn('cloudwatch', `alarm:${name}`) },
    };
    const get = attributes[r.Type]?.[attribute];
    if (!get) throw new Error(`GetAtt ${r.Type}.${attribute} not modelled`);
    return get();
  }
}

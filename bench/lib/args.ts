// The command line of `npm run bench`, read apart from the run so that a test can check it
// without starting any load.
import { parseArgs } from 'node:util';

export interface Options {
  /** Scenario ids in the order given; empty means all. */
  readonly scenarios: readonly string[];
  readonly seconds: number;
  readonly rounds: number;
  readonly connections: number;
  /** --env K=V: server settings for every scenario. */
  readonly serverEnv: Readonly<Record<string, string>>;
  /** --save: results into bench/results/ and the README; otherwise into the ignored .bench/results/. */
  readonly save: boolean;
  /** --profile: a CPU profile of the server by stage, for the request shapes given (scenarios 1 to 4), instead of the scenarios. */
  readonly profile: boolean;
  /** --target URL, each with the --target-pid that followed it. */
  readonly targets: readonly { readonly url: string; readonly pid?: number }[];
}

/** Throws an Error meant for the user on anything it cannot use. */
export function parseBenchArgs(args: string[], knownScenarios: readonly string[]): Options {
  const { values, positionals, tokens } = parseArgs({
    args,
    allowPositionals: true,
    tokens: true,
    options: {
      seconds: { type: 'string', default: '10' },
      rounds: { type: 'string', default: '3' },
      connections: { type: 'string', default: '64' },
      env: { type: 'string', multiple: true, default: [] },
      save: { type: 'boolean', default: false },
      profile: { type: 'boolean', default: false },
      target: { type: 'string', multiple: true, default: [] },
      'target-pid': { type: 'string', multiple: true, default: [] },
    },
  });
  for (const id of positionals) {
    if (!knownScenarios.includes(id)) throw new Error(`unknown scenario ${id}; known: ${knownScenarios.join(' ')}`);
  }
  const serverEnv: Record<string, string> = {};
  for (const kv of values.env) {
    const eq = kv.indexOf('=');
    if (eq < 1) throw new Error(`--env expects NAME=value, got ${kv}`);
    serverEnv[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  // parseArgs gives repeated options apart; the tokens keep their order, which pairs each pid with its URL.
  const targets: { url: string; pid?: number }[] = [];
  for (const token of tokens) {
    if (token.kind !== 'option') continue;
    if (token.name === 'target') {
      const url = token.value!;
      if (!/^https?:$/.test(URL.parse(url)?.protocol ?? '')) throw new Error(`--target expects an http:// or https:// URL, got ${url}`);
      targets.push({ url });
    } else if (token.name === 'target-pid') {
      const last = targets.at(-1);
      if (last === undefined || last.pid !== undefined) throw new Error('--target-pid PID follows the --target URL it belongs to, one per target');
      last.pid = positiveInteger('target-pid', token.value!);
    }
  }
  return {
    scenarios: positionals,
    seconds: positiveInteger('seconds', values.seconds),
    rounds: positiveInteger('rounds', values.rounds),
    connections: positiveInteger('connections', values.connections),
    serverEnv,
    save: values.save,
    profile: values.profile,
    targets,
  };
}

function positiveInteger(name: string, value: string): number {
  if (!/^[1-9]\d*$/.test(value)) throw new Error(`--${name} expects an integer >= 1, got ${value}`);
  return Number(value);
}

// The process: answers --help and --version, reads the config, starts the server, and ends it on
// SIGTERM, SIGINT, SIGHUP or a crash (src/shutdown.ts). An operator's mistake exits 1 with a message.
import type { Logger } from 'pino';
import { type Config, ConfigError, loadConfig } from './config.js';
import { createLogger } from './log.js';
import { type Server, StartError, startServer } from './server.js';
import { shutDownOnSignals } from './shutdown.js';
import { VERSION } from './version.js';

const USAGE = `usage: node dist/main.js [--help | --version]   (npm start)
Starts the event ingest server. Every setting comes from environment variables: see
docs/config.md, or the Configuration table in README.md. With no S3_BUCKET it runs in local mode.
  --help     this text
  --version  the version`;

async function main(): Promise<void> {
  const config = configOrExit();
  const log = createLogger(1, { level: config.logLevel, base: { instance: config.instanceId } });
  // Until the signal handlers are set, a worker thread's crash is a failed start.
  let crash = (): void => fail(log, 'a worker thread crashed during start-up');
  let server: Server;
  try {
    server = await startServer(config, log, () => crash());
  } catch (err) {
    if (err instanceof StartError) fail(log, err.message, err.logged);
    throw err;
  }
  crash = shutDownOnSignals(server.shutdown, log, server.endThreads);
}

function configOrExit(): Config {
  try {
    return loadConfig();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    fail(createLogger(1), `invalid configuration: ${err.message}`);
  }
}

function fail(log: Logger, message: string, logged = false): never {
  if (!logged) log.fatal({ reason: message }, 'cannot start');
  process.stderr.write(`${message}\n`);
  process.exit(1);
}

/** --help and --version answer without starting anything; any other argument is a mistake. */
function answerArguments(args: string[]): void {
  const [arg] = args;
  if (arg === undefined) return;
  if (arg === '--version') process.stdout.write(`event-ingest ${VERSION}\n`);
  else if (arg === '--help' || arg === '-h') process.stdout.write(`${USAGE}\n`);
  else {
    process.stderr.write(`unknown argument "${arg}"\n${USAGE}\n`);
    process.exit(2);
  }
  process.exit(0);
}

answerArguments(process.argv.slice(2));
await main();

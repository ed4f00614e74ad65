// `npm run dlq -- stats | list | drain`: the process around ./command.ts, with its arguments,
// environment and standard streams; the exit code is the command's.
import { runDlqCommand } from './command.js';

process.exitCode = await runDlqCommand(process.argv.slice(2), process.env, { stdout: process.stdout, stderr: process.stderr, log: 2 });

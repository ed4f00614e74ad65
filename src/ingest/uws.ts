// Loads uWebSockets.js's native addon, keeping the error if it does not load.
//
// This build has no JS fallback: the package throws when the addon for this Node ABI and libc
// cannot be loaded. The server reads uwsLoadError first and refuses to start with a log line saying why,
// rather than dying on a stack trace at import time (and never running slowly on an emulation).
import { createRequire } from 'node:module';
import type * as Uws from 'uWebSockets.js';

export type UwsModule = typeof Uws;

function load(): UwsModule | Error {
  try {
    return createRequire(import.meta.url)('uWebSockets.js') as UwsModule;
  } catch (err) {
    return err instanceof Error ? err : new Error(String(err));
  }
}

const loaded = load();

/** Why the addon did not load, in one line with what to do; undefined when it loaded. */
export const uwsLoadError: string | undefined = loaded instanceof Error ? explain(loaded) : undefined;

/** The addon; after a failed load every use throws the load error. */
export const uWS: UwsModule =
  loaded instanceof Error
    ? (new Proxy({}, {
        get: () => {
          throw new Error(uwsLoadError);
        },
      }) as UwsModule)
    : loaded;

function explain(err: Error): string {
  const reason = err.message.replace(/\s*\n+\s*/g, ' ');
  const action = /version `GLIBC_[\d.]+' not found/.test(reason)
    ? 'This glibc is older than the one the published binaries are built for: run `npm run uws-compat` ' +
      '(npm ci runs it, unless --ignore-scripts) to rebind their three C23 imports (docs/adr/0001-node24-uwebsockets.md).'
    : 'Supported: Node.js 22 and 24 (see package.json engines); reinstall with `npm ci`.';
  return `the native uWebSockets.js addon did not load, so the server cannot start: ${reason}. ${action}`;
}

// Loaded into every test process (package.json, tap.node-arg). `npm test` runs the TypeScript with
// Node's own type stripping (TAP_TYPE_STRIP_ONLY=1, --experimental-transform-types for parameter
// properties) instead of ts-node, which took about 1.5 s of every test file's start; this hook
// gives Node what ts-node also did: an import of `./x.js` (NodeNext style, as tsc wants it) loads
// `./x.ts` when there is no `./x.js`. A synchronous hook on the loading thread (registerHooks,
// Node 22.15 and later: the tests need that, the server itself 22.12), not an asynchronous one on a thread of its own (register), which sent
// every import of every test file, the AWS SDK's hundreds among them, across threads: measured,
// a test file that loads the SDK started in 1.2 s of CPU instead of 1.6 to 2.
import { registerHooks } from 'node:module';

registerHooks({
  resolve(specifier, context, next) {
    try {
      return next(specifier, context);
    } catch (err) {
      if (err?.code !== 'ERR_MODULE_NOT_FOUND' || !/^\.\.?\//.test(specifier) || !specifier.endsWith('.js')) throw err;
      return next(`${specifier.slice(0, -3)}.ts`, context);
    }
  },
});

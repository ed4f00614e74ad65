// Loaded into every test process (package.json, tap.node-arg). `npm test` runs the TypeScript with
// Node's own type stripping (TAP_TYPE_STRIP_ONLY=1, --experimental-transform-types for parameter
// properties) instead of ts-node, which took about 1.5 s of every test file's start; this hook
// gives Node what ts-node also did: an import of `./x.js` (NodeNext style, as tsc wants it) loads
// `./x.ts` when there is no `./x.js`.
import { register } from 'node:module';

register(
  `data:text/javascript,${encodeURIComponent(`
export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context);
  } catch (err) {
    if (err?.code !== 'ERR_MODULE_NOT_FOUND' || !/^\\.\\.?\\//.test(specifier) || !specifier.endsWith('.js')) throw err;
    return next(specifier.slice(0, -3) + '.ts', context);
  }
}`)}`,
);

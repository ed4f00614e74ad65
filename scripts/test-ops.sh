#!/bin/sh
# npm run test:ops: the slow live suites npm test leaves out (the test/**/*.ops.test.ts files: the
# alert rules in a real Prometheus, the chaos soak, memory and fd limits, the CDK app's cdk synth through the CLI, the four-kill WAL run, the power-loss run, and
# the other runs of several server processes under load: shared root, workers, the DLQ under traffic,
# the S3 outage and intermittent errors of the zero-loss scenarios;
# and the JSON property test at twenty times npm test's runs),
# then the Node 22 contract: the core end-to-end files again on the Node 22 whose home is
# $NODE22_HOME (.ci/run installs one and sets it), since package.json's engines promise 22 too.
# SOAK_SEED fixes the soak's schedule (.ci/run sets one; unset, each run draws and prints a seed).
set -eu
cd "$(dirname "$0")/.."
# Node's compile cache, as in npm test (scripts/test.sh says why).
export NODE_COMPILE_CACHE="${NODE_COMPILE_CACHE:-$(pwd)/node_modules/.cache/node-compile-cache}"
TAP_TYPE_STRIP_ONLY=1 npx tap --disable-coverage 'test/**/*.ops.test.ts'
# The JSON validator against JSON.parse on twenty times npm test's share of generated bodies.
JSON_FUZZ_RUNS=20000 TAP_TYPE_STRIP_ONLY=1 npx tap --disable-coverage --timeout 0 test/ingest/body.property.test.ts
if [ -z "${NODE22_HOME:-}" ]; then
  echo "test:ops: the Node 22 contract run is skipped: set NODE22_HOME to a Node 22 install (.ci/run does)"
  exit 0
fi
major=$("$NODE22_HOME/bin/node" -p 'process.versions.node.split(".")[0]')
if [ "$major" != 22 ]; then
  echo "test:ops: NODE22_HOME=$NODE22_HOME holds Node $major, not 22" >&2
  exit 1
fi
export PATH="$NODE22_HOME/bin:$PATH"
echo "test:ops: the core end-to-end tests on node $(node --version)"
TAP_TYPE_STRIP_ONLY=1 npx tap --disable-coverage test/e2e/engine.test.ts test/e2e/ingest.test.ts test/e2e/rejections.test.ts test/e2e/batching.test.ts \
  test/e2e/local-mode.test.ts test/e2e/production.test.ts test/e2e/zero-loss.test.ts test/scripts/uws-glibc-compat.ops.test.ts

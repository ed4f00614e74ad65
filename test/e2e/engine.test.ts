// The HTTP engine is reported in a log line and a metric; the suite runs on the native addon.
import t from 'tap';
import { startS3 } from '../helpers/s3.js';
import { startServer } from '../helpers/server.js';

t.test('the native uWebSockets.js addon is loaded (the tests would measure the fallback otherwise)', async (t) => {
  const s3 = await startS3(t);
  const server = await startServer(t, s3.env);
  const line = await server.waitForLog((l) => typeof l.engine === 'string');
  t.equal(line.engine, 'native', 'the native addon loaded: fix the uWebSockets.js install if this fails');
  t.equal(await server.metric('http_engine_info', '{engine="native"}'), 1);
});

t.test('the JS fallback is detected and reported when the addon does not load', async (t) => {
  const s3 = await startS3(t);
  // The package's own switch to its fallback: the same path it takes when the addon fails to load.
  const server = await startServer(t, { ...s3.env, UWS_USE_FALLBACK: '1' });
  const line = await server.waitForLog((l) => typeof l.engine === 'string');
  t.equal(line.engine, 'js-fallback');
  t.equal(line.level, 40, 'logged as a warning');
  t.equal(await server.metric('http_engine_info', '{engine="js-fallback"}'), 1);
});

// The connection cap: MAX_CONNECTIONS as given, else what fits below this process's fd limit with
// a reserve and the descriptors open now; past the cap a new connection is closed as it is
// accepted, counted, logged at most once per 10 s, and the count follows connections as they go.
// A real uWebSockets.js app with the cap as its filter hook, real idle sockets.
import { closeSync, openSync, readFileSync } from 'node:fs';
import t from 'tap';
import { ConnectionCap, connectionCap } from '../../src/ingest/connections.js';
import { uWS } from '../../src/ingest/uws.js';
import { HttpCounts } from '../../src/metrics/http.js';
import { idleConnections } from '../helpers/raw.js';
import { eventually } from '../helpers/server.js';
import { listenApp } from '../helpers/uws-app.js';

/** Waits for what the server does next: checked every 5 ms, for up to 10 s. */
const soon = (check: () => boolean): Promise<void> => eventually(check, 2000, 5);

t.test('MAX_CONNECTIONS, when set, is the cap as is', async (t) => {
  t.equal(connectionCap(1), 1);
  t.equal(connectionCap(250_000), 250_000, 'even above the fd limit: the operator knows best');
});

t.test('unset: below the fd limit, keeping a reserve and the descriptors already open', async (t) => {
  const soft = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'))![1]!;
  if (soft === 'unlimited') {
    t.equal(connectionCap(undefined), Infinity, 'no fd limit: nothing to enforce');
    return;
  }
  const limit = Number(soft);
  const cap = connectionCap(undefined);
  t.ok(Number.isInteger(cap) && cap >= 1, `a whole number of connections (${cap})`);
  t.ok(cap <= limit - 32 - limit / 16, `at least 32 descriptors and 1/16 of the limit (${limit}) kept in reserve`);
  // Ten more descriptors open now: ten fewer connections fit.
  const held = Array.from({ length: 10 }, () => openSync('/dev/null', 'r'));
  const fewer = connectionCap(undefined);
  held.forEach((fd) => closeSync(fd));
  t.equal(fewer, cap - 10, 'each descriptor open at start-up is one connection less');
});

t.test('past the cap new connections are closed and counted, the cap is logged once, and freed places are taken again', async (t) => {
  const counts = new HttpCounts();
  const warnings: { fields: object; msg: string }[] = [];
  const cap = new ConnectionCap(2, counts, { warn: (fields, msg) => warnings.push({ fields, msg }) });
  const closedByCap: boolean[] = [];
  const app = uWS.App()
    .filter((res, change) => {
      closedByCap.push(cap.track(res, Number(change)));
    })
    .any('/*', (res) => {
      res.end('ok');
    });
  const port = await listenApp(t, app);

  const idle = idleConnections(t, port, 5);
  await soon(() => idle.closedByServer() === 3);
  t.equal(counts.connectionsRefused, 3, 'three refused');
  await soon(() => counts.connectionsOpen === 2);
  t.equal(counts.connectionsOpen, 2, 'two open: the refused ones are gone from the count as they close');
  t.equal(closedByCap.filter(Boolean).length, 3, 'track said which it closed');
  t.same(warnings, [{ fields: { open: 2, cap: 2, refused: 1 }, msg: 'connection cap reached: closing new connections' }], 'logged once, at the first refusal');

  idle.destroy();
  await soon(() => counts.connectionsOpen === 0);
  const answer = await fetch(`http://127.0.0.1:${port}/`, { headers: { connection: 'close' } });
  t.equal(await answer.text(), 'ok', 'a new connection is served once places are free');
  const again = idleConnections(t, port, 3);
  await soon(() => again.closedByServer() === 1);
  t.equal(counts.connectionsRefused, 4, 'a later refusal is counted');
  t.equal(warnings.length, 1, 'but not logged again within 10 s');
});

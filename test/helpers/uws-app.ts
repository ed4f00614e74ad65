// The smallest real front for the unit tests of src/ingest/: a uWebSockets.js app on 127.0.0.1
// port 0 (closed with its connections at teardown), and an intake whose answers the test decides.
import type { TemplatedApp, us_listen_socket } from 'uWebSockets.js';
import type { Answer, Outcome, Refusal } from '../../src/acks.js';
import type { Entry } from '../../src/channel.js';
import { uWS } from '../../src/ingest/uws.js';
import type { Intake } from '../../src/pipeline.js';
import type { Owner } from './fault-proxy.js';

/** Listens on an ephemeral port; the app (its listener and every connection) is closed at teardown. */
export function listenApp(t: Owner, app: TemplatedApp): Promise<number> {
  t.teardown(() => app.close());
  return new Promise((resolve, reject) => {
    app.listen('127.0.0.1', 0, (socket: us_listen_socket | false) => (socket === false ? reject(new Error('cannot listen')) : resolve(uWS.us_socket_local_port(socket))));
  });
}

/**
 * An Intake that answers as the test says: `admission` for admits(), `outcome` for accept() (or
 * 'pending': the answer waits in `answers` for the test to give it). Every entry handed over is kept.
 */
export class ScriptedIntake implements Intake {
  admission: 'ok' | Refusal = 'ok';
  outcome: Outcome | 'pending' = 'accepted';
  readonly entries: Entry[] = [];
  readonly answers: Answer[] = [];
  /** Called with each entry as it is accepted (after it is kept). */
  onAccept: (entry: Entry) => void = () => {};
  events = 0;
  bytes = 0;

  admits(): 'ok' | Refusal {
    return this.admission;
  }

  accept(entry: Entry, answer: Answer): Outcome | 'pending' {
    this.entries.push(entry);
    this.onAccept(entry);
    if (this.outcome === 'pending') this.answers.push(answer);
    return this.outcome;
  }
}

/** Event i of an entry, as text. */
export const eventTexts = (entry: Entry): string[] => Array.from({ length: entry.spans.length / 2 }, (_, i) => entry.body.toString('utf8', entry.spans[2 * i], entry.spans[2 * i + 1]));

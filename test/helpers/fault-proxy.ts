// A real HTTP proxy in front of the S3 server that answers chosen requests with real faults:
// error responses as S3 sends them (500 InternalError, 503 SlowDown, 403 AccessDenied), silence
// (the connection is accepted and never answered), or a slow answer. Faults S3 itself cannot be made to
// produce on demand, so they are injected here, on the wire.
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export type Fault = 'pass' | 'stall' | { status: number; code: string } | { delayMs: number };

/** What owns a helper's resources (its teardown frees them): a tap Test, the benchmark, or the chaos soak's CLI. */
export interface Owner {
  teardown(fn: () => unknown): void;
}

export interface SeenPut {
  key: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  fault: Fault;
}

export interface FaultProxy {
  endpoint: string;
  /** Decides each PUT's fate; other requests always pass. */
  decide: (put: { key: string; attempt: number }) => Fault;
  puts: SeenPut[];
  /**
   * The server's start-up preflight PUTs (`<prefix>/_preflight`), apart from `puts` so that tests
   * of batches see only batches: they pass unless this says otherwise.
   */
  decidePreflight: () => Fault;
  preflights: SeenPut[];
  /** Answers every stalled request by forwarding it now. */
  release(): void;
  /** Requests forwarded to S3 and not yet answered by it (a released PUT may still be writing). */
  forwarding: number;
  /** Stops listening and drops every connection: from now on connections to `endpoint` are refused. */
  close(): Promise<void>;
}

const s3Error = (code: string): string =>
  `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${code} (injected by the test proxy)</Message></Error>`;

/** Listens on `port` (0: any free one), so that an S3 that was down can come back at the same address. */
export async function startFaultProxy(t: Owner, target: { port: number }, port = 0): Promise<FaultProxy> {
  const stalled = new Set<() => void>();
  const attempts = new Map<string, number>();
  const proxy: FaultProxy = {
    endpoint: '',
    decide: () => 'pass',
    puts: [],
    decidePreflight: () => 'pass',
    preflights: [],
    release() {
      for (const go of stalled) go();
      stalled.clear();
    },
    close: () => close(),
    forwarding: 0,
  };
  const forward = (req: http.IncomingMessage, body: Buffer, res: http.ServerResponse): void => {
    proxy.forwarding++;
    let answered = false;
    // S3 answers a PUT once it has written the object.
    const done = () => {
      if (!answered) proxy.forwarding--;
      answered = true;
    };
    const upstream = http.request(
      { host: '127.0.0.1', port: target.port, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        done();
        res.writeHead(answer.statusCode!, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on('error', () => {
      done();
      res.destroy();
    });
    upstream.end(body);
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      if (req.method !== 'PUT') return forward(req, body, res);
      const key = decodeURIComponent(new URL(req.url!, 'http://x').pathname.split('/').slice(2).join('/'));
      let fault: Fault;
      if (key.endsWith('/_preflight')) {
        fault = proxy.decidePreflight();
        proxy.preflights.push({ key, headers: req.headers, body, fault });
      } else {
        const attempt = (attempts.get(key) ?? 0) + 1;
        attempts.set(key, attempt);
        fault = proxy.decide({ key, attempt });
        proxy.puts.push({ key, headers: req.headers, body, fault });
      }
      if (fault === 'pass') return forward(req, body, res);
      if (fault === 'stall') return void stalled.add(() => forward(req, body, res));
      if ('delayMs' in fault) return void setTimeout(() => forward(req, body, res), fault.delayMs);
      res.writeHead(fault.status, { 'content-type': 'application/xml' }).end(s3Error(fault.code));
    });
  });
  const close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  t.teardown(close);
  proxy.endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return proxy;
}

/** A loopback port nothing listens on (for now): connections to it are refused. */
export async function refusedPort(): Promise<number> {
  const probe = http.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

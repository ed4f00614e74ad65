// A stand-in for the ingest server that answers each POST as scripted: the faults the real one
// does not produce on demand (a 500, a connection cut before the answer, a 503 on every attempt),
// with the CORS headers the real one sends, so that the same scenario runs in Node and in a page.
// What each request carried is recorded.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Owner } from '../../helpers/fault-proxy.js';

export type Scripted = 'accept' | 'reset' | 'stall' | { status: number; error: string; retryAfter?: string };

export interface ScriptedServer {
  endpoint: string;
  /** The answers to the next POSTs, in order; past the end, 'accept'. */
  script: Scripted[];
  posts: Post[];
}

export interface Post {
  /** Idempotency-Key, or ?idempotency_key= (a beacon's). */
  key: string | undefined;
  /** x-api-key, or ?api_key=. */
  apiKey: string | undefined;
  /** Where each came from: a header, or the query. */
  in: 'header' | 'query';
  body: string;
  contentType: string | undefined;
}

export async function startScripted(t: Owner): Promise<ScriptedServer> {
  const server: ScriptedServer = { endpoint: '', script: [], posts: [] };
  const http1 = http.createServer((req, res) => {
    if (req.url?.split('?')[0] !== '/v1/events') {
      res.writeHead(404);
      return res.end();
    }
    const origin = req.headers.origin;
    if (origin !== undefined) {
      res.setHeader('access-control-allow-origin', origin);
      res.setHeader('access-control-allow-credentials', 'true');
      res.setHeader('access-control-expose-headers', 'retry-after, idempotent-replayed');
    }
    if (req.method === 'OPTIONS') {
      res.writeHead(204, { 'access-control-allow-methods': 'POST', 'access-control-allow-headers': 'content-type, x-api-key, idempotency-key' });
      return res.end();
    }
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      const query = new URL(req.url ?? '/', 'http://x').searchParams;
      const header = req.headers['idempotency-key'] as string | undefined;
      server.posts.push({
        key: header ?? query.get('idempotency_key') ?? undefined,
        apiKey: (req.headers['x-api-key'] as string | undefined) ?? query.get('api_key') ?? undefined,
        in: header === undefined ? 'query' : 'header',
        body,
        contentType: req.headers['content-type'],
      });
      const next = server.script.shift() ?? 'accept';
      // Never answered (until the test ends): a request still in flight.
      if (next === 'stall') return;
      // Cut mid-answer: a connection closed with no answer at all, Chromium resends by itself on a
      // kept-alive connection (as a lost answer would be).
      if (next === 'reset') return req.socket.end('HTTP/1.1 20');
      if (next === 'accept') {
        res.writeHead(202, { 'content-type': 'application/json' });
        return res.end(`{"accepted":${(JSON.parse(body) as unknown[]).length}}`);
      }
      res.writeHead(next.status, { 'content-type': 'application/json', ...(next.retryAfter === undefined ? {} : { 'retry-after': next.retryAfter }) });
      res.end(JSON.stringify({ error: next.error, message: `scripted ${next.status}` }));
    });
  });
  await new Promise<void>((resolve) => http1.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    http1.closeAllConnections();
    return new Promise((resolve) => http1.close(resolve));
  });
  server.endpoint = `http://127.0.0.1:${(http1.address() as AddressInfo).port}`;
  return server;
}

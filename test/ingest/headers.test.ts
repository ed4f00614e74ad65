// What a POST's headers say about its body: the format from Content-Type, and Content-Length as
// one plain decimal number sent once (else NaN), read from real requests on a uWebSockets.js app.
import t, { type Test } from 'tap';
import { bodyFormat, contentLength, noLength, requestOrigin } from '../../src/ingest/headers.js';
import { uWS } from '../../src/ingest/uws.js';
import { rawRequest } from '../helpers/raw.js';
import { listenApp } from '../helpers/uws-app.js';

t.test('the body format: JSON, NDJSON or nothing, whatever the case, spaces and parameters', async (t) => {
  const cases: [string, string | undefined][] = [
    ['application/json', 'json'],
    ['Application/JSON; charset=utf-8', 'json'],
    ['  text/plain ;charset=UTF-8', 'json'],
    ['application/x-ndjson', 'ndjson'],
    ['APPLICATION/X-NDJSON;charset=utf-8', 'ndjson'],
    ['application/jsonl', undefined],
    ['application/json-seq', undefined],
    ['application/xml', undefined],
    ['multipart/form-data; boundary=x', undefined],
    ['', undefined],
  ];
  for (const [type, format] of cases) t.equal(bodyFormat(type), format, JSON.stringify(type));
});

/** What the headers module reads of each request, noted by the handler as uWS hands it over. */
async function lengthServer(t: Test) {
  const seen: (number | null)[] = [];
  const app = uWS.App().post('/*', (res, req) => {
    const header = req.getHeader('content-length');
    const length = header === '' ? noLength(req) : contentLength(req, header);
    seen.push(Number.isNaN(length) ? null : length);
    res.onAborted(() => {});
    res.onData((_chunk, isLast) => {
      if (isLast) res.end('ok');
    });
  });
  const port = await listenApp(t, app);
  /** The length read for a request with these header lines (each ending in CRLF); null for NaN. */
  const read = async (headers: string): Promise<number | null> => {
    const before = seen.length;
    // Waits for the server to close, or 1 s: a request uWS cannot frame is closed after the handler.
    await rawRequest(port, `POST /x HTTP/1.1\r\nhost: x\r\nconnection: close\r\n${headers}\r\n${headers === '' ? '' : '{}'}`, 1000);
    t.equal(seen.length, before + 1, `one request handled for ${JSON.stringify(headers)}`);
    return seen[before]!;
  };
  return read;
}

t.test('Content-Length: a plain decimal number sent once, or the same number twice', async (t) => {
  const read = await lengthServer(t);
  t.equal(await read('content-length: 2\r\n'), 2);
  t.equal(await read('content-length: 0002\r\n'), 2, 'leading zeros are still decimal digits');
  t.equal(await read('content-length: 2\r\ncontent-length: 2\r\n'), 2, 'the same length twice is harmless');
  t.equal(await read(''), 0, 'no Content-Length at all: an empty body');
});

t.test('Content-Length: NaN when it is not one decimal number, or two different ones', async (t) => {
  const read = await lengthServer(t);
  for (const value of ['abc', '-1', '+2', '0x10', '2.0', '1e3']) t.equal(await read(`content-length: ${value}\r\n`), null, `content-length: ${value}`);
  t.equal(await read('content-length: 2\r\ncontent-length: 3\r\n'), null, 'two different lengths');
  t.equal(await read('Content-Length: 2\r\ncontent-length: 20\r\n'), null, 'two different lengths, in any case');
  t.equal(await read('content-length: \r\ncontent-length: 2\r\n'), null, 'an empty one before a real one: NaN, not 0');
  // The module keeps its state between calls: a request that conflicted must not taint the next.
  t.equal(await read('content-length: 2\r\n'), 2, 'a plain request after conflicting ones');
  t.equal(await read(''), 0, 'and one without a length after an empty one');
});

t.test('Origin: none, one, or more than one (undefined), read from real requests', async (t) => {
  const seen: (string | null)[] = [];
  const app = uWS.App().get('/*', (res, req) => {
    seen.push(requestOrigin(req) ?? null);
    res.end('ok');
  });
  const port = await listenApp(t, app);
  const read = async (headers: string): Promise<string | null> => {
    await rawRequest(port, `GET /x HTTP/1.1\r\nhost: x\r\nconnection: close\r\n${headers}\r\n`, 1000);
    return seen.at(-1)!;
  };
  t.equal(await read(''), '', 'none');
  t.equal(await read('origin: https://a.example\r\n'), 'https://a.example');
  t.equal(await read('Origin: https://a.example\r\nx-origin: https://b.example\r\n'), 'https://a.example', 'a header that only ends in origin is another');
  t.equal(await read('origin: https://a.example\r\norigin: https://b.example\r\n'), null, 'two: refused, the second might be the one a proxy checks');
  t.equal(await read('origin: https://a.example\r\nORIGIN: https://a.example\r\n'), null, 'even the same one twice, in any case');
});

// Baseline: the no-op server plus what any ingest must do: gunzip if asked, and JSON.parse the body
// (an array, or each NDJSON line). No validation, no batching, no S3.
import { gunzipSync } from 'node:zlib';
import uWS from 'uWebSockets.js';

uWS
  .App()
  .post('/v1/events', (res, req) => {
    const gzip = req.getHeader('content-encoding') === 'gzip';
    const ndjson = req.getHeader('content-type') === 'application/x-ndjson';
    let parts: Buffer[] = [];
    res.onAborted(() => {});
    res.onData((chunk, isLast) => {
      parts.push(Buffer.from(chunk.slice(0)));
      if (!isLast) return;
      const wire = Buffer.concat(parts);
      parts = [];
      const text = (gzip ? gunzipSync(wire) : wire).toString('utf8');
      let count = 0;
      if (ndjson) {
        for (const line of text.split('\n')) if (line !== '') count += JSON.parse(line) ? 1 : 0;
      } else {
        const value: unknown = JSON.parse(text);
        count = Array.isArray(value) ? value.length : 1;
      }
      res.cork(() => res.writeStatus('202 Accepted').writeHeader('content-type', 'application/json').end(`{"accepted":${count}}`));
    });
  })
  .listen('127.0.0.1', 0, (socket) => {
    if (socket === false) process.exit(1);
    console.log(`listening ${uWS.us_socket_local_port(socket)}`);
  });

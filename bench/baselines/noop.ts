// Baseline: the same uWebSockets.js build reading the body and answering 202, nothing else.
import uWS from 'uWebSockets.js';

uWS
  .App()
  .post('/v1/events', (res) => {
    res.onAborted(() => {});
    res.onData((_chunk, isLast) => {
      if (isLast) res.cork(() => res.writeStatus('202 Accepted').writeHeader('content-type', 'application/json').end('{"accepted":1}'));
    });
  })
  .listen('127.0.0.1', 0, (socket) => {
    if (socket === false) process.exit(1);
    console.log(`listening ${uWS.us_socket_local_port(socket)}`);
  });

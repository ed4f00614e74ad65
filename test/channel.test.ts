// The bounded channel: whole requests or nothing, bounds on events and bytes, closing.
import t from 'tap';
import { Channel } from '../src/channel.js';

const entry = (count: number, bytes = count * 10, receivedAt = 0) => ({ receivedAt, body: Buffer.alloc(0), spans: [], count, bytes });

t.test('takes whole requests while they fit, answers full otherwise', async (t) => {
  const channel = new Channel(10, 1000);
  t.equal(channel.tryPush(entry(6)), 'ok');
  t.equal(channel.tryPush(entry(5)), 'full', 'a request that does not fit whole is refused whole');
  t.equal(channel.tryPush(entry(4)), 'ok');
  t.equal(channel.events, 10);
  t.equal(channel.tryPush(entry(1)), 'full');
  t.equal(channel.admits(), 'full', 'nothing could enter');
});

t.test('bounds bytes too', async (t) => {
  const channel = new Channel(1000, 100);
  t.equal(channel.tryPush(entry(1, 60)), 'ok');
  t.equal(channel.tryPush(entry(1, 60)), 'full');
  t.equal(channel.bytes, 60);
});

t.test('an empty channel takes one request larger than its bounds', async (t) => {
  const channel = new Channel(10, 100);
  t.equal(channel.tryPush(entry(50, 5000)), 'ok');
  t.equal(channel.tryPush(entry(1)), 'full');
});

t.test('FIFO across many pushes and shifts; closed refuses but drains', async (t) => {
  const channel = new Channel(1_000_000, 1 << 30);
  const order: number[] = [];
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 3000; i++) channel.tryPush(entry(1, 1, round * 3000 + i));
    for (let i = 0; i < 2500; i++) order.push(channel.shift()!.receivedAt);
  }
  channel.close();
  t.equal(channel.tryPush(entry(1)), 'closed');
  t.equal(channel.admits(), 'closed');
  for (let e = channel.shift(); e !== undefined; e = channel.shift()) order.push(e.receivedAt);
  t.same(order, Array.from({ length: 9000 }, (_, i) => i), 'first in, first out');
  t.equal(channel.events, 0);
  t.equal(channel.bytes, 0);
});

// The /metrics page rendered at most once per interval: calls within it share the last render
// (its page or its failure, even while it runs); the first call past it renders again. A clock
// the test moves, and a real prom-client registry whose collect() counts the renders.
import { Gauge, Registry } from 'prom-client';
import t from 'tap';
import { renderAtMostEvery } from '../../src/metrics/page.js';

/** A registry with one gauge that counts how often the registry was rendered. */
function countingRegistry(): { registry: Registry; renders: () => number } {
  const registry = new Registry();
  let renders = 0;
  new Gauge({
    name: 'renders',
    help: 'how often collect() ran',
    registers: [registry],
    collect() {
      this.set(++renders);
    },
  });
  return { registry, renders: () => renders };
}

t.test('100 calls within the interval render the registry once, and get the same page', async (t) => {
  const { registry, renders } = countingRegistry();
  let now = 5000;
  const page = renderAtMostEvery(() => registry.metrics(), 1000, () => now);
  const pages = new Set<string>();
  for (let i = 0; i < 100; i++) {
    pages.add(await page());
    now += 9; // 891 ms in all: still within the second
  }
  t.equal(renders(), 1, 'rendered once');
  t.equal(pages.size, 1, 'one page for all');
  t.match([...pages][0], /^renders 1$/m);
  now = 6000;
  t.match(await page(), /^renders 2$/m, 'a second after the render began: rendered again');
  t.equal(renders(), 2);
});

t.test('calls while a render runs share it; a failed render is shared too, and tried again after the interval', async (t) => {
  let now = 0;
  let calls = 0;
  let finish: (page: string) => void = () => {};
  let fail = false;
  const page = renderAtMostEvery(
    () => {
      calls++;
      if (fail) return Promise.reject(new Error('registry broke'));
      return new Promise<string>((resolve) => (finish = resolve));
    },
    1000,
    () => now,
  );
  const waiting = [page(), page(), page()];
  finish('up 1\n');
  t.same(await Promise.all(waiting), ['up 1\n', 'up 1\n', 'up 1\n']);
  t.equal(calls, 1, 'one render for the three');
  fail = true;
  now = 1000;
  await t.rejects(page(), /registry broke/);
  now = 1999;
  await t.rejects(page(), /registry broke/, 'the failure stands for the interval');
  t.equal(calls, 2);
  fail = false;
  now = 2000;
  const next = page();
  finish('up 2\n');
  t.equal(await next, 'up 2\n', 'rendered again once the interval passed');
});

t.test('an interval of 0 renders at every call', async (t) => {
  const { registry, renders } = countingRegistry();
  const page = renderAtMostEvery(() => registry.metrics(), 0, () => 42);
  for (let i = 0; i < 3; i++) await page();
  t.equal(renders(), 3);
});

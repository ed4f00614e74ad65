// The events every scenario, the probe and the encode micro-benchmark send, for the server and the
// baselines alike: realistic analytics events drawn from a seeded generator, so that a run can be
// repeated byte for byte and gzip (or zstd) meets what it would meet in real traffic, not one body
// sent over and over. Its own module, so that the probe (which measure.ts uses) does not import
// the scenarios' module. Field variety and sizes: bench/README.md, "The events".

/** The seed of every run unless a scenario says otherwise; the probe uses its own. */
export const SEED = 22;

/** mulberry32: a 32-bit state, good enough to vary fields, and the same numbers on every machine. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const TYPES = ['page_view', 'page_view', 'page_view', 'click', 'click', 'add_to_cart', 'search', 'checkout', 'signup', 'video_play'] as const;
const SECTIONS = ['products', 'category', 'blog', 'help', 'account', 'cart', 'search', 'deals'];
// Direct traffic (no referrer) is the largest single source.
const REFERRERS = [
  '',
  '',
  '',
  '',
  'https://www.google.com/',
  'https://www.google.de/search?q=winter+boots',
  'https://www.bing.com/search?q=shop+example',
  'https://t.co/x8Kd02Lq',
  'https://www.facebook.com/',
  'https://news.example.org/articles/2026/best-deals',
  'https://shop.example.com/',
  'android-app://com.google.android.gm/',
];
const AGENTS = [
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36',
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15',
  'Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1',
  'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.81 Mobile Safari/537.36',
  'Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0',
  // Most traffic from the shop's apps, whose agents are short.
  'ShopApp/5.2.1 (iOS 18.1; iPhone15,2)',
  'ShopApp/5.2.0 (Android 14; SM-S918B)',
  'ShopApp/5.1.9 (Android 13; Pixel 7)',
  'ShopApp/5.2.1 (iOS 17.6; iPhone13,1)',
  'okhttp/4.12.0',
  'ShopApp/5.2.1 (iPadOS 18.1; iPad13,4)',
  'ShopApp/5.0.3 (Android 12; moto g32)',
  'ShopApp/5.2.1 (iOS 18.0; iPhone14,5)',
  'ShopApp/5.2.0 (Android 15; Pixel 9)',
];
const QUERIES = ['winter boots', 'rain jacket', 'gift card', 'running shoes size 43', 'usb-c cable', 'wool socks'];

/** Events start at 2026-12-01 (epoch milliseconds, as browsers send them), 20 ms apart with jitter. */
const EPOCH_MS = Date.UTC(2026, 11, 1);

function pick<T>(list: readonly T[], r: () => number): T {
  return list[Math.floor(r() * list.length)]!;
}

function hex(r: () => number, digits: number): string {
  let out = '';
  while (out.length < digits) out += Math.floor(r() * 2 ** 32).toString(16).padStart(8, '0');
  return out.slice(0, digits);
}

/** The event-specific properties: what differs most between event types in real traffic. */
function props(type: (typeof TYPES)[number], r: () => number): Record<string, unknown> {
  switch (type) {
    case 'click':
      return { element: pick(['button', 'a', 'img', 'div'], r), text: pick(['Buy now', 'Details', 'Next', 'Close', 'Sign in'], r) };
    case 'add_to_cart':
    case 'checkout':
      return { sku: `SKU-${Math.floor(r() * 1e6)}`, price: Math.round(r() * 20000) / 100, currency: pick(['EUR', 'USD', 'GBP'], r), qty: 1 + Math.floor(r() * 4) };
    case 'search':
      return { query: pick(QUERIES, r), results: Math.floor(r() * 500) };
    case 'video_play':
      return { video_id: hex(r, 11), position_s: Math.floor(r() * 600) };
    default:
      return { title: `${pick(SECTIONS, r)} ${Math.floor(r() * 10000)}`, load_ms: Math.floor(r() * 3000) };
  }
}

/**
 * Event number `i` of the stream `seed`, as a plain object: the same for the same (seed, i) on
 * every machine, and different for each i (the event id and the timestamp both grow with it).
 */
export function eventFields(i: number, seed = SEED): Record<string, unknown> {
  // Each event its own generator, so that any event can be made without those before it.
  const r = random(Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(i + 1, 0xc2b2ae35));
  const type = pick(TYPES, r);
  const section = pick(SECTIONS, r);
  const ref = pick(REFERRERS, r);
  return {
    type,
    // A UUID v4 shape; its last 12 digits carry i, so that no two events of a stream share an id.
    event_id: `${hex(r, 8)}-${hex(r, 4)}-4${hex(r, 3)}-a${hex(r, 3)}-${i.toString(16).padStart(12, '0')}`,
    // Signed-in users by id, the rest by an anonymous id.
    ...(r() < 0.6 ? { user_id: `u_${Math.floor(r() * 5_000_000)}` } : { anonymous_id: hex(r, 16) }),
    ts: EPOCH_MS + i * 20 + Math.floor(r() * 20),
    url: `https://shop.example.com/${section}/${Math.floor(r() * 5000)}${r() < 0.3 ? `?utm_source=${pick(['newsletter', 'google', 'facebook'], r)}` : ''}`,
    ...(ref === '' ? {} : { referrer: ref }),
    user_agent: pick(AGENTS, r),
    props: props(type, r),
  };
}

/** Event `i` of the stream `seed` as JSON text: about 300 bytes (bench/README.md gives the spread). */
export function event(i: number, seed = SEED): string {
  return JSON.stringify(eventFields(i, seed));
}

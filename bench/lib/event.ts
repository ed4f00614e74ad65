// The event every scenario, the probe and the encode micro-benchmark send: its own module, so that
// the probe (which measure.ts uses) does not import the scenarios' module.
/** A ~300-byte analytics event, different each time. */
export function event(i: number): string {
  return JSON.stringify({
    type: 'page_view',
    event_id: `e-${1_000_000 + i}`,
    user_id: `u_${(1_000_003 * i) % 9_999_991}`,
    session_id: `s_${(i * 7919).toString(36).padStart(10, '0')}`,
    ts: 1_800_000_000_000 + i,
    url: `https://shop.example.com/products/${i % 997}?ref=home&campaign=winter`,
    referrer: 'https://www.example.com/',
    device: { os: 'Android 14', browser: 'Chrome 131', screen: '412x915' },
    props: { price: 19.99 + (i % 50), currency: 'EUR', qty: 1 + (i % 3) },
  });
}

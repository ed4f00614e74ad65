// The /metrics page rendered at most once per interval, however often it is asked for: rendering
// walks the whole registry on the main thread (which also owns the channel and the uploads), so a
// few scrapers looping on it, or anyone who can reach it, would otherwise take the server's time.
// Scrapes within the interval get the last page, or share the render under way.

/**
 * `render`, called at most once per `everyMs` of `now` (a monotonic clock, in ms): a call within
 * that time of the last render's start gets that render's promise, page or failure alike.
 * `everyMs` 0: a render at every call.
 */
export function renderAtMostEvery<T>(render: () => Promise<T>, everyMs: number, now: () => number): () => Promise<T> {
  let last: { readonly at: number; readonly page: Promise<T> } | undefined;
  return () => {
    const at = now();
    if (last === undefined || at - last.at >= everyMs) last = { at, page: render() };
    return last.page;
  };
}

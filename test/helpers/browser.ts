// Debian's Chromium (/usr/bin/chromium; .ci/run installs it), headless, driven by playwright-core
// (Playwright's own browser download is not reachable here), with a fresh profile removed at the
// end; and a page origin of its own: a tiny HTTP server on another loopback port that serves a
// blank page, the client bundle at /client.js and any other modules a test gives it, so that
// everything the page sends to the ingest server is cross-origin, as from a customer's site.
import { existsSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { type BrowserContext, chromium } from 'playwright-core';
import type { Owner } from './fault-proxy.js';
import { tempDir } from './temp.js';

export const CHROMIUM = '/usr/bin/chromium';

/** Why the browser tests cannot run here, or false. */
export const noChromium: string | false = existsSync(CHROMIUM) ? false : `${CHROMIUM} is missing: apt-get install chromium (.ci/run does)`;

export async function launchChromium(t: Owner): Promise<BrowserContext> {
  const context = await chromium.launchPersistentContext(tempDir(t, 'chromium'), {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  t.teardown(() => context.close());
  return context;
}

export interface PageOrigin {
  /** `http://127.0.0.1:<port>`: what to list in CORS_ORIGINS. */
  origin: string;
}

/** Serves `/` (an empty page) and each of `modules` (path -> JavaScript source) as an ES module. */
export async function servePageOrigin(t: Owner, modules: Record<string, string>): Promise<PageOrigin> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    const module = modules[path];
    if (module !== undefined) {
      res.writeHead(200, { 'content-type': 'text/javascript' });
      return res.end(module);
    }
    res.writeHead(path === '/' ? 200 : 404, { 'content-type': 'text/html' });
    res.end('<!doctype html><title>page</title>');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    server.closeAllConnections();
    return new Promise((resolve) => server.close(resolve));
  });
  return { origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

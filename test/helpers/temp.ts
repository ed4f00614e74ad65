// A fresh directory per call, removed when the test ends (t.testdir() gives one path per test, reused).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Owner } from './fault-proxy.js';

export function tempDir(t: Owner, name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `ingest-${name}-`));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

// A fresh directory per call, removed when the test ends (t.testdir() gives one path per test, reused).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';

export function tempDir(t: Test, name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `ingest-${name}-`));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

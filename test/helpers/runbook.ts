// The runbook's section anchors, and the one base URL every alert's runbook link starts with.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { ROOT } from './server.js';

/** The anchors GitHub makes for the `## ` headings of docs/operations.md. */
export function runbookAnchors(): Set<string> {
  const runbook = readFileSync(`${ROOT}docs/operations.md`, 'utf8');
  return new Set([...runbook.matchAll(/^## (.+)$/gm)].map((m) => m[1]!.toLowerCase().replace(/[^a-z0-9 -]/g, '').replace(/ /g, '-')));
}

/** The base as deploy/runbook-base.mjs reads it. */
export function runbookBase(): string {
  return execFileSync(process.execPath, [`${ROOT}deploy/runbook-base.mjs`], { encoding: 'utf8' }).trim();
}
